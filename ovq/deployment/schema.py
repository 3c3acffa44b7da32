"""What a pipeline job is: model, optional quantization, device, sources, sinks, reconnection; checked once.

One :class:`PipelineConfig` describes a job however it was written: ``ovq pipeline FILE.yaml`` reads it from a
file (:mod:`ovq.deployment.loader`), ``ovq run MODEL --source ...`` from its flags; both go through
:meth:`PipelineConfig.from_mapping`, and :mod:`ovq.deployment.build` turns the result into a running pipeline.

Every key is checked as it is read: an unknown key is an error with a close-match suggestion, a bad value an
error naming the file and the key path (``line1.yaml: sinks.mqtt.topic_prefix: expected a string, got 3``) or,
from the command line, the flag. The ``quantize`` section is :class:`~ovq.quantization.options.QuantizeOptions`
(the options ``ovq quantize`` takes) plus where the data is and where the result goes.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ovq.core.errors import ConfigError, OvqError
from ovq.core.fileio import is_stream, same_file
from ovq.core.urls import UNSENDABLE_TOKEN, is_serving_url, is_utf8_text, mask_url, parse_url
from ovq.data.images import IMAGE_SUFFIXES
from ovq.data.layout import output_in_dataset
from ovq.deployment.fields import Origin, describe, given
from ovq.deployment.sinks_config import (  # noqa: F401 - importable from here too
    MQTT_URL_ENV,
    MqttConfig,
    SinksConfig,
    refuse_deriving_a_source,
    refuse_deriving_an_output,
)
from ovq.model.decoders.graph_nms import NMS_MODES
from ovq.model.ingraph import RESIZE_MODES
from ovq.model.paths import MODEL_XML, model_files
from ovq.quantization.options import AdvancedQuantizeOptions, QuantizeOptions
from ovq.runtime.compilation import HINTS, PRECISIONS
from ovq.runtime.devices import parse_device
from ovq.serving.urls import GRAPH_ONLY, SERVER_DECIDES, parse_serving_url, server_decides
from ovq.streaming.sources import DECODE_MODES, URL_SCHEMES, stream_name_problem

STREAM_SCHEMES = (*URL_SCHEMES, "synth", "file")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_OPTION = re.compile(r"^([A-Za-z_]\w*(?:\[\d+\])?): (.*)$", re.DOTALL)

# The quantize section: the shared options (QuantizeOptions and its advanced knobs, flat) and the two keys only a
# pipeline needs. A pipeline quantizes on start-up, so its report skips the throughput benchmark by default
# (QuantizeOptions' 5 s per configuration would delay every start that quantizes).
_OPTION_KEYS = tuple(f.name for f in fields(QuantizeOptions) if f.name != "advanced") + tuple(
    f.name for f in fields(AdvancedQuantizeOptions))
QUANTIZE_KEYS = ("data", "output", *_OPTION_KEYS)
PIPELINE_QUANTIZE_DEFAULTS = {"bench_seconds": 0.0}


def device_text(origin: Origin, value: Any, key: str) -> str:
    """A device string, normalized (``auto:gpu,cpu`` -> ``AUTO:GPU,CPU``); its syntax checked, not the hardware."""
    text = origin.string(value, key)
    if origin.is_reference(text):
        return text
    try:
        return parse_device(text).text
    except OvqError as exc:
        raise origin.error(key, str(exc)) from None


@dataclass
class QuantizeConfig:
    """Quantize the model to INT8 before running (``ovq.quantization``); skipped while ``output`` is up to date."""

    data: Path
    output: Path
    options: QuantizeOptions = field(default_factory=QuantizeOptions)

    @classmethod
    def from_mapping(cls, value: Any, origin: Origin, model: Path) -> QuantizeConfig:
        q = origin.mapping(value, "quantize", QUANTIZE_KEYS)
        if not given(q, "data"):
            raise origin.error("quantize.data", "required: the dataset to calibrate (and validate) with")
        output = origin.base / f"{model.stem}-int8"  # beside the pipeline file unless given
        if given(q, "output"):
            if origin.string(q["output"], "quantize.output") == "-":  # made a folder named '-' beside the file
                raise origin.error("quantize.output", "'-': the INT8 model is a folder, not standard output; give a "
                                                      "folder (./- for one named '-')")
            output = origin.path(q["output"], "quantize.output")
        held = [f for f in model_files(model) for name in (MODEL_XML, "model.bin") if same_file(f, output / name)]
        if held:  # quantize refused it as '...; give another output folder (-o)', a flag no pipeline file has
            raise origin.error("quantize.output", f"{output}: holds the float model being quantized ({held[0].name}), "
                                                  "which the INT8 model would replace; give another folder")
        data = origin.path(q["data"], "quantize.data")
        if problem := _output_problem(output, data, model):
            raise origin.error("quantize.output", f"{output}: {problem}")
        asked = {k: origin.env_scalar(v, f"quantize.{k}") for k, v in q.items()
                 if k not in ("data", "output") and v is not None}
        try:
            options = QuantizeOptions.from_mapping({**PIPELINE_QUANTIZE_DEFAULTS, **asked})
        except ConfigError as exc:  # "max_drop: expected ..." -> "FILE: quantize.max_drop: expected ..."
            match = _OPTION.match(str(exc))
            if match is None:
                raise origin.error("quantize", str(exc)) from None
            raise origin.error(f"quantize.{match.group(1)}", match.group(2)) from None
        # the same device syntax as the pipeline's own device (QuantizeOptions only checks it is a string)
        options = replace(options, device=device_text(origin, options.device, "quantize.device"))
        return cls(data=data, output=output, options=options)

    def to_dict(self) -> dict[str, Any]:
        return {"data": str(self.data), "output": str(self.output), **self.options.to_dict()}


def _output_problem(output: Path, data: Path, model: Path) -> str | None:
    """Why ``output`` cannot hold the INT8 model: a file (the run failed after the model loaded, --check said OK),
    the dataset's folder or one holding it (``.``, ``/``: the model and report went in among the data, and the
    whole dataset was the output), or inside its ``images/`` or ``labels/`` (its plot became a calibration image)."""
    if output.exists() and not output.is_dir():
        mine = any(same_file(output, f) for f in model_files(model))
        return f"is {'a file of the float model' if mine else 'a file'}; give a folder for the INT8 model"
    return output_in_dataset(output, data, named="quantize.data")


@dataclass
class SourceConfig:
    """One video source: ``url`` is a camera index (``"0"``), a file or folder, or ``rtsp://``, ``synth://``..."""

    url: str
    name: str | None = None

    @classmethod
    def from_value(cls, value: Any, origin: Origin, key: str) -> SourceConfig:
        """From a source string, a camera index, or ``{name, url}``."""
        name = None
        if isinstance(value, dict):
            item = origin.mapping(value, key, ("name", "url"))
            if not given(item, "url"):
                raise origin.error(f"{key}.url", "required: a camera index, file, folder or stream URL")
            if given(item, "name"):
                name = origin.string(item["name"], f"{key}.name")
                if problem := stream_name_problem(name):  # before the model compiles, not after
                    raise origin.error(f"{key}.name", problem)
            value, key = item["url"], f"{key}.url"
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 0:
                raise origin.error(key, f"a camera index must be >= 0, got {value}")
            return cls(url=str(value), name=name)
        text = origin.string(value, key).strip()
        scheme = _SCHEME.match(text)
        if scheme:
            if not origin.is_reference(text) and scheme.group(1).lower() not in ("synth", "file"):
                try:  # the parser the run uses: scheme, host and port checked here already
                    parse_url(text, schemes=STREAM_SCHEMES, what="stream")
                except ConfigError as exc:
                    raise origin.error(key, str(exc)) from None
            return cls(url=text, name=name)
        if text.isdigit() or origin.is_reference(text):
            return cls(url=text, name=name)
        return cls(url=str(origin.path(text, key)), name=name)

    def to_dict(self, mask_secrets: bool = True) -> dict[str, Any]:
        return {"name": self.name, "url": mask_url(self.url) if mask_secrets else self.url}


