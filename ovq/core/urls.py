"""URLs and the secrets in them: one parser for stream and broker URLs, redaction, ``${VAR}`` references.

Configuration files are committed and copied around, and command lines show in ``ps``, so credentials belong in
the environment: a file or a ``--source`` says ``rtsp://${CAM_USER}:${CAM_PASSWORD}@host/stream`` and the values
are filled in when it is read.

:func:`parse_url` is the one parser for camera and broker URLs: a mistyped scheme, a bad port, a malformed host
is one line, and every message shows the URL through :func:`redact` (the password, and credential-like query
values such as ``?pwd=`` or ``?token=``, as ``***``) - also when the URL does not parse, and when the password holds an unencoded ``/`` or ``@`` (taken as part of the password: the
authority ends at the first ``/`` after the last ``@`` that is followed by a host).
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

from ovq.core.errors import ConfigError, OvqError

ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(text: str, environ: Mapping[str, str]) -> str:
    """``text`` with every ``${VAR}`` / ``${VAR:-default}`` replaced from ``environ``.

    A variable that is not set and has no default raises :class:`ConfigError` naming it (the caller adds
    where the reference was).
    """

    def sub(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        raise ConfigError(f"environment variable {name} is not set (referenced as ${{{name}}})")

    return ENV_REFERENCE.sub(sub, text)


# why a live view token that is not UTF-8 text is refused
UNSENDABLE_TOKEN = "no browser or client can send it, every request would be refused (give a UTF-8 token)"

# why a source (a file name, a URL) that is not UTF-8 text is refused: OpenCV crashed (SIGSEGV) on such a file name
UNOPENABLE_SOURCE = "OpenCV and FFmpeg take a file name or URL as UTF-8, so it could not be opened (give UTF-8 text)"


def is_utf8_text(value: str) -> bool:
    """Whether ``value`` is text UTF-8 can carry: Python reads the undecodable bytes of an environment variable or
    an argument as lone surrogates, which no client can send and no protocol can carry."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def undecodable_reference(text: str, environ: Mapping[str, str]) -> str | None:
    """The first variable ``text`` references as ``${VAR}`` whose value in ``environ`` is not UTF-8 text, or
    ``None``; the caller names the variable (its value may be a secret, and cannot be printed as it is anyway)."""
    for match in ENV_REFERENCE.finditer(text):
        name = match.group(1)
        if name in environ and not is_utf8_text(environ[name]):
            return name
    return None


def check_secret_text(value: str | None, what: str, why: str) -> None:
    """A :class:`ConfigError` naming ``what`` (never the value) when the secret ``value`` is not UTF-8 text (a live
    view token then matched no request; paho-mqtt raised on the credentials); ``why`` says what would happen."""
    if value is not None and not is_utf8_text(value):
        raise ConfigError(f"{what}: not UTF-8 text; {why}")


def env_references(value: Any) -> list[str]:
    """The environment variables a parsed YAML value references as ``${VAR}``, sorted, each once."""
    found: set[str] = set()
    todo = [value]
    while todo:
        v = todo.pop()
        if isinstance(v, str):
            found.update(m.group(1) for m in ENV_REFERENCE.finditer(v))
        elif isinstance(v, dict):
            todo.extend(v.values())
        elif isinstance(v, list):
            todo.extend(v)
    return sorted(found)


def has_literal_password(text: str) -> bool:
    """Whether a URL holds a secret written out (not only ``${VAR}``): the password of ``scheme://user:password@
    host``, or a credential-like query value (``?user=admin&pwd=...``, ``?token=...``: :func:`is_secret_param`)."""
    text = ENV_REFERENCE.sub("\0", text)
    if _SCHEME.match(text) is None:
        return False
    userinfo = _userinfo(text)
    if userinfo is not None and ":" in userinfo and userinfo.split(":", 1)[1].replace("\0", "") != "":
        return True
    return any(is_secret_param(name) and value.replace("\0", "") for name, value in _query_items(text))


# -- secrets in a query string -----------------------------------------------------------------------------------
# Cameras and stream gateways take credentials as query parameters too: Foscam's videostream.cgi?user=&pwd=,
# Hikvision/Dahua snapshot URLs with ?auth=, signed cloud URLs with ?token= / ?signature= / X-Amz-Signature=.
_SECRET_PARAMS = frozenset({
    "password", "passwd", "pwd", "pass", "passphrase", "token", "access_token", "auth_token", "refresh_token",
    "id_token", "key", "apikey", "api_key", "secret", "client_secret", "auth", "authorization", "sig", "signature",
    "credential", "credentials", "session", "sessionid", "session_id",
})
_SECRET_SUFFIXES = ("password", "passwd", "token", "secret", "apikey", "api_key", "signature", "credential")
_QUERY_PARAM = re.compile(r"([?&;#])([^=&;#]*)=([^&;#]*)")  # the fragment too: OAuth's #access_token=...


