"""``ovq bench MODEL... [--device CPU] [--precision default|f32|bf16] [--hint throughput|latency] [--time S] [--rounds N]``."""

from __future__ import annotations

import argparse
import math

from ovq.cli._common import add_command, check_file_outputs, refuse_local_options, report_to


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "bench", "throughput (FPS) and latency of one or more models, side by side")
    p.add_argument("models", nargs="+", metavar="MODEL", help="model folders, .xml, .onnx or .pt, or served models (http(s)://HOST:PORT/v2/models/NAME, grpc://...); the first is the baseline")
    p.add_argument("--device", action="append", help="OpenVINO device (default CPU); repeat to compare devices")
    p.add_argument(
        "--precision", action="append", choices=("default", "f32", "bf16", "f16"),
        help="inference precision hint (default: the model's stored setting, else the device default); repeatable",
    )
    p.add_argument(
        "--hint", action="append", choices=("throughput", "latency"), help="performance hint (default throughput); repeatable"
    )
    p.add_argument("--time", type=float, default=10.0, metavar="S", help="seconds per configuration (default 10)")
    p.add_argument(
        "--rounds", type=int, default=None, metavar="N",
        help="when comparing, the configurations take turns in N slices and report their median slice, so the "
             "machine drifting between runs does not skew the ratios (default: slices of about 2 s; 1: one run each)",
    )
    p.add_argument("--requests", type=int, default=0,
                   help="infer requests in flight (default: optimal; 1 for latency; 4 for a served model)")
    p.add_argument("--image", help="image to feed (default: a fixed synthetic image)")
    p.add_argument("--json", metavar="FILE", help="write all results as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    import openvino as ov

    from ovq.core.errors import ConfigError
    from ovq.core.fileio import check_output_file, write_json_atomic
    from ovq.core.urls import is_serving_url
    from ovq.evaluation.speed import BenchSpec, bench_rounds, benchmark_interleaved, format_table
    from ovq.runtime import steal
    from ovq.serving.remote import DEFAULT_JOBS

    served = next((m for m in args.models if is_serving_url(m)), None)
    # the table said GPU (or f32, or latency) for a model its server ran as it runs it
    refuse_local_options(served, {"--device": args.device, "--precision": args.precision, "--hint": args.hint},
                         instead="or bench served and local models separately")
    if not 0 < args.time < math.inf:
        raise ConfigError(f"--time {args.time}: must be a positive number of seconds")
    if args.requests < 0:  # a local model ran with the optimum anyway; a served one said 'jobs -3'
        raise ConfigError(f"--requests {args.requests}: expected 0 (the device's optimum, or {DEFAULT_JOBS} for a "
                          "served model) or more")
    if args.rounds is not None and args.rounds < 1:
        raise ConfigError(f"--rounds {args.rounds}: must be at least 1")
    check_file_outputs({"--json": args.json}, models=args.models)  # --json "$OUT" with OUT unset: nothing written, exit 0
    if args.json:
        check_output_file(args.json)  # before the benchmark, not after it
    specs = [
        BenchSpec(model, device=device, precision=precision, hint=hint, requests=args.requests)
        for device in args.device or ["CPU"]
        for hint in args.hint or ["throughput"]
        for precision in args.precision or [None]
        for model in args.models
    ]
    rounds = args.rounds if args.rounds is not None else (bench_rounds(args.time) if len(specs) > 1 else 1)
    results = benchmark_interleaved(specs, seconds=args.time, rounds=rounds, image=args.image)
    out = report_to([args.json])  # stderr when a --json goes to standard output
    print(format_table(results), file=out)
    stolen = [r.steal_percent for r in results if r.steal_percent is not None]
    warn = steal.warning(max(stolen, default=None), "FPS and latency are what the VM got from a busy host, not the "
                         "machine's own; ratios within this run still hold")
    if warn:
        print(f"warning: {warn}", file=out)
    others = max((r.others_percent for r in results if r.others_percent is not None), default=None)
    if others is not None and others >= steal.OTHERS_WARN_PERCENT:
        print(f"warning: other processes on this machine used up to {others:.0f} % of its CPU time while ovq measured: "
              "FPS and latency are what was left to ovq; ratios within this run still hold", file=out)
    if rounds > 1:
        piece = args.time / rounds
        piece_s = f"{piece:.1f}" if piece >= 0.1 else f"{piece:.2g}"  # --time 1 --rounds 50 said "slices of 0.0 s"
        print(f"the configurations took turns: {rounds} slices of {piece_s} s each; FPS is each one's median slice"
              if len(results) > 1 else f"FPS is the median of {rounds} slices of {piece_s} s", file=out)
    if args.json:
        write_json_atomic(args.json, {"openvino": ov.get_version(), "results": [asdict(r) for r in results]})
        print(f"wrote {args.json}", file=out)
    return 0
