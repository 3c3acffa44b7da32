"""The ``sinks`` section of a pipeline config: an annotated video, a JSON Lines file, MQTT, a window.

Checked key by key like the rest of :mod:`ovq.deployment.schema` (which re-exports these classes), with messages
naming the file and key, or the flag of ``ovq run``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ovq.core.errors import ConfigError
from ovq.core.fileio import same_file
from ovq.core.urls import mask_url
from ovq.deployment.fields import Origin, given
from ovq.streaming.mqtt import TLS_SCHEMES, parse_broker_url

MQTT_URL_ENV = "OVQ_MQTT_URL"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass
class MqttConfig:
    """Publish detections to MQTT. ``url`` wins over ``url_env`` (the variable holding the broker URL)."""

    url: str | None = None
    url_env: str = MQTT_URL_ENV
    topic_prefix: str = "ovq"
    ca_file: Path | None = None  # CA bundle to verify an mqtts:// broker (default: the system's)
    cert_file: Path | None = None  # client certificate (PEM), and its key when not in the same file
    key_file: Path | None = None
    strict: bool = False  # a broker that cannot be reached, or a message not sent, fails the run

    @classmethod
    def from_value(cls, value: Any, origin: Origin) -> MqttConfig | None:
        """From ``true``/``false``, a broker URL, or ``{url, url_env, topic_prefix}``."""
        if value is True or value is False:
            return cls() if value else None
        if isinstance(value, str):
            return cls(url=_broker_url(origin, value, "sinks.mqtt"))
        m = origin.mapping(value, "sinks.mqtt",
                           ("url", "url_env", "topic_prefix", "ca_file", "cert_file", "key_file", "strict"))
        cfg = cls()
        if given(m, "url"):
            cfg.url = _broker_url(origin, m["url"], "sinks.mqtt.url")
        if given(m, "url_env"):
            cfg.url_env = origin.string(m["url_env"], "sinks.mqtt.url_env")
            if not _ENV_NAME.fullmatch(cfg.url_env):
                raise origin.error("sinks.mqtt.url_env", f"'{cfg.url_env}' is not an environment variable name")
        if given(m, "topic_prefix"):
            cfg.topic_prefix = origin.string(m["topic_prefix"], "sinks.mqtt.topic_prefix")
            if any(c in cfg.topic_prefix for c in "#+"):
                raise origin.error("sinks.mqtt.topic_prefix", "MQTT wildcards # and + cannot be published to")
        for key in ("ca_file", "cert_file", "key_file"):
            if given(m, key):
                setattr(cfg, key, origin.path(m[key], f"sinks.mqtt.{key}"))
        if cfg.key_file is not None and cfg.cert_file is None:
            raise origin.error("sinks.mqtt.key_file", "a client key needs its certificate (cert_file)")
        plain = cfg.url and not origin.is_reference(cfg.url) and parse_broker_url(cfg.url).scheme not in TLS_SCHEMES
        if (cfg.ca_file or cfg.cert_file) and plain:
            raise origin.error("sinks.mqtt", "a CA file or client certificate needs a TLS broker URL (mqtts://)")
        if "strict" in m:
            cfg.strict = origin.boolean(m["strict"], "sinks.mqtt.strict")
        return cfg

    def to_dict(self, mask_secrets: bool = True) -> dict[str, Any]:
        url = mask_url(self.url) if (mask_secrets and self.url) else self.url
        files = {k: str(v) if v else None for k, v in
                 (("ca_file", self.ca_file), ("cert_file", self.cert_file), ("key_file", self.key_file))}
        return {"url": url, "url_env": self.url_env, "topic_prefix": self.topic_prefix, **files, "strict": self.strict}


def _broker_url(origin: Origin, value: Any, key: str) -> str:
    text = origin.string(value, key)
    if origin.is_reference(text):
        return text
    try:  # the parser the sink uses, so --check and the run agree on what is a broker URL
        parse_broker_url(text)
    except ConfigError as exc:
        raise origin.error(key, str(exc)) from None
    return text


@dataclass
class SinksConfig:
    """Where results go: an annotated video, a JSON-lines file, MQTT, a window."""

    video: Path | None = None
    video_fps: float | None = None
    jsonl: Path | None = None
    jsonl_append: bool = False  # append to the file instead of replacing it with this run's records
    mqtt: MqttConfig | None = None
    show: bool = False

    @classmethod
    def from_mapping(cls, value: Any, origin: Origin) -> SinksConfig:
        s = origin.mapping(value, "sinks", ("video", "jsonl", "mqtt", "show"))
        sinks = cls()
        if isinstance(s.get("video"), dict):
            v = origin.mapping(s["video"], "sinks.video", ("path", "fps"))
            if not given(v, "path"):
                raise origin.error("sinks.video.path", "required: the video file to write")
            sinks.video = origin.path(v["path"], "sinks.video.path")
            if given(v, "fps"):
                sinks.video_fps = origin.number(v["fps"], "sinks.video.fps", low=0.0, low_open=True)
        elif given(s, "video"):
            sinks.video = origin.path(s["video"], "sinks.video")
        if isinstance(s.get("jsonl"), dict):
            j = origin.mapping(s["jsonl"], "sinks.jsonl", ("path", "append"))
            if not given(j, "path"):
                raise origin.error("sinks.jsonl.path", "required: the JSON Lines file to write")
            sinks.jsonl = origin.path(j["path"], "sinks.jsonl.path")
            if "append" in j:
                sinks.jsonl_append = origin.boolean(j["append"], "sinks.jsonl.append")
        elif given(s, "jsonl"):
            sinks.jsonl = origin.path(s["jsonl"], "sinks.jsonl")
        if given(s, "mqtt"):
            sinks.mqtt = MqttConfig.from_value(s["mqtt"], origin)
        if "show" in s:
            sinks.show = origin.boolean(s["show"], "sinks.show")
        if sinks.video is not None and sinks.jsonl is not None and same_file(sinks.video, sinks.jsonl):
            raise origin.error("sinks.jsonl", f"{sinks.jsonl}: the same file as the video output (one would replace the other)")
        return sinks

    def to_dict(self, mask_secrets: bool = True) -> dict[str, Any]:
        return {  # the shape from_mapping reads, so a printed config loads again (--check printed video_fps)
            "video": None if self.video is None else {"path": str(self.video), "fps": self.video_fps},
            "jsonl": None if self.jsonl is None else {"path": str(self.jsonl), "append": self.jsonl_append},
            "mqtt": None if self.mqtt is None else self.mqtt.to_dict(mask_secrets),
            "show": self.show,
        }
