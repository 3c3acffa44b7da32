"""``ovq capacity MODEL --source FILE --fps N [--max-p95-ms L] [--json OUT]``: cameras per PC (stream density)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ovq.cli._common import (
    add_command,
    add_device,
    add_precision,
    add_resize_decode,
    check_file_outputs,
    report_to,
)

if TYPE_CHECKING:
    from ovq.streaming.capacity import CapacityReport


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "capacity",
        "how many real-time streams of a video (paced at --fps, like cameras) this machine runs through a model "
        "with no dropped frames (and p95 latency under --max-p95-ms)",
    )
    p.add_argument("model", metavar="MODEL", help="model folder, .xml, .onnx or .pt")
    p.add_argument("--source", required=True, metavar="FILE", help="a video file, played as every camera")
    p.add_argument("--fps", type=float, required=True, metavar="N", help="frames per second of each camera")
    p.add_argument("--max-p95-ms", type=float, default=None, metavar="L", help="p95 latency bound per stream (ms)")
    add_device(p)
    add_precision(p)
    p.add_argument("--seconds", type=float, default=8.0, metavar="S", help="measured seconds per trial (default 8)")
    p.add_argument("--warmup", type=float, default=2.0, metavar="S", help="seconds before measuring (default 2)")
    p.add_argument("--max-streams", type=int, default=64, metavar="N", help="search no higher (default 64)")
    add_resize_decode(p)
    p.add_argument("--json", metavar="OUT", help="write the answer and every trial as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ovq.core.errors import ConfigError
    from ovq.core.fileio import check_output_file, same_file
    from ovq.core.urls import is_serving_url, redact
    from ovq.streaming.capacity import CLI_FLAGS, CapacityInterrupted, capacity, check_numbers

    check_numbers(fps=args.fps, max_p95_ms=args.max_p95_ms, seconds=args.seconds, warmup=args.warmup,
                  max_streams=args.max_streams, names=CLI_FLAGS)  # by their flags, before the model compiles
    resize, nms, decode = check_modes(args)
    if is_serving_url(args.model):  # it was "http:/HOST:PORT/v2/models/NAME: no such file or folder"
        raise ConfigError(f"{redact(args.model)}: capacity measures this machine running a local model; give a model "
                          "folder, .xml, .onnx or .pt (a served model's throughput: ovq bench URL)")
    check_file_outputs({"--json": args.json}, models=[args.model])  # --json "$OUT" with OUT unset: nothing written, exit 0
    if args.json and Path(args.source).is_file() and same_file(args.json, args.source):  # the video was gone
        raise ConfigError(f"--json {args.json}: is the video source (--source); writing there would replace it (give "
                          "another file)")
    if args.json:  # say so before minutes of trials, not after (a symlink loop too, before resolve() meets it)
        check_output_file(args.json)
        if not Path(args.json).resolve().parent.is_dir():
            raise ConfigError(f"--json {args.json}: the folder {Path(args.json).resolve().parent} does not exist")
    try:
        report = capacity(
            args.model, args.source, fps=args.fps, max_p95_ms=args.max_p95_ms, device=args.device,
            precision=args.precision, seconds=args.seconds, warmup=args.warmup, max_streams=args.max_streams,
            resize=resize, decode=decode, nms=nms,
        )
    except CapacityInterrupted as stop:  # the trials done were thrown away with the search: say them, then exit 130
        _report(stop.report, args.json)
        raise
    _report(report, args.json)
    return 0


def _report(report: CapacityReport, json_path: str | None) -> None:
    from ovq.core.fileio import write_json_atomic

    out = report_to([json_path])  # stderr when a --json goes to standard output
    print(report.table(), file=out)
    if json_path:
        write_json_atomic(json_path, report.to_dict())  # a failure is an OutputError naming the file
        print(f"wrote {json_path}" + (" (interrupted: the trials done)" if report.interrupted else ""), file=out)


def check_modes(args: argparse.Namespace) -> tuple[str, str, str]:
    """``--resize``, ``--nms`` and ``--decode`` checked as ``ovq run`` checks them, named by their flags ('resize
    'gpu': expected one of ...' named the API's option), and the hardware decoder asked for on this machine."""
    from ovq.deployment.fields import Origin
    from ovq.model.decoders.graph_nms import NMS_MODES
    from ovq.model.ingraph import RESIZE_MODES
    from ovq.streaming.sources import DECODE_MODES, missing_decoder_said

    origin = Origin.command_line({"resize": "--resize", "nms": "--nms", "decode": "--decode"})
    resize, nms, decode = (origin.choice(getattr(args, key), key, modes)
                           for key, modes in (("resize", RESIZE_MODES), ("nms", NMS_MODES), ("decode", DECODE_MODES)))
    if problem := missing_decoder_said(decode):
        raise origin.error("decode", problem)
    return resize, nms, decode
