"""Declarative pipelines: a YAML file describing one detection job, loaded into checked dataclasses.

.. code-block:: yaml

    model: models/detector          # folder / .xml / .onnx / .pt, relative to this file
    quantize:                       # optional: quantize first; skipped when the output is up to date
      data: datasets/line1/data.yaml
      max_drop: 0.01
      output: models/detector-int8
    device: AUTO:GPU,CPU            # precision, hint, nireq, cache too
    sources:
      - {name: cam1, url: "rtsp://${CAM1_USER}:${CAM1_PASSWORD}@10.0.0.11/stream1"}
      - synth://conveyor?fps=30
    track: true
    conf: 0.4
    sinks: {video: out/line1.mp4, jsonl: out/line1.jsonl, mqtt: {topic_prefix: factory/line1}, show: false}
    max_frames: null
    stats_interval: 10
    reconnect: {initial_delay: 0.5, max_delay: 30, stall_timeout: 5}

Every key is checked: an unknown key is an error with a close-match suggestion, a bad value is an error naming
the file and the key path (``line1.yaml: sinks.mqtt.topic_prefix: expected a string, got 3``). String values
may reference environment variables as ``${VAR}`` or ``${VAR:-default}``; credentials belong in the
environment, so a password written literally in a URL is rejected. Relative paths are relative to the YAML file.
"""

from __future__ import annotations

import copy
import difflib
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

from ovq.runtime.devices import default_hint, parse_device
from ovq.core.errors import ConfigError, OvqError, SourceError, unknown_key_message
from ovq.runtime.compilation import HINTS, PRECISIONS, check_device
from ovq.streaming.sources import URL_SCHEMES, parse_source

logger = logging.getLogger(__name__)

MQTT_URL_ENV = "OVQ_MQTT_URL"
STREAM_SCHEMES = (*URL_SCHEMES, "synth", "file")
QUANTIZE_PRESETS = ("mixed", "performance")
QUANTIZE_PRECISIONS = ("default", "f32", "bf16")
DROP_TYPES = ("absolute", "relative")
RANK_BY = ("accuracy", "accuracy-per-latency")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_USERINFO = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://([^/@]*)@")


# --- the config dataclasses ----------------------------------------------------------------------------------


@dataclass
class QuantizeConfig:
    """Quantize the model to INT8 before running (``ovq.quantization.workflow``); skipped when ``output`` is up to date."""

    data: Path
    output: Path
    max_drop: float | None = None
    drop_type: str = "absolute"
    calib_split: str = "train"
    val_split: str = "val"
    subset_size: int = 300
    preset: str = "performance"
    ignore: tuple[str, ...] = ()
    device: str = "CPU"
    precision: str = "default"
    rank_by: str = "accuracy"
    bench_seconds: float = 0.0
    bias_correction: str | None = None  # fast / full; None: the model family's measured default
    overflow_fix: str = "auto"  # auto / first-layer / enable / disable (ovq.quantization.workflow.OVERFLOW_FIXES)


@dataclass
class SourceConfig:
    """One video source: ``url`` is a camera index (``"0"``), a file or folder, or ``rtsp://``, ``synth://``..."""

    url: str
    name: str | None = None


@dataclass
class MqttConfig:
    """Publish detections to MQTT. ``url`` wins over ``url_env`` (the variable holding the broker URL)."""

    url: str | None = None
    url_env: str = MQTT_URL_ENV
    topic_prefix: str = "ovq"


@dataclass
class SinksConfig:
    """Where results go: an annotated video, a JSON-lines file, MQTT, a window."""

    video: Path | None = None
    video_fps: float | None = None
    jsonl: Path | None = None
    mqtt: MqttConfig | None = None
    show: bool = False


@dataclass
class ReconnectConfig:
    """How live sources reconnect after a drop (``ovq.ReconnectPolicy``)."""

    initial_delay: float = 0.5
    max_delay: float = 30.0
    stall_timeout: float = 5.0
    retry: bool = True


