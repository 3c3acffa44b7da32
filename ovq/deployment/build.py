"""From a checked :class:`PipelineConfig` to a running :class:`~ovq.streaming.pipeline.Pipeline`.

The one build path of ``ovq pipeline FILE.yaml`` and ``ovq run MODEL --source ...``: check what the job reads
(paths, environment, device) before anything slow starts, quantize when asked and stale, compile the model,
make the sinks, assemble the pipeline.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ovq.core.errors import ConfigError, OvqError, SourceError
from ovq.core.fileio import check_output_dir
from ovq.data.layout import dataset_root, newest_mtime
from ovq.deployment.schema import PipelineConfig, QuantizeConfig, ServeConfig
from ovq.model.conversion import MODEL_XML
from ovq.model.decoders.graph_nms import NMS_MODES
from ovq.model.ingraph import RESIZE_MODES
from ovq.model.paths import model_digest
from ovq.quantization.options import data_used, options_asked
from ovq.runtime.compilation import check_device
from ovq.runtime.devices import default_hint
from ovq.serving.remote import open_detector
from ovq.streaming.mqtt import TLS_SCHEMES, MqttSink, check_credentials, parse_broker_url
from ovq.streaming.pipeline import Pipeline, Sink
from ovq.streaming.readers import ReconnectPolicy
from ovq.streaming.sinks import JsonlSink, VideoSink, WindowSink
from ovq.streaming.sources import missing_decoder_said, parse_source
from ovq.streaming.stats import RunSummary
from ovq.streaming.web import LiveServer, token_from_env

logger = logging.getLogger(__name__)


def check_paths(cfg: PipelineConfig) -> None:
    """Raise :class:`ConfigError` when a file the pipeline reads is missing (model, dataset, local sources)
    or a source string is invalid (``ovq.streaming.sources.parse_source``: URL host, ``synth://`` parameters...).

    (The quantization output and sink outputs are written, so they need not exist.) Opens nothing.
    """
    where = cfg.where
    if isinstance(cfg.model, Path) and (cfg.quantize is None or not cfg.quantize.output.exists()) \
            and not cfg.model.exists():
        raise where.error("model", f"{cfg.model}: no such file or folder")
    if cfg.quantize is not None and not cfg.quantize.data.exists():
        raise where.error("quantize.data", f"{cfg.quantize.data}: no such file or folder")
    mqtt = cfg.sinks.mqtt
    for key in ("ca_file", "cert_file", "key_file"):
        path = getattr(mqtt, key) if mqtt is not None else None
        if path is not None and not path.is_file():
            raise where.error(f"sinks.mqtt.{key}", f"{path}: no such file")
    for i, src in enumerate(cfg.sources):
        try:
            parse_source(src.url)
        except SourceError as exc:
            raise where.error(f"sources[{i}]", str(exc)) from None


def check_decoder(cfg: PipelineConfig) -> None:
    """Raise :class:`ConfigError` when ``decode`` asks for a hardware decoder this machine cannot have, for sources
    it decodes (not cameras), named as the configuration names it (``--decode``, ``p.yaml: decode``); a bundle
    built elsewhere is not checked here, but on the machine that runs it."""
    if any(parse_source(s.url).kind != "camera" for s in cfg.sources) and (problem := missing_decoder_said(cfg.decode)):
        raise cfg.where.error("decode", problem)


def check_environment(cfg: PipelineConfig, environ: Mapping[str, str] | None = None) -> None:
    """Raise :class:`ConfigError` when the MQTT sink's broker variable is not set, or holds no broker URL the sink
    takes (``${VAR}`` references were already resolved when the file was loaded): checked by the parser the sink
    uses, as a URL in the file is, so ``--check`` and the run agree (a bad port there passed ``--check``)."""
    environ = os.environ if environ is None else environ
    if cfg.serve is not None and cfg.serve.token is None:
        token_from_env(environ)  # one that is not UTF-8 text: refused before anything starts
    mqtt = cfg.sinks.mqtt
    if mqtt is not None:
        check_credentials(environ)
    if mqtt is None or mqtt.url is not None:
        return
    where, url = cfg.where, environ.get(mqtt.url_env)
    if not url:
        raise where.error("sinks.mqtt", f"no broker URL: set the environment variable {mqtt.url_env} "
                                        f"(e.g. mqtt://broker:1883) or give {where.name_of('sinks.mqtt.url')}")
    try:
        parsed = parse_broker_url(url)
    except ConfigError as exc:
        raise where.error("sinks.mqtt", f"{mqtt.url_env}: {exc}") from None
    check_credentials(environ, parsed, mqtt.url_env)
    scheme = parsed.scheme
    if (mqtt.ca_file or mqtt.cert_file) and scheme not in TLS_SCHEMES:
        raise where.error("sinks.mqtt", f"{mqtt.url_env}: a CA file or client certificate needs a TLS broker URL "
                                        "(mqtts://)")


def quantized_is_fresh(q: QuantizeConfig, model: Path) -> bool:
    """Whether ``q.output`` holds a model newer than the source model, made from it with the settings and the data
    the section asks for (so quantizing is skipped).

    The data is compared with the fingerprint of its files the provenance holds (:func:`settings_changed`); for a
    model made before ovq recorded it, the output must be newer than every file and folder of the data's
    :func:`~ovq.data.layout.dataset_root` (an image added or removed). Only the first can tell when the output is
    kept inside the dataset's folder, whose time its own writing moves.
    """
    out_xml = q.output / MODEL_XML
    out_bin = out_xml.with_suffix(".bin")
    if not (out_xml.exists() and out_bin.exists()):
        return False
    built = min(out_xml.stat().st_mtime, out_bin.stat().st_mtime)
    if not built > newest_mtime(model):
        return False
    made = _made_with(q)
    if not isinstance(made.get("data_used"), dict):
        data_time = max(newest_mtime(q.data, skip=q.output), newest_mtime(dataset_root(q.data), skip=q.output))
        if not built > data_time:
            return False
    changed = settings_changed(q, model, made)
    if changed:
        logger.info("%s was made with other settings (%s)", q.output, changed)
    return not changed


def _made_with(q: QuantizeConfig) -> dict[str, Any]:
    """The provenance ovq wrote into the model in ``q.output`` (``{}``: none, or not ovq's, or unreadable)."""
    from ovq.core.metadata import read_info
    from ovq.runtime.compilation import read_model

    try:
        info = read_info(read_model(q.output / MODEL_XML))
    except OvqError:
        return {}  # unreadable: whoever loads it says why
    made = info.quantization if info is not None else None
    return made if made and made.get("tool") == "ovq" else {}


# options settings_changed compares on their own: 'ignore' as the provenance's 'ignored', the images' through data_used
_COMPARED_ELSEWHERE = frozenset({"ignore", "calib_split", "subset_size", "val_split", "holdout", "holdout_seed",
                                 "test_split"})


def settings_changed(q: QuantizeConfig, model: Path, made: dict[str, Any] | None = None) -> str:
    """What the quantize section asks that the model in ``q.output`` was not made with (``max_drop 0.005, made
    with 0.05``; ``model m.onnx, made from another model``: the pipeline's model is not the one quantized, whatever
    the files' times say; ``data B, made with A``), from the provenance ovq writes into its rt_info (``made``, read
    when not given); ``""`` when they agree, or when it has none (a model made elsewhere is trusted as before)."""
    made = _made_with(q) if made is None else made
    if not made:
        return ""
    o = q.options
    budget = o.max_drop is not None
    # the settings the provenance holds as they were asked (splits are stored as found: 'val' -> 'val2017')
    asked = {"mode": "accuracy_control" if budget else "plain", "max_drop": o.max_drop,
             "drop_type": o.drop_type.value, "preset": o.preset.value, "ignored": list(o.ignore),
             "rank_by": o.rank_by.value if budget else None}
    changed = [f"{key} {asked[key]}, made with {made.get(key)}" for key in asked
               if key in made and made[key] != asked[key]]
    if isinstance(made.get("options"), dict):  # every option that decides the model, recorded since 2026-12-03
        now, then = options_asked(o), made["options"]
        changed += [f"{key} {now[key]}, made with {then.get(key)}" for key in now
                    if key not in asked and key not in _COMPARED_ELSEWHERE and then.get(key) != now[key]]
    if made.get("source_sha256") and made["source_sha256"] != model_digest(model):
        changed.insert(0, f"model {model.name}, made from another model")
    changed += _data_changed(q, made.get("data_used"))
    return ", ".join(changed)


def _data_changed(q: QuantizeConfig, used: Any) -> list[str]:
    """How the data quantize asks for differs from what the model in ``q.output`` was calibrated and validated on
    (another dataset, its files changed, another split or subset), from the provenance's ``data_used``."""
    if not isinstance(used, dict):  # made before ovq recorded its data: its files' times decide, as they did
        logger.info("%s records no data it was made with; reused while newer than %s", q.output, q.data)
        return []
    now = data_used(q.data, q.options, skip=q.output)
    changed = [f"{key} {now[key]}, made with {used.get(key)}" for key in now
               if key not in ("path", "fingerprint") and used.get(key) != now[key]]
    if used.get("fingerprint") != now["fingerprint"]:
        changed.insert(0, f"data {q.data}, made with {used.get('path')}" if used.get("path") != now["path"] else
                       f"data {q.data}: its files changed since ({now['fingerprint']}, made with {used.get('fingerprint')})")
    return changed


def ensure_quantized(q: QuantizeConfig, model: Path) -> Path:
    """The quantized model's ``.xml``: quantized now (:func:`ovq.quantization.workflow.quantize`), or reused
    when up to date."""
    if quantized_is_fresh(q, model):
        logger.info("using %s (made from %s with these settings on %s, and newer than the model)", q.output, model, q.data)
        return q.output / MODEL_XML
    from ovq.quantization import workflow  # NNCF and the report load only when there is quantizing to do

    logger.info("quantizing %s with %s into %s", model, q.data, q.output)
    result = workflow.quantize(model, q.data, q.output, q.options)
    return Path(result.model_xml)


def build_sinks(cfg: PipelineConfig, *, environ: Mapping[str, str] | None = None) -> list[Sink]:
    """The sink objects the config asks for (:mod:`ovq.streaming.sinks`): video, JSON Lines, MQTT, window, and the
    live view's server (:mod:`ovq.streaming.web`).

    Making them checks their outputs can be written and opens nothing: files are opened when the pipeline
    starts them, after the model, device and sources were opened. When one cannot be made, the ones already
    made are closed before the error propagates.
    """
    environ = os.environ if environ is None else environ
    s = cfg.sinks
    out: list[Sink] = []
    try:
        out += _file_sinks(cfg)
        if s.mqtt is not None:
            check_environment(cfg, environ)
            m = s.mqtt
            out.append(MqttSink(m.url or environ[m.url_env], topic_prefix=m.topic_prefix, ca_file=m.ca_file,
                                cert_file=m.cert_file, key_file=m.key_file, strict=m.strict))
        if s.show:
            out.append(WindowSink())
        if cfg.serve is not None:
            out.append(build_server(cfg.serve, environ))
    except BaseException:
        close_all(out)
        raise
    return out


def _file_sinks(cfg: PipelineConfig) -> list[Sink]:
    s = cfg.sinks
    out: list[Sink] = []
    try:
        if s.video is not None:
            out.append(VideoSink(s.video, fps=s.video_fps, segment=s.video_segment, keep=s.video_keep))
        if s.jsonl is not None:
            out.append(JsonlSink(s.jsonl, append=s.jsonl_append, rotate_seconds=s.jsonl_rotate_seconds,
                                 rotate_bytes=s.jsonl_rotate_bytes, keep=s.jsonl_keep))
    except BaseException:
        close_all(out)
        raise
    return out


def check_outputs(cfg: PipelineConfig) -> None:
    """The video and JSON Lines outputs checked as a run makes them (a folder, a suffix no writer takes, a
    read-only place), nothing created; the broker and the live view's port are left to the run. So is the quantize
    section's output when the run would quantize into it (``/proc/x`` passed ``--check``)."""
    q = cfg.quantize
    if q is not None and isinstance(cfg.model, Path) and cfg.model.exists() and not quantized_is_fresh(q, cfg.model):
        try:
            check_output_dir(q.output)
        except OvqError as exc:
            raise cfg.where.error("quantize.output", str(exc)) from None
    close_all(_file_sinks(cfg))


def build_server(serve: ServeConfig, environ: Mapping[str, str] | None = None) -> LiveServer:
    """The live view's server (a sink), listening already; its token from the config or ``$OVQ_SERVE_TOKEN``."""
    return LiveServer(serve.host, serve.port, fps=serve.fps, token=serve.token or token_from_env(environ),
                      stall_s=serve.stall_timeout)


def close_all(sinks: Sequence[Sink]) -> None:
    """Close sinks after a failed start; a failure to close is logged, the error that stopped the start wins."""
    for sink in sinks:
        try:
            sink.close()
        except Exception as exc:  # noqa: BLE001 - the first error is the one to report
            logger.debug("closing %r after a failed start: %s", sink, exc)


def build_pipeline(
    cfg: PipelineConfig, *, max_frames: int | None = None, device: str | None = None, extra_sinks: Sequence[Sink] = ()
) -> Pipeline:
    """Check, quantize if asked (or reuse an up-to-date result), compile the model and build the pipeline.

    ``max_frames`` and ``device`` override the config's. ``extra_sinks`` (e.g. the command line's progress bar)
    receive results after the configured ones; the pipeline owns them like its own (closes them, also when
    the build fails). The performance hint defaults to ``throughput`` (several streams share the requests),
    except ``latency`` on an NPU. A window's ``q``/Esc stops the pipeline.
    """
    device = device or cfg.device
    own: list[Sink] = []
    try:
        check_paths(cfg)
        check_decoder(cfg)
        check_environment(cfg)
        spec = check_device(device)  # before a quantization that may take minutes
        own = build_sinks(cfg)  # their outputs checked, nothing opened yet
        model = ensure_quantized(cfg.quantize, cfg.model) if cfg.quantize is not None else cfg.model
        # cache: a folder is accepted too (compile_model), though Detector's annotation says bool; a serving URL
        # gives a remote detector that waits for its server like a camera unless reconnect.retry is off
        detector = open_detector(model, device=device, conf=cfg.conf, precision=cfg.precision,
                                 hint=cfg.hint or default_hint(spec), cache=cfg.cache, retry=cfg.reconnect.retry,
                                 wait=cfg.reconnect.retry, graph_nms=cfg.nms == "graph")
        r = cfg.reconnect
        sinks = [*own, *extra_sinks]
        pipeline = Pipeline(
            detector, [s.url for s in cfg.sources], names=cfg.source_names, device=device, conf=cfg.conf,
            nireq=cfg.nireq, track=cfg.track, sinks=sinks,
            max_frames=max_frames if max_frames is not None else cfg.max_frames, stats_interval=cfg.stats_interval,
            reconnect=ReconnectPolicy(initial_delay=r.initial_delay, max_delay=r.max_delay,
                                      stall_timeout=r.stall_timeout, retry=r.retry),
            realtime_files=cfg.realtime,
            strict=cfg.strict,
            resize_in_graph=RESIZE_MODES[cfg.resize],
            nms_in_graph=NMS_MODES[cfg.nms],
            decode=cfg.decode,
        )
    except BaseException:
        close_all([*own, *extra_sinks])
        raise
    for sink in sinks:
        if isinstance(sink, WindowSink):
            sink.on_quit = pipeline.stop
        attach = getattr(sink, "attach_stats", None)
        if callable(attach):  # the live view shows the pipeline's own counters (dropped, reconnects)
            attach(pipeline.stream_stats)
    return pipeline


def run_pipeline_config(cfg: PipelineConfig, *, max_frames: int | None = None, device: str | None = None) -> RunSummary:
    """:func:`build_pipeline`, then run it; returns its :class:`~ovq.streaming.stats.RunSummary`."""
    return build_pipeline(cfg, max_frames=max_frames, device=device).run()
