"""``ovq run MODEL --source SRC [--source SRC ...]``: detect on video streams, write results, print a summary.

The flags become the same :class:`~ovq.deployment.schema.PipelineConfig` a pipeline YAML file loads into, checked
by the same code and built by the same :func:`~ovq.deployment.build.build_pipeline` as ``ovq pipeline``.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any, TextIO

from ovq.cli._common import (
    add_command,
    add_conf,
    add_device,
    add_precision,
    add_resize_decode,
    check_file_outputs,
    refuse_local_options,
    report_to,
)
from ovq.runtime.compilation import HINTS

if TYPE_CHECKING:
    from ovq.deployment.schema import PipelineConfig

# How messages about a config made from this command's flags name its keys (see ovq.deployment.fields.Origin).
FLAGS = {
    "model": "MODEL", "sources": "--source", "sources.name": "--name", "device": "--device", "precision": "--precision", "hint": "--hint",
    "nireq": "--nireq", "conf": "--conf", "track": "--track", "sinks.video": "--out", "sinks.jsonl": "--jsonl",
    "sinks.mqtt": "--mqtt", "sinks.mqtt.url": "--mqtt URL", "sinks.mqtt.topic_prefix": "--mqtt-topic",
    "sinks.mqtt.ca_file": "--mqtt-ca", "sinks.mqtt.cert_file": "--mqtt-cert", "sinks.mqtt.key_file": "--mqtt-key",
    "sinks.mqtt.strict": "--mqtt-strict",
    "sinks.show": "--show", "sinks.jsonl.path": "--jsonl", "sinks.jsonl.append": "--jsonl-append",
    "sinks.video.path": "--out", "sinks.video.segment": "--segment", "sinks.video.keep": "--keep",
    "sinks.jsonl.rotate": "--jsonl-rotate", "sinks.jsonl.keep": "--jsonl-keep",
    "max_frames": "--max-frames", "stats_interval": "--stats-interval",
    "reconnect.max_delay": "--retry-max-delay", "reconnect.stall_timeout": "--stall-timeout",
    "reconnect.retry": "--no-retry", "realtime": "--realtime", "serve": "--serve", "serve.fps": "--serve-fps",
    "serve.token": "--serve-token", "strict": "--strict", "resize": "--resize", "decode": "--decode",
    "nms": "--nms",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "run", "run a detector on video files, cameras and streams (async, multi-stream)")
    p.add_argument("model", help="model folder, .xml, .onnx or .pt, or a served model: http(s)://HOST:PORT/v2/models/NAME, grpc://...")
    p.add_argument(
        "--source", action="append", required=True, metavar="SRC",
        help="camera index (0), video file, GIF, image folder, rtsp:// or http(s):// URL, "
             "synth://conveyor[?fps=30&width=640&height=480&seed=0]; repeat for several streams",
    )
    p.add_argument("--name", action="append", metavar="NAME", help="stream name, one per --source (default s0, s1...)")
    add_device(p, "AUTO", served_too=True)  # not given: None, which the config reads as AUTO
    add_precision(p)
    p.add_argument("--hint", choices=HINTS, default=None,
                   help="performance hint (default throughput; latency on an NPU)")
    p.add_argument("--nireq", type=int, default=0,
                   help="infer requests (default: the device's optimal number plus one; twice it plus one for files "
                        "read flat out)")
    add_conf(p)
    p.add_argument("--track", action="store_true", help="assign stable per-stream track IDs (ByteTrack)")
    p.add_argument("--out", metavar="FILE.mp4",
                   help="annotated video, .mp4 (H.264 with ovq[video], else MPEG-4 Part 2) or .webm (VP9); "
                        "one file per stream: FILE_NAME.mp4")
    p.add_argument("--segment", metavar="DURATION",
                   help="cut --out into files of DURATION (30s, 10m, 1h) named by their first frame's UTC time, "
                        "FILE.20261203T063000Z.mp4, each finished and playable as soon as the next begins")
    p.add_argument("--keep", type=int, metavar="N", help="with --segment: keep the newest N segments of each stream")
    p.add_argument("--jsonl", metavar="FILE",
                   help="JSON Lines: one record per frame with its detections; replaces FILE at the end of a run "
                        "that wrote records (a run that fails to start leaves it as it was)")
    p.add_argument("--jsonl-append", action="store_true",
                   help="append to the --jsonl file instead of replacing it (a service's restarts keep adding)")
    p.add_argument("--jsonl-rotate", metavar="LIMIT",
                   help="rotate the --jsonl file at a duration (1h) or a size (100MB): each full one is renamed "
                        "FILE.20261203T063000Z.jsonl (its first record's UTC time); FILE is the one in progress")
    p.add_argument("--jsonl-keep", type=int, metavar="N", help="with --jsonl-rotate: keep the newest N files")
    p.add_argument(
        "--mqtt", nargs="?", const="", default=None, metavar="URL",
        help="publish one message per frame to mqtt://HOST[:PORT] (no URL: $OVQ_MQTT_URL; then put --mqtt after "
             "MODEL); credentials only from $OVQ_MQTT_USERNAME / $OVQ_MQTT_PASSWORD",
    )
    p.add_argument("--mqtt-topic", default="ovq", metavar="PREFIX", help="MQTT topic prefix; topic PREFIX/STREAM")
    p.add_argument("--mqtt-ca", metavar="FILE", help="CA bundle (PEM) to verify an mqtts:// broker (default: the system's)")
    p.add_argument("--mqtt-cert", metavar="FILE", help="client certificate (PEM) for an mqtts:// broker")
    p.add_argument("--mqtt-key", metavar="FILE", help="the client certificate's key, when not in the certificate file")
    p.add_argument("--mqtt-strict", action="store_true",
                   help="a broker that cannot be reached (refused login, TLS failure) or a message not sent fails "
                        "the run (default: logged as errors, the run goes on)")
    p.add_argument("--show", action="store_true", help="show annotated streams in windows (q or Esc stops)")
    p.add_argument("--serve", metavar="[HOST:]PORT",
                   help="live view in a browser at http://HOST:PORT/ (MJPEG, stats, /healthz, /metrics); "
                        "HOST defaults to 127.0.0.1")
    p.add_argument("--serve-fps", type=float, default=None, metavar="FPS",
                   help="frames per second per stream sent to viewers (default 10)")
    p.add_argument("--serve-token", metavar="TOKEN",
                   help="token the live view requires (?token=...); better from $OVQ_SERVE_TOKEN, which ps cannot show")
    p.add_argument("--max-frames", type=int, default=None, metavar="N", help="stop each stream after N frames")
    p.add_argument("--stats-interval", type=float, default=10.0, metavar="S",
                   help="seconds between stats lines (0: off)")
    p.add_argument("--summary-json", metavar="FILE", help="write the final summary as JSON")
    p.add_argument("--no-retry", action="store_true", help="exit 2 when a live source cannot be opened at start-up")
    p.add_argument("--stall-timeout", type=float, default=5.0, metavar="S",
                   help="a live source with no frame for S seconds is reopened (default 5)")
    p.add_argument("--retry-max-delay", type=float, default=30.0, metavar="S",
                   help="longest wait between reconnect attempts (back-off from 0.5 s, default 30)")
    p.add_argument("--realtime", action="store_true",
                   help="read files at their frame rate, dropping frames like a live camera")
    p.add_argument("--strict", action="store_true",
                   help="a video file that ends before the frame count its container states fails the run "
                        "(default: a warning naming both numbers)")
    add_resize_decode(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> PipelineConfig:
    """The pipeline config these flags describe; relative paths stay relative to the working directory."""
    from ovq.core.errors import ConfigError
    from ovq.deployment.fields import Origin
    from ovq.deployment.schema import PipelineConfig, ReconnectConfig

    if args.name is not None and len(args.name) != len(args.source):
        raise ConfigError(f"--name: {len(args.name)} stream names for {len(args.source)} sources (one per --source)")
    sources: list[Any] = [_expand_source(text) for text in args.source]
    if args.name is not None:
        sources = [{"name": name, "url": url} for name, url in zip(args.name, args.source, strict=True)]
    reconnect: dict[str, Any] = {"max_delay": args.retry_max_delay, "stall_timeout": args.stall_timeout,
                                 "retry": not args.no_retry}
    if 0 < args.retry_max_delay < ReconnectConfig.initial_delay:
        reconnect["initial_delay"] = args.retry_max_delay  # a shorter longest wait: the back-off starts there too
    data = {
        "model": args.model, "sources": sources, "device": args.device, "precision": args.precision,
        "hint": args.hint, "nireq": args.nireq, "track": args.track, "conf": args.conf,
        "sinks": {"video": _video(args), "jsonl": _jsonl(args), "mqtt": _mqtt(args), "show": args.show},
        "max_frames": args.max_frames, "stats_interval": args.stats_interval, "reconnect": reconnect,
        "realtime": args.realtime, "serve": _serve(args), "strict": args.strict, "resize": args.resize,
        "decode": args.decode, "nms": args.nms,
    }
    return PipelineConfig.from_mapping(data, Origin.command_line(FLAGS))


def _serve(args: argparse.Namespace) -> dict[str, Any] | None:
    """The live view's section: ``--serve-fps`` and ``--serve-token`` only mean something with ``--serve``."""
    from ovq.core.errors import ConfigError

    if args.serve is None:
        for flag, value in (("--serve-fps", args.serve_fps), ("--serve-token", args.serve_token)):
            if value is not None:
                raise ConfigError(f"{flag} needs --serve [HOST:]PORT")
        return None
    return {"listen": args.serve, "fps": args.serve_fps, "token": args.serve_token}


