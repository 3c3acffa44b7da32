"""Serving URLs: ``http(s)://HOST:PORT/v2/models/NAME[/versions/V]`` and ``grpc://HOST:PORT/v2/models/NAME``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ovq.core.errors import ConfigError
from ovq.core.urls import SERVING_SCHEMES as SCHEMES
from ovq.core.urls import parse_url, redact

_PATH = re.compile(r"/v2/models/(?P<name>[^/?#]+)(?:/versions/(?P<version>[^/?#]+))?/?")


@dataclass(frozen=True)
class ServingURL:
    """Where a served model lives: the v2 protocol's scheme, server address, model name and optional version."""

    scheme: str  # http, https or grpc
    host: str
    port: int
    model: str
    version: str = ""

    @property
    def address(self) -> str:
        """``host:port`` as tritonclient takes it (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        version = f"/versions/{self.version}" if self.version else ""
        return f"{self.scheme}://{self.address}/v2/models/{self.model}{version}"


# What a served model does in place of an option only a local model honours, by the pipeline file's key (the
# flag is the key with --): it runs where, and as, its server compiled it, and ovq resizes its frames and decodes
# its boxes here, in Python, so resize and nms are refused only as 'graph' (python and auto are what it does).
SERVER_DECIDES = {
    "device": "runs on its server's device, not one chosen here",
    "precision": "runs at the precision its server compiled it with",
    "hint": "runs with the performance hint its server compiled it with",
    "cache": "is compiled by its server: nothing is compiled here to cache",
    "resize": "has its graph on the server: its frames are resized here, in Python",
    "nms": "has its graph on the server: its boxes are decoded and NMS'd here, in Python",
}
GRAPH_ONLY = ("resize", "nms")


def server_decides(key: str, value: object) -> str | None:
    """What a served model does instead of option ``key`` (a key of :data:`SERVER_DECIDES`) set to ``value``, or
    ``None`` when the option is not set (``None``) or set to what a served model does anyway (``resize: python``)."""
    what = SERVER_DECIDES[key]
    if value is None or (key in GRAPH_ONLY and str(value).lower() != "graph"):
        return None
    return what


def parse_serving_url(url: str | Path) -> ServingURL:
    """Check and split a serving URL (through ovq's one URL parser, :func:`ovq.core.urls.parse_url`); anything
    else is a :class:`ConfigError` that shows the expected form."""
    text = str(url)
    shown = redact(text)  # ?token=... as ***, like camera URLs
    expected = "expected http(s)://HOST:PORT/v2/models/NAME or grpc://HOST:PORT/v2/models/NAME"
    try:
        parts = parse_url(text, schemes=SCHEMES, what="serving URL")
    except ConfigError as exc:
        raise ConfigError(f"{exc}; {expected}") from None  # parse_url redacts
    if parts.username is not None or parts.password is not None:
        raise ConfigError(f"{parts.redacted()}: credentials in a serving URL are not supported; {expected}")
    if not parts.host:
        raise ConfigError(f"{shown}: no host; {expected}")
    match = _PATH.fullmatch(parts.rest)
    if match is None:
        raise ConfigError(f"{shown}: the path must be /v2/models/NAME; {expected}")
    port = parts.port if parts.port is not None else {"http": 80, "https": 443}.get(parts.scheme)
    if port is None:
        raise ConfigError(f"{shown}: a grpc URL needs a port; {expected}")
    return ServingURL(parts.scheme, parts.host, port, match["name"], match["version"] or "")
