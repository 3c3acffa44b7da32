"""``ovq eval MODEL --data DATA [--split val] [--save-json FILE] [--conf 0.001]``."""

from __future__ import annotations

import argparse
import os

from ovq.cli._common import (
    add_command,
    add_device,
    add_precision,
    check_file_outputs,
    check_thresholds,
    refuse_local_options,
    report_to,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "eval", "COCO mAP50-95 / mAP50 / per-class AP of a model on a labelled dataset")
    p.add_argument("model", help="model folder, .xml, .onnx or .pt, or a served model: http(s)://HOST:PORT/v2/models/NAME, grpc://...")
    p.add_argument(
        "--data", required=True,
        help="dataset: Ultralytics YAML, folder with images/<split> and labels/<split>, COCO instances JSON",
    )
    p.add_argument("--split", default="val", help="split to evaluate (default val; 'val' also finds val2017)")
    p.add_argument("--images", help="image folder of a COCO JSON, when it is not found beside the JSON")
    p.add_argument("--save-json", metavar="FILE", help="write COCO-format results (for a COCO JSON its image and category ids, "
                                                       "else image_id = file stem, category_id = class index)")
    p.add_argument("--conf", type=float, default=0.001, help="confidence threshold (default 0.001, COCO practice)")
    p.add_argument("--json", metavar="FILE", help="write the metrics as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_device(p, served_too=True)
    add_precision(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from ovq.core.errors import ConfigError
    from ovq.core.fileio import check_output_file, same_file, write_json_atomic
    from ovq.evaluation.accuracy import evaluate

    refuse_local_options(args.model, {"--device": args.device, "--precision": args.precision})
    check_file_outputs({"--json": args.json, "--save-json": args.save_json}, models=[args.model])
    check_thresholds({"--conf": args.conf})
    for flag, path in (("--save-json", args.save_json), ("--json", args.json)):
        if path and os.path.isfile(args.data) and same_file(path, args.data):  # a COCO JSON's ground truth was gone
            raise ConfigError(f"{flag} {path}: is the dataset file (--data); writing there would replace it (give "
                              "another file)")
    if args.json:
        check_output_file(args.json)  # before the evaluation, not after it
        if args.save_json and os.path.abspath(args.json) == os.path.abspath(args.save_json):
            raise ConfigError(f"--json and --save-json are both {args.json}: give each its own file")
    device = "CPU" if args.device is None else args.device
    result = evaluate(
        args.model, args.data, split=args.split, conf=args.conf, device=device, precision=args.precision,
        save_json=args.save_json, progress=not args.no_progress, images=args.images,
        outputs={"--save-json": args.save_json, "--json": args.json},
    )
    out = report_to([args.json, args.save_json])  # stderr when a --json goes to standard output
    print(format_result(result), file=out)
    if args.json:
        write_json_atomic(args.json, asdict(result))
        print(f"wrote {args.json}", file=out)
    if args.save_json:
        print(f"wrote {args.save_json}", file=out)
    return 0


def format_result(result) -> str:
    lines = [
        f"model      {result.model}",
        f"data       {result.data}  split {result.split}: {result.images} images, {result.boxes} boxes",
        (
            f"device     {result.device}, inference precision {result.precision}, conf >= {result.conf:g}, "
            f"{result.seconds:.1f} s"
        ),
        f"mAP50-95   {result.map50_95:.4f}",
        f"mAP50      {result.map50:.4f}",
        "",
        "AP50-95 per class (classes with ground truth):",
    ]
    width = max((len(k) for k in result.per_class), default=5)
    for name, ap in result.per_class.items():
        lines.append(f"  {name:<{width}}  {ap:.3f}")
    return "\n".join(lines)