def refuse_writing_an_input(cfg: PipelineConfig, key: str, output: str | Path | None) -> None:
    """An error naming ``key`` when ``output`` is a file the run reads: it replaced that file with its own output,
    exit 0 (``--source v.mp4 --out v.mp4``: the input video gone; ``--jsonl m/model.xml``: the model; a pipeline
    file's ``sinks.jsonl: p.yaml``: the pipeline file itself)."""
    if output is None or is_stream(output):  # /dev/stdout, a FIFO: nothing is replaced
        return
    for what, path in _inputs(cfg, output):
        if Path(path).is_file() and same_file(output, path):
            raise cfg.where.error(key, f"{output}: {what} is read from it; writing there would replace the input "
                                       "(give another file)")


def _inputs(cfg: PipelineConfig, output: str | Path) -> Iterator[tuple[str, str | Path]]:
    """The files a run of ``cfg`` reads that ``output`` could be, each with what it is to the run."""
    for source in cfg.sources:
        if not is_local_path(source.url):
            continue
        yield f"the video source {source.name or source.url}", source.url
        if Path(source.url).is_dir() and Path(output).suffix.lower() in IMAGE_SUFFIXES:  # an image the folder gives
            yield f"an image of the source {source.name or source.url}", Path(source.url) / Path(output).name
    if cfg.path is not None:
        yield "the pipeline file", cfg.path
    models = [] if isinstance(cfg.model, str) else [cfg.model]
    if cfg.quantize is not None:
        yield "quantize.data", cfg.quantize.data
        models.append(cfg.quantize.output)
    for model in models:
        for path in model_files(model):
            yield f"the model {model}", path