def is_secret_param(name: str) -> bool:
    """Whether a query parameter's name says its value is a credential (``pwd``, ``token``, ``X-Amz-Signature``,
    ``camPassword``, ...), compared without case, ``-`` read as ``_``."""
    name = unquote(name).strip().lower().replace("-", "_")
    return name in _SECRET_PARAMS or name.endswith(_SECRET_SUFFIXES)


def _query_span(text: str) -> tuple[int, int] | None:
    """(start, end) of the query and fragment of URL ``text`` (from its first ``?`` or ``#`` after the host), or
    None without either."""
    match = _SCHEME.match(text)
    if match is None:
        return None
    after = _split_userinfo(match.group(2))[1]
    start = re.search(r"[?#]", after)
    return None if start is None else (len(text) - len(after) + start.start(), len(text))


def _query_items(text: str) -> list[tuple[str, str]]:
    span = _query_span(text)
    return [] if span is None else [(m.group(2), m.group(3)) for m in _QUERY_PARAM.finditer(text[span[0]:span[1]])]


def redact_query(text: str) -> str:
    """URL ``text`` with the value of every credential-like query (or fragment) parameter replaced by ``***``."""
    span = _query_span(text)
    if span is None:
        return text

    def sub(match: re.Match[str]) -> str:
        sep, name, value = match.groups()
        return f"{sep}{name}=***" if value and is_secret_param(name) else match.group(0)

    return text[: span[0]] + _QUERY_PARAM.sub(sub, text[span[0]:span[1]]) + text[span[1]:]


# -- one parser for stream and broker URLs -----------------------------------------------------------------------
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", re.DOTALL)
_HOSTNAME = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})?(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})?)*\.?$")
_AUTHORITY_END = re.compile(r"[/?#]")


@dataclass(frozen=True)
class Url:
    """A parsed ``scheme://[user[:password]@]host[:port][/path...]``; ``username``/``password`` decoded."""

    scheme: str  # lower case
    host: str  # a name or an IP address (IPv6 without brackets)
    port: int | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    rest: str = ""  # path, query and fragment as written

    def _netloc(self, userinfo: str | None) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = f":{self.port}" if self.port is not None else ""
        return f"{userinfo}@{host}{port}" if userinfo is not None else f"{host}{port}"

    def redacted(self) -> str:
        """The URL for messages and records: ``rtsp://user:***@host/x?user=admin&password=***``."""
        userinfo = None
        if self.username is not None or self.password is not None:
            userinfo = quote(self.username or "", safe="") + (":***" if self.password is not None else "")
        return redact_query(f"{self.scheme}://{self._netloc(userinfo)}{self.rest}")

    def unredacted(self) -> str:
        """The URL to connect to, credentials percent-encoded (a ``/`` or ``@`` in a password stays in it:
        FFmpeg and paho decode them)."""
        userinfo = None
        if self.username is not None or self.password is not None:
            userinfo = quote(self.username or "", safe="")
            if self.password is not None:
                userinfo += ":" + quote(self.password, safe="")
        return f"{self.scheme}://{self._netloc(userinfo)}{self.rest}"


def _split_userinfo(rest: str) -> tuple[str | None, str]:
    """(userinfo, the rest after its ``@``) of what follows ``scheme://``; (None, rest) without userinfo.

    The standard reading first: the authority ends at the first ``/``, ``?`` or ``#``, the userinfo at its last
    ``@``. When that leaves no valid host, a password written with an unencoded ``/`` or ``@``
    (``rtsp://cam:pa/ss@host/x``) is read as a password: the userinfo ends at the last ``@`` followed by a host.
    """
    end = _AUTHORITY_END.search(rest)
    authority = rest[: end.start()] if end else rest
    at = authority.rfind("@")
    standard = (rest[:at], rest[at + 1:]) if at >= 0 else (None, rest)
    hostport = authority[at + 1:]
    if _valid_hostport(hostport) or "@" not in rest:
        return standard
    for i in [i for i, c in enumerate(rest) if c == "@"][::-1]:
        tail = rest[i + 1:]
        end = _AUTHORITY_END.search(tail)
        if ":" in rest[:i] and _valid_hostport(tail[: end.start()] if end else tail):
            return rest[:i], tail
    return standard


def _userinfo(text: str) -> str | None:
    match = _SCHEME.match(text)
    return _split_userinfo(match.group(2))[0] if match else None


def redact(text: str) -> str:
    """``text`` with any password between ``scheme://`` and its ``@``, and the value of every credential-like
    query parameter (:func:`is_secret_param`), replaced by ``***``. Never fails, and errs on the side of hiding:
    in a URL that does not parse, whatever stands between the first ``:`` after ``scheme://`` and the last ``@``
    counts as a password. Strings that are not URLs come back unchanged."""
    return redact_query(_redact_userinfo(text))


