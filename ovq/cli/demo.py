"""``ovq demo [-o OUT_DIR]``: the whole main job on the shipped demo model and generated data."""

from __future__ import annotations

import argparse

from ovq.cli._common import add_command, refuse_empty_folder


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "demo", "quantize the shipped demo detector with an accuracy budget, compare, and run it on a live synthetic conveyor")
    p.add_argument("-o", "--out", default="ovq-demo", help="output folder (default ./ovq-demo)")
    p.add_argument("--frames", type=int, default=300, help="frames of the live stream to process (default 300)")
    p.add_argument("--max-drop", type=float, default=0.002, help="accuracy budget, mAP50-95 (default 0.002)")
    p.add_argument("--rank-by", choices=("accuracy", "accuracy-per-latency"), default="accuracy",
                   help="order of reverts to float: most mAP restored first (default) or most mAP per ms of latency")
    p.add_argument("--model", help="demo model folder (default: data/demo_model of the source tree)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging
    from pathlib import Path

    import nncf

    from ovq.demo import run_demo

    refuse_empty_folder("-o", args.out, "the output folder (-o . for this one)")
    nncf.set_log_level(logging.DEBUG if args.verbose > 1 else logging.WARNING)
    run_demo(args.out, model=args.model, frames=args.frames, max_drop=args.max_drop, rank_by=args.rank_by,
             seed=args.seed)
    print((Path(args.out) / "summary.md").read_text(encoding="utf-8"), end="")
    return 0