def is_local_path(url: str) -> bool:
    """Whether a source string names a local file or folder (not a camera index or a stream URL)."""
    return not (url.isdigit() or _SCHEME.match(url) or url.startswith("/dev/video"))


@dataclass
class ServeConfig:
    """The live view over HTTP (:class:`ovq.streaming.web.LiveServer`): where it listens, how fast, its token.

    ``host`` is 127.0.0.1 unless given; ``token`` (else ``$OVQ_SERVE_TOKEN`` when the server starts) is then
    required by the page and every endpoint but ``/healthz``. A stream with no result for ``stall_timeout``
    seconds turns ``/healthz`` to 503.
    """

    host: str = "127.0.0.1"
    port: int = 8080
    fps: float = 10.0
    token: str | None = None
    stall_timeout: float = 10.0

    @property
    def url(self) -> str:
        """The page's address (what a unit's health check or a user's browser opens)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    @classmethod
    def from_value(cls, value: Any, origin: Origin) -> ServeConfig | None:
        """From ``true``/``false``, a port, ``"[HOST:]PORT"``, or ``{listen, fps, token, stall_timeout}``."""
        if value is False:
            return None
        if value is True:
            return cls()
        if not isinstance(value, dict):
            value = {"listen": value}
        m = origin.mapping(value, "serve", ("listen", "fps", "token", "stall_timeout"))
        cfg = cls()
        if given(m, "listen"):
            cfg.host, cfg.port = parse_listen(origin, m["listen"], "serve.listen")
        if given(m, "fps"):
            cfg.fps = origin.number(m["fps"], "serve.fps", low=0.0, low_open=True, high=60.0)
        if given(m, "token"):
            cfg.token = origin.string(m["token"], "serve.token")
            if not is_utf8_text(cfg.token):  # never shown: a secret
                raise origin.error("serve.token", f"not UTF-8 text; {UNSENDABLE_TOKEN}")
        if given(m, "stall_timeout"):
            cfg.stall_timeout = origin.number(m["stall_timeout"], "serve.stall_timeout", low=0.0, low_open=True)
        return cfg

    def to_dict(self, mask_secrets: bool = True) -> dict[str, Any]:
        token = "***" if (mask_secrets and self.token) else self.token
        host = f"[{self.host}]" if ":" in self.host else self.host
        return {"listen": f"{host}:{self.port}", "fps": self.fps, "token": token, "stall_timeout": self.stall_timeout}


def parse_listen(origin: Origin, value: Any, key: str) -> tuple[str, int]:
    """``8080``, ``"8080"``, ``"0.0.0.0:8080"`` or ``"[::1]:8080"`` as (host, port); the host defaults to 127.0.0.1."""
    if isinstance(value, int) and not isinstance(value, bool):
        host, port_text = "127.0.0.1", str(value)
    else:
        text = origin.string(value, key).strip()
        host, sep, port_text = text.rpartition(":")
        if not sep:
            host = "127.0.0.1"
        host = host.strip("[]") if host.startswith("[") else host
        if not host or (":" in host and not text.startswith("[")):
            raise origin.error(key, f"expected [HOST:]PORT (IPv6 as [::1]:PORT), got {describe(value)}")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise origin.error(key, f"expected a port 0..65535, got {describe(value)}")
    return host, int(port_text)


@dataclass
class ReconnectConfig:
    """How live sources reconnect after a drop (``ovq.streaming.readers.ReconnectPolicy``)."""

    initial_delay: float = 0.5
    max_delay: float = 30.0
    stall_timeout: float = 5.0
    retry: bool = True

    @classmethod
    def from_value(cls, value: Any, origin: Origin) -> ReconnectConfig:
        """From ``true``/``false`` (retry or not) or ``{initial_delay, max_delay, stall_timeout, retry}``."""
        if isinstance(value, bool):
            return cls(retry=value)
        r = origin.mapping(value, "reconnect", ("initial_delay", "max_delay", "stall_timeout", "retry"))
        cfg = cls()
        for key in ("initial_delay", "max_delay", "stall_timeout"):
            if given(r, key):
                setattr(cfg, key, origin.number(r[key], f"reconnect.{key}", low=0.0, low_open=True))
        if "retry" in r:
            cfg.retry = origin.boolean(r["retry"], "reconnect.retry")
        if cfg.max_delay < cfg.initial_delay:
            raise origin.error("reconnect.max_delay",
                               f"must be >= initial_delay ({cfg.initial_delay:g} s), got {cfg.max_delay:g}")
        return cfg


def _model(origin: Origin, value: Any) -> Path | str:
    """The model: a path (relative to the file), or a serving URL kept as it is once it parsed."""
    text = origin.string(value, "model")
    if not is_serving_url(text):
        return origin.path(value, "model")
    try:
        parse_serving_url(text)
    except ConfigError as exc:
        raise origin.error("model", str(exc)) from None
    return text


def _refuse_local_options(origin: Origin, top: dict[str, Any], model: str) -> None:
    """For a served ``model``, a key only a local model honours is an error, not an option dropped without a word
    (``ovq run`` refuses the same as flags: :func:`ovq.cli._common.refuse_local_options`)."""
    if given(top, "quantize"):
        raise origin.error("quantize", f"the model is served at {model}; quantize a local model and serve the result")
    for key in SERVER_DECIDES:
        what = server_decides(key, top.get(key))
        if what is not None:
            advice = "or set it to python" if key in GRAPH_ONLY else "choose it where the model is served"
            name = origin.name_of(key)
            raise origin.error(key, f"the model is served at {model}, which {what}; remove {name} ({advice})")


_TOP_KEYS = ("model", "quantize", "device", "precision", "hint", "nireq", "cache", "sources", "track", "conf",
             "sinks", "max_frames", "stats_interval", "reconnect", "realtime", "serve",
             "strict", "resize", "decode", "nms")


@dataclass
class PipelineConfig:
    """A whole job: see :meth:`from_mapping` (and :func:`ovq.deployment.loader.load_pipeline_config` for files).

    ``path`` is the YAML file it came from, ``None`` for the command line. ``raw`` is the mapping as written
    (``${VAR}`` references unexpanded), from which ``ovq bundle`` writes the shipped file.
    """

    path: Path | None
    model: Path | str  # a path, or a serving URL (http(s)://HOST:PORT/v2/models/NAME, grpc://...)
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
    realtime: bool = False  # read files at their frame rate, dropping frames like a live camera
    serve: ServeConfig | None = None  # the live view over HTTP (ovq.streaming.web)
    strict: bool = False  # a video file that ends before its stated frame count fails the run
    resize: str = "auto"  # where frames are resized: auto, python, graph (ovq.model.ingraph.RESIZE_MODES)
    decode: str = "auto"  # video decoding of files and URLs: auto, software, vaapi... (ovq.streaming.sources.DECODE_MODES)
    nms: str = "auto"  # where boxes are decoded and NMS'd: auto, python, graph (graph_nms.NMS_MODES)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    origin: Origin | None = field(default=None, repr=False, compare=False)

    @property
    def where(self) -> Origin:
        """The :class:`~ovq.deployment.fields.Origin` its messages name (its file, or the command line)."""
        if self.origin is not None:
            return self.origin
        return Origin.yaml_file(self.path) if self.path is not None else Origin.command_line({})

    @classmethod
    def from_mapping(cls, data: Any, origin: Origin, *, raw: Any = None) -> PipelineConfig:
        """Check ``data`` (a parsed YAML file with ``${VAR}`` expanded, or the command line's options) key by key.

        Raises :class:`ConfigError` naming the file (or flag) and the key on the first problem.
        """
        if data is None:
            raise origin.error("", "the file is empty; expected at least 'model' and 'sources'")
        top = origin.mapping(data, "", _TOP_KEYS)
        for key in ("model", "sources"):
            if not given(top, key):
                raise origin.error(key, "required")
        model = _model(origin, top["model"])
        o, t = origin, top
        if isinstance(model, str):
            _refuse_local_options(o, t, model)
        cfg = cls(
            path=o.file,
            model=model,
            sources=_sources(o, t["sources"]),
            device=device_text(o, t["device"], "device") if given(t, "device") else "AUTO",
            precision=o.choice(t["precision"], "precision", PRECISIONS) if given(t, "precision") else None,
            hint=o.choice(t["hint"], "hint", HINTS) if given(t, "hint") else None,
            nireq=o.integer(t["nireq"], "nireq", low=0) if given(t, "nireq") else 0,
            cache=_cache(o, t["cache"]) if "cache" in t else True,
            quantize=QuantizeConfig.from_mapping(t["quantize"], o, model) if given(t, "quantize") else None,
            track=o.boolean(t["track"], "track") if "track" in t else False,
            conf=o.number(t["conf"], "conf", low=0.0, high=1.0) if given(t, "conf") else None,
            sinks=SinksConfig.from_mapping(t["sinks"], o) if given(t, "sinks") else SinksConfig(),
            max_frames=o.integer(t["max_frames"], "max_frames", low=1) if given(t, "max_frames") else None,
            stats_interval=(o.number(t["stats_interval"], "stats_interval", low=0.0)
                            if given(t, "stats_interval") else 10.0),
            reconnect=ReconnectConfig.from_value(t["reconnect"], o) if given(t, "reconnect") else ReconnectConfig(),
            realtime=o.boolean(t["realtime"], "realtime") if "realtime" in t else False,
            serve=ServeConfig.from_value(t["serve"], o) if given(t, "serve") else None,
            strict=o.boolean(t["strict"], "strict") if "strict" in t else False,
            resize=o.choice(t["resize"], "resize", RESIZE_MODES) if given(t, "resize") else "auto",
            decode=o.choice(t["decode"], "decode", DECODE_MODES) if given(t, "decode") else "auto",
            nms=o.choice(t["nms"], "nms", NMS_MODES) if given(t, "nms") else "auto",
            raw=copy.deepcopy(data if raw is None else raw),
            origin=origin,
        )
        for key, output in (("sinks.video", cfg.sinks.video), ("sinks.jsonl", cfg.sinks.jsonl)):
            refuse_writing_an_input(cfg, key, output)
        files = {f"{s.name} ({s.url})" if s.name else s.url: Path(s.url) for s in cfg.sources
                 if is_local_path(s.url) and Path(s.url).is_file()}
        if files:
            refuse_deriving_a_source(o, cfg.sinks, cfg.stream_names, files)
        refuse_deriving_an_output(o, cfg.sinks, cfg.stream_names, "sinks.jsonl", cfg.sinks.jsonl)
        return cfg

    @property
    def stream_names(self) -> list[str]:
        """The streams' names as the pipeline gives them (unnamed: ``s0``, ``s1``...), which name their files."""
        return self.source_names or [f"s{i}" for i in range(len(self.sources))]

    @property
    def source_names(self) -> list[str] | None:
        """Names for every source when any was named (unnamed ones get ``source<i>``), else ``None``."""
        if not any(s.name for s in self.sources):
            return None
        return [s.name or f"source{i}" for i, s in enumerate(self.sources)]

    def to_dict(self, *, mask_secrets: bool = True) -> dict[str, Any]:
        """The resolved config as plain data (paths as strings); passwords in URLs masked unless asked."""
        return {
            "model": str(self.model),
            "quantize": None if self.quantize is None else self.quantize.to_dict(),
            "device": self.device,
            "precision": self.precision,
            "hint": self.hint,
            "nireq": self.nireq,
            "cache": self.cache if isinstance(self.cache, bool) else str(self.cache),
            "sources": [s.to_dict(mask_secrets) for s in self.sources],
            "track": self.track,
            "conf": self.conf,
            "sinks": self.sinks.to_dict(mask_secrets),
            "max_frames": self.max_frames,
            "stats_interval": self.stats_interval,
            "reconnect": asdict(self.reconnect),
            "realtime": self.realtime,
            "serve": None if self.serve is None else self.serve.to_dict(mask_secrets),
            "strict": self.strict,
            "resize": self.resize,
            "decode": self.decode,
            "nms": self.nms,
        }


def _sources(origin: Origin, value: Any) -> list[SourceConfig]:
    items = [value] if isinstance(value, (str, int, dict)) and not isinstance(value, bool) else value
    if not isinstance(items, list) or not items:
        raise origin.error("sources", f"expected a non-empty list of sources, got {describe(value)}")
    sources = [SourceConfig.from_value(item, origin, f"sources[{i}]") for i, item in enumerate(items)]
    names = [s.name for s in sources]
    for i, name in enumerate(names):
        if name and name in names[:i]:  # at the name's own key: --name on the command line, not --source
            raise origin.error(f"sources[{i}].name", f"source name '{name}' is used twice")
    for i, name in enumerate(names):  # the unnamed get source<i> when any is named (source_names)
        if name is None and f"source{i}" in names:
            raise origin.error(f"sources[{names.index(f'source{i}')}].name",
                               f"source name 'source{i}' is the name the unnamed sources[{i}] gets (name that one too)")
    return sources


def _cache(origin: Origin, value: Any) -> bool | Path:
    """``true``/``false`` (the default cache folder or none), or a cache folder."""
    return origin.path(value, "cache") if isinstance(value, str) else origin.boolean(value, "cache")
