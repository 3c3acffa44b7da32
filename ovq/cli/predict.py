"""``ovq predict MODEL IMAGE... -o OUT_DIR``."""

from __future__ import annotations

import argparse

from ovq.cli._common import add_command, add_conf, add_device, add_precision


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "predict", "detect objects in images; write predictions.json and annotated images")
    p.add_argument("model", help="model folder, .xml, .onnx or .pt")
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("-o", "--out", required=True, help="output folder")
    add_conf(p)
    add_device(p)
    add_precision(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ovq.evaluation.prediction import predict

    results = predict(args.model, args.images, args.out, conf=args.conf, device=args.device, precision=args.precision)
    for r in results:
        found = ", ".join(f"{d['label']} {d['confidence']:.2f}" for d in r["detections"]) or "nothing"
        print(f"{r['file']}: {found}")
    print(f"wrote {args.out}/predictions.json")
    return 0
