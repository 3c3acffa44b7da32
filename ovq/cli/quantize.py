"""``ovq quantize MODEL --data DATA -o OUT_DIR [--max-drop D]``."""

from __future__ import annotations

import argparse
from enum import Enum

from ovq.cli._common import add_command, add_device
from ovq.quantization.options import (
    AdvancedQuantizeOptions,
    BiasCorrection,
    DropType,
    OverflowFix,
    Precision,
    Preset,
    QuantizeOptions,
    RankBy,
)


def _values(kind: type[Enum]) -> list[str]:
    return [m.value for m in kind]


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "quantize", "NNCF post-training INT8, optionally holding mAP within --max-drop")
    p.add_argument("model", help="float model: folder, .xml, .onnx or .pt")
    p.add_argument("--data", required=True, help="YOLO dataset (YAML or folder), COCO JSON, or a folder of images (calibration only)")
    p.add_argument("-o", "--out", required=True, help="output folder: model.xml/.bin, report.json, report.md, sensitivity.png")
    p.add_argument("--max-drop", type=float, help="accuracy budget: largest allowed mAP50-95 drop (needs labels)")
    p.add_argument("--drop-type", choices=_values(DropType), default=DropType.ABSOLUTE.value)
    p.add_argument("--calib-split", default="train", help="split used to calibrate (default train)")
    p.add_argument("--val-split", default="val", help="split used to validate (default val)")
    p.add_argument("--subset-size", type=int, default=300, help="calibration images (default 300)")
    p.add_argument("--preset", choices=_values(Preset), default=Preset.PERFORMANCE.value,
                   help="performance: symmetric INT8 (default, fastest on CPU); mixed: asymmetric activations")
    p.add_argument("--ignore", nargs="+", default=[], metavar="PATTERN", help="regex of layer names to keep float")
    p.add_argument("--rank-by", choices=_values(RankBy), default=RankBy.ACCURACY.value,
                   help="with --max-drop, the order of reverts to float: most mAP restored first (NNCF's, default) "
                        "or most mAP restored per millisecond of latency added")
    p.add_argument("--bias-correction", choices=_values(BiasCorrection), default=BiasCorrection.AUTO.value,
                   help="NNCF's bias correction: full (more time and memory) or fast; auto (default): what measured "
                        "best for the model's family (fast for YOLOX, full otherwise)")
    p.add_argument("--overflow-fix", choices=_values(OverflowFix), default=OverflowFix.AUTO.value,
                   help="NNCF's overflow fix (7-bit weights) for CPUs without VNNI, whose INT8 sums can saturate: "
                        "auto (default) measures first-layer against enable on such a CPU and uses NNCF's "
                        "first-layer elsewhere; say enable when the model will run on a CPU without VNNI")
    p.add_argument("--ranking-subset", type=int, default=64, help="images NNCF ranks layers on (default 64)")
    p.add_argument("--bench-time", type=float, default=5.0, help="seconds per throughput measurement in the report (0: skip)")
    add_device(p)
    p.add_argument("--precision", choices=_values(Precision), default=Precision.DEFAULT.value,
                   help="inference precision the model will run at; validated at it and stored in the IR "
                        "(default: the device's, bf16 on AMX CPUs)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def options_from(args: argparse.Namespace) -> QuantizeOptions:
    """The command line as the one options type the API and pipeline YAML use (validated by ``quantize``)."""
    return QuantizeOptions(
        max_drop=args.max_drop, drop_type=args.drop_type, calib_split=args.calib_split, val_split=args.val_split,
        subset_size=args.subset_size, preset=args.preset, ignore=tuple(args.ignore), device=args.device,
        precision=args.precision, rank_by=args.rank_by,
        advanced=AdvancedQuantizeOptions(ranking_subset_size=args.ranking_subset, bench_seconds=args.bench_time,
                                         bias_correction=args.bias_correction, overflow_fix=args.overflow_fix),
    )


def run(args: argparse.Namespace) -> int:
    import logging

    import nncf

    from ovq.quantization.workflow import quantize

    # NNCF logs every quantizer it places at INFO; keep it to warnings unless -vv (the CLI owns its process)
    nncf.set_log_level(logging.DEBUG if args.verbose > 1 else logging.WARNING)
    result = quantize(args.model, args.data, args.out, options_from(args), progress=not args.no_progress)
    rep = result.details
    acc = rep.accuracy
    print(f"wrote {result.model_xml}")
    if acc.fp is not None and acc.int8 is not None:
        print(f"mAP50-95 at {rep.deployment_precision}: FP {acc.fp:.4f} -> INT8 {acc.int8:.4f} (drop {acc.drop:+.4f})")
    kept = [s for s in rep.reverted if s.kept]
    line = f"reverted to float: {sum(len(s.layers) for s in kept)} layers in {len(kept)} steps"
    lat = rep.latency
    if lat is not None and lat.final_ms is not None:
        line += (f"; batch-1 latency FP {lat.fp_ms:.3f} ms, all-INT8 {lat.int8_all_layers_ms:.3f} ms, "
                 f"final {lat.final_ms:.3f} ms ({lat.precision})")
    print(line)
    sp = rep.throughput
    if sp is not None:
        print(
            f"throughput: FP {sp.fp_default.fps:.1f} FPS ({sp.fp_default.precision}), FP f32 {sp.fp_f32.fps:.1f}, "
            f"INT8 {sp.int8_deploy.fps:.1f} -> {sp.int8_vs_fp_default}x / {sp.int8_vs_fp_f32}x"
        )
    print(f"report: {args.out}/report.md")
    return 0
