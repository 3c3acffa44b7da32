"""``ovq convert SRC -o OUT_DIR``."""

from __future__ import annotations

import argparse

from ovq.cli._common import add_command, flags_named, parse_labels, refuse_empty_folder


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "convert", "convert ONNX / IR / Ultralytics .pt to ovq's IR with preprocessing built in")
    p.add_argument("src", help="model: .onnx, .xml (or its folder), Ultralytics .pt")
    p.add_argument("-o", "--out", required=True, help="output folder (model.xml/.bin)")
    p.add_argument("--imgsz", type=int, nargs="+", metavar="N", help="input size: N (square) or H W")
    p.add_argument("--fp16", action="store_true", help="store weights in FP16 (default FP32)")
    p.add_argument("--family", help="decoder family (`ovq families` lists them), checked against the outputs; "
                                    "default: the one family the outputs fit")
    p.add_argument("--labels", help="class labels: comma-separated, a file with one label a line, a JSON/YAML list "
                                    "or dataset file with names, or coco91 (torchvision's COCO weights) or coco80 "
                                    "(default: the names the model carries)")
    p.add_argument("--color", choices=("RGB", "BGR"), help="channel order the source network expects")
    p.add_argument("--mean", type=float, nargs=3, metavar=("B", "G", "R"), help="per-channel mean (network's channel order)")
    p.add_argument("--scale", type=float, nargs=3, metavar=("S1", "S2", "S3"), help="per-channel divisor after mean")
    p.add_argument("--resize", choices=("letterbox", "stretch"), help="how images are fitted to the input")
    p.add_argument("--conf", type=float, help="default confidence threshold stored in the model")
    p.add_argument("--iou", type=float, help="default NMS IoU threshold stored in the model")
    p.add_argument("--agnostic-nms", action="store_true", default=None,
                   help="store class-agnostic NMS as the default (one box per object, whatever its class)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ovq.core.errors import ConfigError
    from ovq.model.conversion import convert

    refuse_empty_folder("-o", args.out, "the output folder (-o . for this one)")
    # only what was given: the rest stays the family's (a lone --resize must not reset YOLOX's BGR, 0-255 input)
    given = {"color": args.color, "mean": args.mean, "scale": args.scale, "resize": args.resize}
    pre = {k: tuple(v) if isinstance(v, list) else v for k, v in given.items() if v is not None}
    imgsz = None
    if args.imgsz:
        if len(args.imgsz) > 2 or min(args.imgsz) < 1:
            raise ConfigError(f"--imgsz {' '.join(map(str, args.imgsz))}: expected N (square) or H W, in pixels (at "
                              "least 1)")
        imgsz = args.imgsz[0] if len(args.imgsz) == 1 else tuple(args.imgsz)
    with flags_named({"iou": "--iou", "agnostic_nms": "--agnostic-nms", "conf": "--conf", "mean": "--mean",
                      "scale": "--scale"}):
        xml = convert(
            args.src, args.out, imgsz=imgsz, fp16=args.fp16, family=args.family,
            labels=parse_labels(args.labels), preprocessing=pre or None, conf_threshold=args.conf,
            iou_threshold=args.iou, agnostic_nms=args.agnostic_nms,
        )
    print(xml)
    return 0
