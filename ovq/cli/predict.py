"""``ovq predict MODEL IMAGE... -o OUT_DIR [--conf C] [--iou T] [--classes 0,2] [--max-det N]``."""

from __future__ import annotations

import argparse

from ovq.cli._common import (
    add_command,
    add_conf,
    add_device,
    add_precision,
    check_thresholds,
    flags_named,
    refuse_empty_folder,
    refuse_local_options,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "predict", "detect objects in images; write predictions.json and annotated images")
    p.add_argument("model", help="model folder, .xml, .onnx or .pt, or a served model: http(s)://HOST:PORT/v2/models/NAME, grpc://...")
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("-o", "--out", required=True, help="output folder")
    add_conf(p)
    p.add_argument("--iou", type=float, help="NMS IoU threshold (default: the model's)")
    p.add_argument("--classes", help="keep only these classes: ids or names, comma-separated (e.g. 0,2 or person,car)")
    p.add_argument("--max-det", type=int, help="at most this many detections per image (default: the model's, 300)")
    p.add_argument("--labels", help="class names to report (comma-separated, a file with one a line, a JSON/YAML "
                                    "list or dataset file, or coco91: torchvision's COCO weights), when the model's "
                                    "own are wrong")
    add_device(p, served_too=True)
    add_precision(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ovq.cli._common import parse_labels
    from ovq.core.errors import ConfigError
    from ovq.evaluation.prediction import predict

    refuse_local_options(args.model, {"--device": args.device, "--precision": args.precision})
    refuse_empty_folder("-o", args.out, "the output folder (-o . for this one)")
    check_thresholds({"--conf": args.conf, "--iou": args.iou})
    if args.max_det is not None and args.max_det < 1:
        raise ConfigError(f"--max-det {args.max_det}: expected at least 1")
    classes = [c.strip() for c in args.classes.split(",")] if args.classes is not None else None
    try:
        with flags_named({"iou": "--iou"}):  # refused for a family that runs no NMS
            results = predict(
                args.model, args.images, args.out, conf=args.conf, iou=args.iou, classes=classes,
                max_det=args.max_det, labels=parse_labels(args.labels),
                device="CPU" if args.device is None else args.device, precision=args.precision,
            )
    except ConfigError as exc:  # checked against the model's classes once it loaded, named as the API names it
        if str(exc).startswith("classes: "):
            raise ConfigError(f"--classes {args.classes}: {str(exc).removeprefix('classes: ')}") from None
        raise
    for r in results:
        found = ", ".join(f"{d['label']} {d['confidence']:.2f}" for d in r["detections"]) or "nothing"
        print(f"{r['file']}: {found}")
    print(f"wrote {args.out}/predictions.json")
    return 0
