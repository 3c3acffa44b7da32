"""Secrets in configuration strings: ``${VAR}`` references to the environment, passwords written into URLs.

Configuration files are committed and copied around, so credentials belong in the environment: a file says
``rtsp://${CAM_USER}:${CAM_PASSWORD}@host/stream`` and the values are filled in when it is loaded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ovq.core.errors import ConfigError

ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_USERINFO = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://([^/@]*)@")


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
    """Whether a URL ``scheme://user:password@host`` holds a password written out (not only ``${VAR}``)."""
    match = _USERINFO.match(ENV_REFERENCE.sub("\0", text))
    if match is None or ":" not in match.group(1):
        return False
    return match.group(1).split(":", 1)[1].replace("\0", "") != ""


def mask_url(text: str) -> str:
    """``rtsp://user:***@host/x`` for ``rtsp://user:secret@host/x``; other strings unchanged."""
    if "://" not in text or "@" not in text:
        return text
    try:
        parts = urlsplit(text)
    except ValueError:
        return text
    if parts.password is None:
        return text
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))