@dataclass
class PipelineConfig:
    """A whole job, as loaded from a pipeline YAML file (see :func:`load_pipeline_config`)."""

    path: Path
    model: Path
    sources: list[SourceConfig]
    device: str = "AUTO"
    precision: str | None = None
    hint: str | None = None
    nireq: int = 0
    cache: bool | Path = True
    quantize: QuantizeConfig | None = None
    track: bool = False
    conf: float | None = None
    sinks: SinksConfig = field(default_factory=SinksConfig)
    max_frames: int | None = None
    stats_interval: float = 10.0
    reconnect: ReconnectConfig = field(default_factory=ReconnectConfig)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def source_names(self) -> list[str] | None:
        """Names for every source when any was named (unnamed ones get ``source<i>``), else ``None``."""
        if not any(s.name for s in self.sources):
            return None
        return [s.name or f"source{i}" for i, s in enumerate(self.sources)]

    def to_dict(self, *, mask_secrets: bool = True) -> dict[str, Any]:
        """The resolved config as plain data (paths as strings); passwords in URLs masked unless asked."""

        def url(text: str | None) -> str | None:
            return mask_url(text) if (mask_secrets and text) else text

        q = self.quantize
        mqtt = self.sinks.mqtt
        return {
            "model": str(self.model),
            "quantize": None if q is None else {
                "data": str(q.data), "output": str(q.output), "max_drop": q.max_drop, "drop_type": q.drop_type,
                "calib_split": q.calib_split,
                "val_split": q.val_split, "subset_size": q.subset_size, "preset": q.preset, "ignore": list(q.ignore),
                "device": q.device, "precision": q.precision, "rank_by": q.rank_by, "bench_seconds": q.bench_seconds,
                "bias_correction": q.bias_correction, "overflow_fix": q.overflow_fix,
            },
            "device": self.device,
            "precision": self.precision,
            "hint": self.hint,
            "nireq": self.nireq,
            "cache": self.cache if isinstance(self.cache, bool) else str(self.cache),
            "sources": [{"name": s.name, "url": url(s.url)} for s in self.sources],
            "track": self.track,
            "conf": self.conf,
            "sinks": {
                "video": None if self.sinks.video is None else str(self.sinks.video),
                "video_fps": self.sinks.video_fps,
                "jsonl": None if self.sinks.jsonl is None else str(self.sinks.jsonl),
                "mqtt": None if mqtt is None else {
                    "url": url(mqtt.url), "url_env": mqtt.url_env, "topic_prefix": mqtt.topic_prefix,
                },
                "show": self.sinks.show,
            },
            "max_frames": self.max_frames,
            "stats_interval": self.stats_interval,
            "reconnect": {
                "initial_delay": self.reconnect.initial_delay, "max_delay": self.reconnect.max_delay,
                "stall_timeout": self.reconnect.stall_timeout, "retry": self.reconnect.retry,
            },
        }


def has_literal_password(text: str) -> bool:
    """Whether a URL ``scheme://user:password@host`` holds a password written out (not only ``${VAR}``)."""
    match = _USERINFO.match(_ENV.sub("\0", text))
    if match is None or ":" not in match.group(1):
        return False
    return match.group(1).split(":", 1)[1].replace("\0", "") != ""


def env_references(value: Any) -> list[str]:
    """The environment variables a parsed YAML value references as ``${VAR}``, sorted, each once."""
    found: set[str] = set()

    def walk(v: Any) -> None:
        if isinstance(v, str):
            found.update(m.group(1) for m in _ENV.finditer(v))
        elif isinstance(v, dict):
            for item in v.values():
                walk(item)
        elif isinstance(v, list):
            for item in v:
                walk(item)

    walk(value)
    return sorted(found)


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