def _expand_source(text: str) -> str:
    """``--source`` with ``${VAR}`` filled in from the environment, so a camera's password need not be in the
    command line (``ps`` shows it): ``--source 'rtsp://${CAM_USER}:${CAM_PASSWORD}@cam/1'``."""
    import os

    from ovq.core.errors import ConfigError
    from ovq.core.urls import UNOPENABLE_SOURCE, expand_env, redact, undecodable_reference

    bad = undecodable_reference(text, os.environ)
    if bad is not None:  # named, never shown: a camera's password, as a rule
        raise ConfigError(f"${bad} (--source {redact(text)}) is not UTF-8 text; {UNOPENABLE_SOURCE}")
    try:
        return expand_env(text, os.environ)
    except ConfigError as exc:
        raise ConfigError(f"--source {redact(text)}: {exc}") from None


def _video(args: argparse.Namespace) -> str | dict[str, Any] | None:
    from ovq.core.errors import ConfigError

    for flag, value in (("--segment", args.segment), ("--keep", args.keep)):
        if value is not None and not args.out:
            raise ConfigError(f"{flag}: give the video file with --out FILE.mp4")
    if args.segment is None and args.keep is None:
        return args.out
    return {"path": args.out, "segment": args.segment, "keep": args.keep}


def _jsonl(args: argparse.Namespace) -> str | dict[str, Any] | None:
    from ovq.core.errors import ConfigError

    for flag, value in (("--jsonl-append", args.jsonl_append or None), ("--jsonl-rotate", args.jsonl_rotate),
                        ("--jsonl-keep", args.jsonl_keep)):
        if value is not None and not args.jsonl:
            raise ConfigError(f"{flag}: give the file with --jsonl FILE")
    if not (args.jsonl_append or args.jsonl_rotate is not None or args.jsonl_keep is not None):
        return args.jsonl
    return {"path": args.jsonl, "append": args.jsonl_append, "rotate": args.jsonl_rotate, "keep": args.jsonl_keep}