def _redact_userinfo(text: str) -> str:
    match = _SCHEME.match(text)
    if match is None or "@" not in match.group(2):
        return text
    scheme, rest = match.groups()
    userinfo, after = _split_userinfo(rest)
    if userinfo is None or (not _valid_hostport(_host_part(after)) and ":" not in userinfo):
        userinfo, after = rest[: rest.rfind("@")], rest[rest.rfind("@") + 1:]
    if ":" not in userinfo:
        return text
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{after}"


def _host_part(after_userinfo: str) -> str:
    end = _AUTHORITY_END.search(after_userinfo)
    return after_userinfo[: end.start()] if end else after_userinfo


mask_url = redact  # the name the deployment config uses


def _valid_hostport(hostport: str) -> bool:
    try:
        _split_hostport(hostport)
    except ValueError:
        return False
    return True


def _split_hostport(hostport: str) -> tuple[str, int | None]:
    """(host, port) of ``host``, ``host:port``, ``[v6]`` or ``[v6]:port``; ValueError saying what is wrong."""
    if hostport.startswith("["):
        close = hostport.find("]")
        if close < 0:
            raise ValueError("malformed IPv6 host (no closing ']')")
        host, after = hostport[1:close], hostport[close + 1:]
        try:
            ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            raise ValueError(f"malformed IPv6 host '[{host}]'") from None
        if after and not after.startswith(":"):
            raise ValueError(f"unexpected '{after}' after the IPv6 host")
        port_text = after[1:] if after else None
    else:
        host, sep, port_text = hostport.rpartition(":") if ":" in hostport else (hostport, "", None)
        if not sep:
            host, port_text = hostport, None
        if not host:
            raise ValueError("no host")
        if not _HOSTNAME.match(host):
            raise ValueError(f"'{host}' is not a host name or IP address")
    if port_text is None:
        return host, None
    if not port_text.isdigit() or not 0 < int(port_text) <= 65535:
        raise ValueError(f"bad port '{port_text}' (expected 1-65535)")
    return host, int(port_text)


def _hostport_problem(hostport: str) -> ValueError | None:
    try:
        _split_hostport(hostport)
    except ValueError as exc:
        return exc
    return None


def _scheme_hint(scheme: str, schemes: Sequence[str]) -> str:
    """``; did you mean 'rtsp://'?`` for ``rtps``: the same letters first (a swap), then the closest spelling."""
    swapped = [s for s in schemes if sorted(s) == sorted(scheme)]
    close = swapped or difflib.get_close_matches(scheme, schemes, n=1, cutoff=0.5)
    if close:
        return f"; did you mean '{close[0]}://'?"
    return f"; expected {', '.join(s + '://' for s in schemes)}"


def parse_url(
    text: str, *, schemes: Sequence[str] | None = None, error: type[OvqError] = ConfigError, what: str = "URL"
) -> Url:
    """Parse ``text``; :class:`ConfigError` (or ``error``) for an unknown scheme (with the closest known one), a
    missing or malformed host, a bad port. Every message shows the URL with its password replaced by ``***``.
    """
    shown = redact(text)
    match = _SCHEME.match(text.strip())
    if match is None:
        raise error(f"{shown}: not a {what} (expected scheme://host...)")
    scheme, rest = match.group(1).lower(), match.group(2)
    if schemes is not None and scheme not in schemes:
        raise error(f"{shown}: unknown {what} scheme '{scheme}://'{_scheme_hint(scheme, schemes)}")
    userinfo, rest = _split_userinfo(rest)
    end = _AUTHORITY_END.search(rest)
    hostport, tail = (rest[: end.start()], rest[end.start():]) if end else (rest, "")
    try:
        host, port = _split_hostport(hostport)
    except ValueError as exc:
        # rtsp://cam:pa/ss@host:99999/x: the port to blame is the one after the last '@', not 'pa'
        at = match.group(2).rfind("@")
        if userinfo is None and at >= 0 and ":" in match.group(2)[:at]:
            exc = _hostport_problem(_host_part(match.group(2)[at + 1:])) or exc
        raise error(f"{shown}: {exc}") from None
    username = password = None
    if userinfo is not None:
        user, sep, secret = userinfo.partition(":")
        username, password = unquote(user), (unquote(secret) if sep else None)
    return Url(scheme=scheme, host=host, port=port, username=username, password=password, rest=tail)


SERVING_SCHEMES = ("http", "https", "grpc")


def is_serving_url(model: object) -> bool:
    """True for a string that starts like a served model's URL (``http://``, ``https://``, ``grpc://``); checked
    and split by :func:`ovq.serving.urls.parse_serving_url`. Here, below the model stage, so that the commands
    taking only model files can tell such a URL from a path (``Path`` makes ``http://h`` ``http:/h``)."""
    return isinstance(model, str) and model.lower().startswith(tuple(f"{s}://" for s in SERVING_SCHEMES))


def is_loopback(host: str) -> bool:
    """Whether a server bound to ``host`` is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