# --- reading YAML --------------------------------------------------------------------------------------------


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that rejects duplicate keys instead of silently keeping the last one."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key '{key}'", key_node.start_mark
            )
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file; syntax errors and duplicate keys become one-line :class:`ConfigError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: {where}invalid YAML: {problem}") from None


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


class _Ctx:
    """Where a value sits: the file and the key path, for error messages."""

    def __init__(self, file: Path, *, resolve_env: bool, environ: dict[str, str]) -> None:
        self.file = file
        self.base = file.parent
        self.resolve_env = resolve_env
        self.environ = environ

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.file}: {key}: {message}" if key else f"{self.file}: {message}")

    # -- typed readers; ``key`` is the full dotted path used in messages
    def mapping(self, value: Any, key: str, known: Iterable[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.error(key, f"expected a mapping, got {_describe(value)}")
        known = tuple(known)
        for k in value:
            if not isinstance(k, str):
                raise self.error(key, f"keys must be strings, got {_describe(k)}")
            if k not in known:
                where = f"{self.file}: {key}" if key else str(self.file)
                raise ConfigError(unknown_key_message(k, known, where))
        return value

    def string(self, value: Any, key: str) -> str:
        if not isinstance(value, str):
            raise self.error(key, f"expected a string, got {_describe(value)}")
        if has_literal_password(value):
            raise self.error(
                key, "holds a password written in the file; reference the environment instead, "
                "e.g. rtsp://${CAM_USER}:${CAM_PASSWORD}@host/stream (MQTT: OVQ_MQTT_USERNAME / OVQ_MQTT_PASSWORD)"
            )
        text = self.expand(value, key) if self.resolve_env else value
        if not text.strip():
            raise self.error(key, "expected a non-empty string")
        return text

    def expand(self, value: str, key: str) -> str:
        def sub(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in self.environ:
                return self.environ[name]
            if default is not None:
                return default
            raise self.error(key, f"environment variable {name} is not set (referenced as ${{{name}}})")

        return _ENV.sub(sub, value)

    def boolean(self, value: Any, key: str) -> bool:
        if not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {_describe(value)}")
        return value

    def number(self, value: Any, key: str, *, low: float | None = None, high: float | None = None,
               low_open: bool = False) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(key, f"expected a number, got {_describe(value)}")
        value = float(value)
        if low is not None and (value < low or (low_open and value == low)):
            bound = f"> {low:g}" if low_open else f">= {low:g}"
            raise self.error(key, f"expected a number {bound}" + (f" and <= {high:g}" if high is not None else "")
                             + f", got {value:g}")
        if high is not None and value > high:
            raise self.error(key, f"expected a number <= {high:g}, got {value:g}")
        return value

    def integer(self, value: Any, key: str, *, low: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"expected an integer, got {_describe(value)}")
        if low is not None and value < low:
            raise self.error(key, f"expected an integer >= {low}, got {value}")
        return value

    def choice(self, value: Any, key: str, choices: Iterable[str]) -> str:
        choices = tuple(choices)
        text = self.string(value, key)
        if text.lower() not in choices:
            raise self.error(key, f"expected one of {', '.join(choices)}, got {_describe(value)}")
        return text.lower()

    def path(self, value: Any, key: str) -> Path:
        text = self.string(value, key)
        return _join(self.base, text)


def _join(base: Path, text: str) -> Path:
    """``text`` as a path: absolute as it is, relative to ``base`` otherwise (``..`` folded, links kept)."""
    path = Path(text).expanduser()
    return Path(os.path.normpath(path if path.is_absolute() else base / path))


# --- sections ------------------------------------------------------------------------------------------------

_TOP_KEYS = ("model", "quantize", "device", "precision", "hint", "nireq", "cache", "sources", "track", "conf",
             "sinks", "max_frames", "stats_interval", "reconnect")
_QUANTIZE_KEYS = ("data", "output", "max_drop", "drop_type", "calib_split", "val_split", "subset_size", "preset", "ignore",
                  "device", "precision", "rank_by", "bench_seconds", "bias_correction",
                  "overflow_fix")
_SOURCE_KEYS = ("name", "url")
_SINK_KEYS = ("video", "jsonl", "mqtt", "show")
_VIDEO_KEYS = ("path", "fps")
_MQTT_KEYS = ("url", "url_env", "topic_prefix")
_RECONNECT_KEYS = ("initial_delay", "max_delay", "stall_timeout", "retry")


def _opt(data: dict[str, Any], key: str) -> bool:
    return data.get(key) is not None


def _parse_quantize(ctx: _Ctx, value: Any, model: Path) -> QuantizeConfig:
    q = ctx.mapping(value, "quantize", _QUANTIZE_KEYS)
    if not _opt(q, "data"):
        raise ctx.error("quantize.data", "required: the dataset to calibrate (and validate) with")
    out = ctx.path(q["output"], "quantize.output") if _opt(q, "output") else ctx.base / f"{model.stem}-int8"
    ignore_raw = q.get("ignore") or []
    if not isinstance(ignore_raw, list):
        raise ctx.error("quantize.ignore", f"expected a list of layer names, got {_describe(ignore_raw)}")
    cfg = QuantizeConfig(
        data=ctx.path(q["data"], "quantize.data"),
        output=out,
        max_drop=None if not _opt(q, "max_drop") else ctx.number(q["max_drop"], "quantize.max_drop", low=0.0,
                                                                  high=1.0, low_open=True),
        drop_type=ctx.choice(q.get("drop_type", "absolute"), "quantize.drop_type", DROP_TYPES),
        calib_split=ctx.string(q.get("calib_split", "train"), "quantize.calib_split"),
        val_split=ctx.string(q.get("val_split", "val"), "quantize.val_split"),
        subset_size=ctx.integer(q.get("subset_size", 300), "quantize.subset_size", low=1),
        preset=ctx.choice(q.get("preset", "performance"), "quantize.preset", QUANTIZE_PRESETS),
        ignore=tuple(ctx.string(x, f"quantize.ignore[{i}]") for i, x in enumerate(ignore_raw)),
        device=_device(ctx, q.get("device", "CPU"), "quantize.device"),
        precision=ctx.choice(q.get("precision", "default"), "quantize.precision", QUANTIZE_PRECISIONS),
        rank_by=ctx.choice(q.get("rank_by", "accuracy"), "quantize.rank_by", RANK_BY),
        bench_seconds=(ctx.number(q["bench_seconds"], "quantize.bench_seconds", low=0.0)
                       if _opt(q, "bench_seconds") else 0.0),
        bias_correction=(ctx.choice(q["bias_correction"], "quantize.bias_correction", ("fast", "full"))
                         if _opt(q, "bias_correction") else None),
        overflow_fix=(ctx.choice(q["overflow_fix"], "quantize.overflow_fix",
                                 ("auto", "first-layer", "enable", "disable"))
                      if _opt(q, "overflow_fix") else "auto"),
    )
    if cfg.rank_by != "accuracy" and cfg.max_drop is None:
        raise ctx.error("quantize.rank_by", "orders the reverts of accuracy control: it needs quantize.max_drop")
    return cfg


def _device(ctx: _Ctx, value: Any, key: str) -> str:
    text = ctx.string(value, key)
    if not ctx.resolve_env and "${" in text:
        return text
    try:
        return parse_device(text).text
    except OvqError as exc:
        raise ctx.error(key, str(exc)) from None


def _parse_source(ctx: _Ctx, value: Any, key: str) -> SourceConfig:
    name = None
    if isinstance(value, dict):
        item = ctx.mapping(value, key, _SOURCE_KEYS)
        if not _opt(item, "url"):
            raise ctx.error(f"{key}.url", "required: a camera index, file, folder or stream URL")
        if _opt(item, "name"):
            name = ctx.string(item["name"], f"{key}.name")
        value, key = item["url"], f"{key}.url"
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ctx.error(key, f"a camera index must be >= 0, got {value}")
        return SourceConfig(url=str(value), name=name)
    text = ctx.string(value, key).strip()
    scheme = _SCHEME.match(text)
    if scheme:
        if scheme.group(1).lower() not in STREAM_SCHEMES:
            close = difflib.get_close_matches(scheme.group(1).lower(), STREAM_SCHEMES, n=1, cutoff=0.5)
            hint = f"; did you mean '{close[0]}://'?" if close else f"; expected one of {', '.join(STREAM_SCHEMES)}"
            raise ctx.error(key, f"unknown stream scheme '{scheme.group(1)}://'{hint}")
        return SourceConfig(url=text, name=name)
    if text.isdigit() or ("${" in text and not ctx.resolve_env):
        return SourceConfig(url=text, name=name)
    return SourceConfig(url=str(_join(ctx.base, text)), name=name)


def _parse_sinks(ctx: _Ctx, value: Any) -> SinksConfig:
    s = ctx.mapping(value, "sinks", _SINK_KEYS)
    sinks = SinksConfig()
    if _opt(s, "video"):
        video = s["video"]
        if isinstance(video, dict):
            v = ctx.mapping(video, "sinks.video", _VIDEO_KEYS)
            if not _opt(v, "path"):
                raise ctx.error("sinks.video.path", "required: the video file to write")
            sinks.video = ctx.path(v["path"], "sinks.video.path")
            if _opt(v, "fps"):
                sinks.video_fps = ctx.number(v["fps"], "sinks.video.fps", low=0.0, low_open=True)
        else:
            sinks.video = ctx.path(video, "sinks.video")
    if _opt(s, "jsonl"):
        sinks.jsonl = ctx.path(s["jsonl"], "sinks.jsonl")
    if _opt(s, "mqtt"):
        mqtt = s["mqtt"]
        if mqtt is True:
            sinks.mqtt = MqttConfig()
        elif mqtt is False:
            sinks.mqtt = None
        elif isinstance(mqtt, str):
            sinks.mqtt = MqttConfig(url=_mqtt_url(ctx, mqtt, "sinks.mqtt"))
        else:
            m = ctx.mapping(mqtt, "sinks.mqtt", _MQTT_KEYS)
            cfg = MqttConfig()
            if _opt(m, "url"):
                cfg.url = _mqtt_url(ctx, m["url"], "sinks.mqtt.url")
            if _opt(m, "url_env"):
                cfg.url_env = ctx.string(m["url_env"], "sinks.mqtt.url_env")
                if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", cfg.url_env):
                    raise ctx.error("sinks.mqtt.url_env", f"'{cfg.url_env}' is not an environment variable name")
            if _opt(m, "topic_prefix"):
                cfg.topic_prefix = ctx.string(m["topic_prefix"], "sinks.mqtt.topic_prefix")
                if any(c in cfg.topic_prefix for c in "#+"):
                    raise ctx.error("sinks.mqtt.topic_prefix", "MQTT wildcards # and + cannot be published to")
            sinks.mqtt = cfg
    if "show" in s:
        sinks.show = ctx.boolean(s["show"], "sinks.show")
    return sinks


def _mqtt_url(ctx: _Ctx, value: Any, key: str) -> str:
    text = ctx.string(value, key)
    if "${" in text and not ctx.resolve_env:
        return text
    scheme = _SCHEME.match(text)
    if not scheme or scheme.group(1).lower() not in ("mqtt", "mqtts", "tcp", "ssl", "ws", "wss"):
        raise ctx.error(key, f"expected a broker URL like mqtt://host:1883, got {_describe(value)}")
    return text


def _parse_reconnect(ctx: _Ctx, value: Any) -> ReconnectConfig:
    if isinstance(value, bool):
        return ReconnectConfig(retry=value)
    r = ctx.mapping(value, "reconnect", _RECONNECT_KEYS)
    cfg = ReconnectConfig()
    for key in ("initial_delay", "max_delay", "stall_timeout"):
        if _opt(r, key):
            setattr(cfg, key, ctx.number(r[key], f"reconnect.{key}", low=0.0, low_open=True))
    if "retry" in r:
        cfg.retry = ctx.boolean(r["retry"], "reconnect.retry")
    if cfg.max_delay < cfg.initial_delay:
        raise ctx.error("reconnect.max_delay", f"must be >= initial_delay ({cfg.initial_delay:g}), got {cfg.max_delay:g}")
    return cfg


def parse_pipeline_config(
    data: Any, path: str | Path, *, resolve_env: bool = True, environ: dict[str, str] | None = None
) -> PipelineConfig:
    """Build a :class:`PipelineConfig` from parsed YAML ``data`` that came from ``path``.

    ``resolve_env=False`` leaves ``${VAR}`` references as they are (to rewrite a file without its secrets).
    """
    path = Path(path)
    ctx = _Ctx(path, resolve_env=resolve_env, environ=dict(os.environ if environ is None else environ))
    if data is None:
        raise ctx.error("", "the file is empty; expected at least 'model' and 'sources'")
    top = ctx.mapping(data, "", _TOP_KEYS)
    for key in ("model", "sources"):
        if not _opt(top, key):
            raise ctx.error(key, "required")
    model = ctx.path(top["model"], "model")
    sources_raw = top["sources"]
    if isinstance(sources_raw, (str, int, dict)) and not isinstance(sources_raw, bool):
        sources_raw = [sources_raw]
    if not isinstance(sources_raw, list) or not sources_raw:
        raise ctx.error("sources", f"expected a non-empty list of sources, got {_describe(top['sources'])}")
    sources = [_parse_source(ctx, s, f"sources[{i}]") for i, s in enumerate(sources_raw)]
    names = [s.name for s in sources if s.name]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ctx.error("sources", f"source name '{dup[0]}' is used twice")
    cache: bool | Path = True
    if "cache" in top:
        raw_cache = top["cache"]
        cache = ctx.boolean(raw_cache, "cache") if not isinstance(raw_cache, str) else ctx.path(raw_cache, "cache")
    cfg = PipelineConfig(
        path=path,
        model=model,
        sources=sources,
        device=_device(ctx, top["device"], "device") if _opt(top, "device") else "AUTO",
        precision=ctx.choice(top["precision"], "precision", PRECISIONS) if _opt(top, "precision") else None,
        hint=ctx.choice(top["hint"], "hint", HINTS) if _opt(top, "hint") else None,
        nireq=ctx.integer(top["nireq"], "nireq", low=0) if _opt(top, "nireq") else 0,
        cache=cache,
        quantize=_parse_quantize(ctx, top["quantize"], model) if _opt(top, "quantize") else None,
        track=ctx.boolean(top["track"], "track") if "track" in top else False,
        conf=ctx.number(top["conf"], "conf", low=0.0, high=1.0) if _opt(top, "conf") else None,
        sinks=_parse_sinks(ctx, top["sinks"]) if _opt(top, "sinks") else SinksConfig(),
        max_frames=ctx.integer(top["max_frames"], "max_frames", low=1) if _opt(top, "max_frames") else None,
        stats_interval=(ctx.number(top["stats_interval"], "stats_interval", low=0.0)
                        if _opt(top, "stats_interval") else 10.0),
        reconnect=_parse_reconnect(ctx, top["reconnect"]) if _opt(top, "reconnect") else ReconnectConfig(),
        raw=copy.deepcopy(data),
    )
    return cfg


def load_pipeline_config(
    path: str | Path, *, resolve_env: bool = True, environ: dict[str, str] | None = None
) -> PipelineConfig:
    """Read and check a pipeline YAML file. Raises :class:`ConfigError` naming the file and key on any problem."""
    path = Path(path)
    return parse_pipeline_config(read_yaml(path), path, resolve_env=resolve_env, environ=environ)


def check_paths(cfg: PipelineConfig) -> None:
    """Raise :class:`ConfigError` when a file the pipeline reads is missing (model, dataset, local sources)
    or a source string is invalid (``ovq.streaming.sources.parse_source``: URL host, ``synth://`` parameters...).

    (The quantization output and sink outputs are written, so they need not exist.) Opens nothing.
    """
    name = cfg.path
    if (cfg.quantize is None or not cfg.quantize.output.exists()) and not cfg.model.exists():
        raise ConfigError(f"{name}: model: {cfg.model}: no such file or folder")
    if cfg.quantize is not None and not cfg.quantize.data.exists():
        raise ConfigError(f"{name}: quantize.data: {cfg.quantize.data}: no such file or folder")
    for i, src in enumerate(cfg.sources):
        try:
            parse_source(src.url)
        except SourceError as exc:
            raise ConfigError(f"{name}: sources[{i}]: {exc}") from None


def check_environment(cfg: PipelineConfig, environ: dict[str, str] | None = None) -> None:
    """Raise :class:`ConfigError` when the MQTT sink's broker variable is not set (``${VAR}`` references were
    already resolved when the file was loaded)."""
    environ = dict(os.environ if environ is None else environ)
    mqtt = cfg.sinks.mqtt
    if mqtt is not None and mqtt.url is None and not environ.get(mqtt.url_env):
        raise ConfigError(f"{cfg.path}: sinks.mqtt: no broker URL: set the environment variable {mqtt.url_env} "
                          "(e.g. mqtt://broker:1883) or give sinks.mqtt.url")


def is_local_path(url: str) -> bool:
    """Whether a source string names a local file or folder (not a camera index or a stream URL)."""
    return not (url.isdigit() or _SCHEME.match(url) or url.startswith("/dev/video"))


# --- running -------------------------------------------------------------------------------------------------


def newest_mtime(path: Path) -> float:
    """The newest modification time of a file, or of a folder and anything under it.

    Folder times count too: removing an image from a dataset changes only its folder's time.
    """
    newest = path.stat().st_mtime
    if path.is_file():
        return newest
    for root, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            try:
                newest = max(newest, os.stat(os.path.join(root, name)).st_mtime)
            except OSError:
                continue
    return newest


def dataset_root(data: Path) -> Path:
    """The folder whose files make up a dataset given as a folder, a YOLO ``data.yaml`` or a COCO JSON.

    A YAML's ``path:`` (relative to the YAML) when it has one, else the YAML's folder; the folder above
    ``annotations/`` for a COCO JSON in one, else the JSON's folder.
    """
    if data.is_dir():
        return data
    if data.suffix.lower() in (".yaml", ".yml"):
        try:
            doc = yaml.safe_load(data.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            doc = None
        if isinstance(doc, dict) and isinstance(doc.get("path"), str) and doc["path"].strip():
            root = _join(data.parent, doc["path"])
            if root.is_dir():
                return root
        return data.parent
    if data.parent.name == "annotations":
        return data.parent.parent
    return data.parent


def quantized_is_fresh(q: QuantizeConfig, model: Path) -> bool:
    """Whether ``q.output`` holds a model newer than the source model and the data (so quantizing is skipped).

    The data counts with every file and folder of its :func:`dataset_root` (an image added or removed).
    """
    from ovq.model.conversion import MODEL_XML

    out_xml = q.output / MODEL_XML
    if not (out_xml.exists() and out_xml.with_suffix(".bin").exists()):
        return False
    built = min(out_xml.stat().st_mtime, out_xml.with_suffix(".bin").stat().st_mtime)
    data_time = max(newest_mtime(q.data), newest_mtime(dataset_root(q.data)))
    return built > newest_mtime(model) and built > data_time


def ensure_quantized(q: QuantizeConfig, model: Path) -> Path:
    """The quantized model's ``.xml``: quantized now with ``ovq.quantization.workflow``, or reused when up to date."""
    from ovq.model.conversion import MODEL_XML

    if quantized_is_fresh(q, model):
        logger.info("using %s (newer than %s and %s)", q.output, model, q.data)
        return q.output / MODEL_XML
    from ovq.quantization.options import AdvancedQuantizeOptions
    from ovq.quantization.workflow import quantize

    logger.info("quantizing %s with %s into %s", model, q.data, q.output)
    result = quantize(
        model, q.data, q.output, max_drop=q.max_drop, drop_type=q.drop_type, calib_split=q.calib_split,
        val_split=q.val_split, subset_size=q.subset_size, preset=q.preset, ignore=q.ignore, device=q.device,
        precision=q.precision, rank_by=q.rank_by, advanced=AdvancedQuantizeOptions(
            bench_seconds=q.bench_seconds,
            bias_correction=q.bias_correction,
            overflow_fix=q.overflow_fix,
        ),
    )
    return Path(result.model_xml)


def build_sinks(cfg: PipelineConfig, *, environ: dict[str, str] | None = None) -> list[Any]:
    """The sink objects the config asks for (``ovq.VideoSink``, ``JsonlSink``, ``MqttSink``, ``WindowSink``).

    When one cannot be made, the ones already made are closed before the error propagates.
    """
    import ovq

    environ = dict(os.environ if environ is None else environ)
    out: list[Any] = []
    s = cfg.sinks
    try:
        if s.video is not None:
            out.append(ovq.VideoSink(s.video, fps=s.video_fps))
        if s.jsonl is not None:
            out.append(ovq.JsonlSink(s.jsonl))
        if s.mqtt is not None:
            check_environment(cfg, environ)
            url = s.mqtt.url or environ[s.mqtt.url_env]
            out.append(ovq.MqttSink(url, topic_prefix=s.mqtt.topic_prefix))
        if s.show:
            out.append(ovq.WindowSink())
    except BaseException:
        _close_all(out)
        raise
    return out


def _close_all(sinks: list[Any]) -> None:
    for sink in sinks:
        try:
            sink.close()
        except Exception as exc:  # the first error is the one to report
            logger.debug("closing %r after a failed start: %s", sink, exc)


def build_pipeline(cfg: PipelineConfig, *, max_frames: int | None = None, device: str | None = None) -> Any:
    """Quantize if asked (or reuse an up-to-date result), compile the model and build the ``ovq.Pipeline``.

    ``max_frames`` and ``device`` override the file's values. The model is compiled here (with the file's
    ``cache`` setting) and handed to the pipeline as a :class:`~ovq.Detector`. The performance hint defaults to
    ``throughput`` (several streams share the requests), except ``latency`` on an NPU.
    """
    import ovq

    check_paths(cfg)
    check_environment(cfg)
    device = device or cfg.device
    spec = check_device(device)  # before a quantization that may take minutes
    model: Path = cfg.model
    if cfg.quantize is not None:
        model = ensure_quantized(cfg.quantize, cfg.model)
    hint = cfg.hint or default_hint(spec)
    detector = ovq.Detector(model, device=device, conf=cfg.conf, precision=cfg.precision, hint=hint,
                            cache=cfg.cache)  # type: ignore[arg-type]  # a cache folder is accepted too
    r = cfg.reconnect
    sinks = build_sinks(cfg)
    try:
        return ovq.Pipeline(
            detector,
            [s.url for s in cfg.sources],
            names=cfg.source_names,
            device=device,
            conf=cfg.conf,
            nireq=cfg.nireq,
            track=cfg.track,
            sinks=sinks,
            max_frames=max_frames if max_frames is not None else cfg.max_frames,
            stats_interval=cfg.stats_interval,
            reconnect=ovq.ReconnectPolicy(
                initial_delay=r.initial_delay, max_delay=r.max_delay, stall_timeout=r.stall_timeout, retry=r.retry
            ),
        )
    except BaseException:
        _close_all(sinks)
        raise


def run_pipeline_config(cfg: PipelineConfig, *, max_frames: int | None = None, device: str | None = None) -> Any:
    """:func:`build_pipeline`, then run it; returns its ``RunSummary``."""
    return build_pipeline(cfg, max_frames=max_frames, device=device).run()
