"""``ovq bench MODEL... [--device CPU] [--precision default|f32|bf16] [--hint throughput|latency] [--time S]``."""

from __future__ import annotations

import argparse

from ovq.cli._common import add_command


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "bench", "throughput (FPS) and latency of one or more models, side by side")
    p.add_argument("models", nargs="+", metavar="MODEL", help="model folders, .xml, .onnx or .pt (the first is the baseline)")
    p.add_argument("--device", action="append", help="OpenVINO device (default CPU); repeat to compare devices")
    p.add_argument(
        "--precision", action="append", choices=("default", "f32", "bf16", "f16"),
        help="inference precision hint (default: the model's stored setting, else the device default); repeatable",
    )
    p.add_argument(
        "--hint", action="append", choices=("throughput", "latency"), help="performance hint (default throughput); repeatable"
    )
    p.add_argument("--time", type=float, default=10.0, metavar="S", help="seconds per run (default 10)")
    p.add_argument("--requests", type=int, default=0, help="infer requests in flight (default: optimal; 1 for latency)")
    p.add_argument("--image", help="image to feed (default: a fixed synthetic image)")
    p.add_argument("--json", metavar="FILE", help="write all results as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    import openvino as ov

    from ovq.bench import benchmark, format_table
    from ovq.errors import ConfigError
    from ovq.fileio import write_json_atomic

    if args.time <= 0:
        raise ConfigError(f"--time {args.time}: must be positive")
    results = []
    for device in args.device or ["CPU"]:
        for hint in args.hint or ["throughput"]:
            for precision in args.precision or [None]:
                for model in args.models:
                    results.append(
                        benchmark(
                            model, device=device, precision=precision, hint=hint, seconds=args.time,
                            requests=args.requests, image=args.image,
                        )
                    )
    print(format_table(results))
    if args.json:
        write_json_atomic(args.json, {"openvino": ov.get_version(), "results": [asdict(r) for r in results]})
        print(f"wrote {args.json}")
    return 0