def _mqtt(args: argparse.Namespace) -> dict[str, Any] | None:
    """The MQTT sink section: ``--mqtt`` alone reads the broker from $OVQ_MQTT_URL, ``--mqtt HOST[:PORT]`` is
    taken as ``mqtt://HOST[:PORT]``. Credentials on the command line are refused (``ps`` shows them)."""
    from ovq.core.errors import ConfigError
    from ovq.streaming.mqtt import parse_broker_url

    tls = {"ca_file": args.mqtt_ca, "cert_file": args.mqtt_cert, "key_file": args.mqtt_key}
    if args.mqtt is None:
        used = [flag for flag, on in (("--mqtt-ca", args.mqtt_ca), ("--mqtt-cert", args.mqtt_cert),
                                      ("--mqtt-key", args.mqtt_key), ("--mqtt-strict", args.mqtt_strict)) if on]
        if used:
            raise ConfigError(f"{used[0]}: only with --mqtt")
        return None
    section: dict[str, Any] = {"topic_prefix": args.mqtt_topic, "strict": args.mqtt_strict,
                               **{k: v for k, v in tls.items() if v}}
    if args.mqtt:
        url = args.mqtt if "://" in args.mqtt else f"mqtt://{args.mqtt}"
        try:
            parsed = parse_broker_url(url)
        except ConfigError as exc:
            raise ConfigError(f"--mqtt: {exc}") from None
        if parsed.username is not None or parsed.password is not None:
            raise ConfigError(
                "--mqtt: do not put credentials on the command line; set OVQ_MQTT_USERNAME and OVQ_MQTT_PASSWORD"
            )
        section["url"] = url
    return section


