"""``ovq run MODEL --source SRC [--source SRC ...]``: detect on video streams, write results, print a summary."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import Any

from ovq.cli._common import add_command, add_conf, add_precision

logger = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "run", "run a detector on video files, cameras and streams (async, multi-stream)")
    p.add_argument("model", help="model folder, .xml, .onnx or .pt")
    p.add_argument(
        "--source", action="append", required=True, metavar="SRC",
        help="camera index (0), video file, GIF, image folder, rtsp:// or http(s):// URL, "
             "synth://conveyor[?fps=30&width=640&height=480&seed=0]; repeat for several streams",
    )
    p.add_argument("--name", action="append", metavar="NAME", help="stream name, one per --source (default s0, s1...)")
    p.add_argument("--device", default="AUTO", help="OpenVINO device: CPU, GPU, NPU, AUTO... (default AUTO)")
    add_precision(p)
    p.add_argument("--hint", choices=("throughput", "latency", "cumulative_throughput"), default=None,
                   help="performance hint (default throughput)")
    p.add_argument("--nireq", type=int, default=0, help="infer requests (default: the device's optimal number plus one)")
    add_conf(p)
    p.add_argument("--track", action="store_true", help="assign stable per-stream track IDs (ByteTrack)")
    p.add_argument("--out", metavar="FILE.mp4", help="annotated video (one file per stream: FILE_NAME.mp4)")
    p.add_argument("--jsonl", metavar="FILE", help="JSON Lines: one record per frame with its detections")
    p.add_argument(
        "--mqtt", nargs="?", const="", default=None, metavar="URL",
        help="publish one message per frame to mqtt://HOST[:PORT] (no URL: $OVQ_MQTT_URL; then put --mqtt after "
             "MODEL); credentials only from $OVQ_MQTT_USERNAME / $OVQ_MQTT_PASSWORD",
    )
    p.add_argument("--mqtt-topic", default="ovq", metavar="PREFIX", help="MQTT topic prefix; topic PREFIX/STREAM")
    p.add_argument("--show", action="store_true", help="show annotated streams in windows (q or Esc stops)")
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
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _check_mqtt_url(url: str) -> None:
    from urllib.parse import urlsplit

    from ovq.core.errors import ConfigError

    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    if parts.username or parts.password:
        raise ConfigError(
            "--mqtt: do not put credentials on the command line; set OVQ_MQTT_USERNAME and OVQ_MQTT_PASSWORD"
        )


def _quiet_video_backends(verbose: int) -> None:
    """OpenCV's and FFmpeg's own warnings repeat what ovq logs as one line; keep them for -vv."""
    if verbose > 1:
        return
    import os

    import cv2

    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET; read when FFmpeg is first used
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def _progress_sink() -> Any:
    from tqdm import tqdm

    class _Progress:
        def __init__(self) -> None:
            self.bar = tqdm( unit="frame", file=sys.stderr, dynamic_ncols=True, leave=False)

        def write(self, result: Any) -> None:
            self.bar.update(1)

        def close(self) -> None:
            self.bar.close()

    return _Progress()


def run(args: argparse.Namespace) -> int:
    from ovq.core.errors import ConfigError
    from ovq.streaming.pipeline import Pipeline
    from ovq.streaming.readers import ReconnectPolicy
    from ovq.streaming.sinks import JsonlSink, MqttSink, VideoSink, WindowSink

    if args.mqtt:
        _check_mqtt_url(args.mqtt)
    _quiet_video_backends(args.verbose)
    if args.max_frames is not None and args.max_frames <= 0:
        raise ConfigError(f"--max-frames must be > 0, got {args.max_frames}")
    policy = ReconnectPolicy(
        max_delay=max(args.retry_max_delay, 0.5), stall_timeout=args.stall_timeout, retry=not args.no_retry
    )
    sinks: list[Any] = []
    try:
        if args.out:
            sinks.append(VideoSink(args.out))
        if args.jsonl:
            sinks.append(JsonlSink(args.jsonl))
        if args.mqtt is not None:
            sinks.append(MqttSink(args.mqtt or None, topic_prefix=args.mqtt_topic))
        window = WindowSink() if args.show else None
        if window is not None:
            sinks.append(window)
        if not args.no_progress and sys.stderr.isatty():
            sinks.append(_progress_sink())
        pipeline = Pipeline(
            args.model, args.source, names=args.name, device=args.device, conf=args.conf, precision=args.precision,
            hint=args.hint, nireq=args.nireq, track=args.track, sinks=sinks, max_frames=args.max_frames,
            stats_interval=args.stats_interval, reconnect=policy, realtime_files=args.realtime,
        )
    except BaseException:
        for sink in sinks:
            sink.close()
        raise
    if window is not None:
        window.on_quit = pipeline.stop

    def on_signal(signum: int, frame: Any) -> None:
        pipeline.stop()
        # a second Ctrl-C while draining interrupts for real
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        summary = pipeline.run()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    for line in summary.lines():
        print(line)
    if args.summary_json:
        from ovq.core.fileio import write_json_atomic

        write_json_atomic(args.summary_json, summary.to_dict())
        print(f"wrote {args.summary_json}")
    for sink in sinks:
        for path in getattr(sink, "written", {}).values():
            print(f"wrote {path}")
        if isinstance(sink, JsonlSink):
            print(f"wrote {sink.path} ({sink.records} records)")
    return 0