class _Progress:
    """A progress bar on stderr counting frames; a sink of this command only (the pipeline's logs are the rest)."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self.bar = tqdm(unit="frame", file=sys.stderr, dynamic_ncols=True, leave=False)

    def write(self, result: Any) -> None:
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def run(args: argparse.Namespace) -> int:
    from ovq.core.errors import ConfigError
    from ovq.core.fileio import check_output_file, same_file, write_json_atomic
    from ovq.deployment.build import build_pipeline
    from ovq.deployment.notify import LivenessSink
    from ovq.deployment.schema import refuse_writing_an_input
    from ovq.deployment.signals import exit_now, stop_on_signals
    from ovq.deployment.sinks_config import refuse_deriving_an_output

    refuse_local_options(args.model, {"--device": args.device, "--precision": args.precision, "--hint": args.hint,
                                      "--resize": args.resize, "--nms": args.nms})
    check_file_outputs({"--summary-json": args.summary_json, "--jsonl": args.jsonl})
    cfg = config_from_args(args)
    if args.summary_json:
        check_output_file(args.summary_json)  # before the run, not after it
        refuse_writing_an_input(cfg, "--summary-json", args.summary_json)
        for flag, other in (("--jsonl", cfg.sinks.jsonl), ("--out", cfg.sinks.video)):
            if other is not None and same_file(args.summary_json, other):
                raise ConfigError(f"--summary-json {args.summary_json}: the same file as {flag} (one would replace "
                                  "the other)")
        # and the files they name after their paths: a stream's video (x_s0.mp4), a series' files
        refuse_deriving_an_output(cfg.where, cfg.sinks, cfg.stream_names, "--summary-json", args.summary_json)
    progress = [_Progress()] if not args.no_progress and sys.stderr.isatty() else []
    # a supervisor's liveness ($NOTIFY_SOCKET, $OVQ_HEARTBEAT_FILE), as `ovq pipeline` reports it
    liveness = [sink for sink in (LivenessSink.from_environment(),) if sink is not None]
    pipeline = build_pipeline(cfg, extra_sinks=[*progress, *liveness])
    # the report is inside too: a second Ctrl-C that lands after the drain still ends the command with 130
    out = report_to([*(getattr(sink, "path", None) for sink in pipeline.sinks), args.summary_json])
    print_live_view(pipeline.sinks, out)
    with stop_on_signals(pipeline.stop, name="ovq run", at_once=exit_now("ovq run")):
        try:
            summary = pipeline.run()
        except BaseException:
            print_written(pipeline.sinks, out)  # what was finished, also when another output failed
            raise
        for line in summary.lines():
            print(line, file=out)
        print_written(pipeline.sinks, out)
        if args.summary_json:
            write_json_atomic(args.summary_json, summary.to_dict())
            print(f"wrote {args.summary_json}", file=out)
    return 0


def print_live_view(sinks: list[Any], out: TextIO | None = None) -> None:
    """``live view: URL`` for a live view among ``sinks``: the address to open (with ``--serve 0``, the port the system
    chose), shown with ``-q`` too, where the log line is not."""
    from ovq.streaming.web import LiveServer

    for sink in sinks:
        if isinstance(sink, LiveServer):
            print(f"live view: {sink.url}", file=out, flush=True)


# More files than this of one series (video segments, rotated JSON Lines) are summed up in one line.
LIST_AT_MOST = 3


def print_written(sinks: list[Any], out: TextIO | None = None) -> None:
    """``wrote PATH (what)`` for every file a sink finished; a file that is not complete is never listed. The
    files of a series (:mod:`ovq.streaming.rolling`), when more than :data:`LIST_AT_MOST`, as one line:
    ``wrote 12 segments out/cam.*.mp4, the last out/cam.20261203T083000Z.mp4 (301 frames)``."""
    from ovq.streaming.rolling import segment_glob

    for sink in sinks:
        written = getattr(sink, "written", {})
        series: dict[str | None, list[Any]] = {}
        for path in written:
            series.setdefault(segment_glob(path), []).append(path)
        for glob, paths in series.items():
            if glob is None or len(paths) <= LIST_AT_MOST:
                for path in paths:
                    print(f"wrote {path} ({written[path]})", file=out or sys.stdout)
                continue
            kind = "segments" if paths[-1].suffix.lower() in (".mp4", ".webm") else "files"
            print(f"wrote {len(paths)} {kind} {glob}, the last {paths[-1]} ({written[paths[-1]]})",
                  file=out or sys.stdout)
