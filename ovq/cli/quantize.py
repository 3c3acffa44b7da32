"""``ovq quantize MODEL --data DATA -o OUT_DIR [--max-drop D] [--holdout F] [--fail-on-budget] [--fail-on-holdout]``.

Exit codes: 0 done, 2 bad input (one line), 3 with ``--fail-on-budget`` when accuracy control stopped over the
budget on the validation images, or with ``--fail-on-holdout`` when the budget did not hold on the held-out
images (either way the model and report are written, so a CI job can keep them).
"""

from __future__ import annotations

import argparse
import re
import sys
from enum import Enum

from ovq.cli._common import add_command, add_device, refuse_empty_folder
from ovq.core.errors import ConfigError
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
    p.add_argument("--max-iterations", type=int, metavar="N",
                   help="with --max-drop, at most N revert steps (bounds the time; the budget may then be missed)")
    p.add_argument("--holdout", type=float, metavar="FRACTION",
                   help="keep this share of the validation images (seeded, stratified by class) out of everything "
                        "quantization decides; FP and INT8 are scored on them once at the end")
    p.add_argument("--holdout-seed", type=int, default=0, help="which images --holdout keeps out (default 0)")
    p.add_argument("--test-split", metavar="NAME", help="like --holdout, with a split of its own (e.g. test)")
    p.add_argument("--fail-on-budget", action="store_true",
                   help="exit 3 when accuracy control stopped over the --max-drop budget on the validation images "
                        "(every revert tried, or --max-iterations reached; for CI gates)")
    p.add_argument("--fail-on-holdout", action="store_true",
                   help="exit 3 when the --max-drop budget does not hold on the held-out images (for CI gates)")
    p.add_argument("--recalibrate-threshold", action="store_true",
                   help="store in the IR the confidence threshold at which INT8 finds as many objects as FP does "
                        "at the model's threshold")
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
        precision=args.precision, rank_by=args.rank_by, holdout=args.holdout, test_split=args.test_split,
        recalibrate_threshold=args.recalibrate_threshold,
        advanced=AdvancedQuantizeOptions(ranking_subset_size=args.ranking_subset, bench_seconds=args.bench_time,
                                         bias_correction=args.bias_correction, overflow_fix=args.overflow_fix,
                                         holdout_seed=args.holdout_seed, max_num_iterations=args.max_iterations),
    )


# the flag for each option QuantizeOptions' errors name (they name the option, right for YAML and Python)
FLAGS = {
    "max_drop": "--max-drop", "drop_type": "--drop-type", "calib_split": "--calib-split", "val_split": "--val-split",
    "subset_size": "--subset-size", "preset": "--preset", "ignore": "--ignore", "device": "--device",
    "precision": "--precision", "rank_by": "--rank-by", "holdout": "--holdout", "test_split": "--test-split",
    "ranking_subset_size": "--ranking-subset", "bench_seconds": "--bench-time", "bias_correction": "--bias-correction",
    "overflow_fix": "--overflow-fix", "holdout_seed": "--holdout-seed", "max_num_iterations": "--max-iterations",
}
_OPTION_NAMES = re.compile(r"\b(" + "|".join(FLAGS) + r")\b")


def checked_options(args: argparse.Namespace) -> QuantizeOptions:
    """The validated options, a bad one named by its flag (``--max-drop: expected ...``), not as YAML names it."""
    try:
        return options_from(args).validate()
    except ConfigError as exc:
        raise ConfigError(_OPTION_NAMES.sub(lambda m: FLAGS[m.group(1)], str(exc))) from None


def run(args: argparse.Namespace) -> int:
    import logging

    import nncf

    from ovq.quantization.workflow import quantize

    refuse_empty_folder("-o", args.out, "the output folder (-o . for this one)")
    options = checked_options(args)
    if args.fail_on_holdout and (options.max_drop is None or (options.holdout is None and options.test_split is None)):
        raise ConfigError("--fail-on-holdout gates on the budget held out: it needs --max-drop and --holdout or "
                          "--test-split")
    if args.fail_on_budget and options.max_drop is None:
        raise ConfigError("--fail-on-budget gates on the accuracy budget: it needs --max-drop")
    # NNCF logs every quantizer it places at INFO; keep it to warnings unless -vv (the CLI owns its process)
    nncf.set_log_level(logging.DEBUG if args.verbose > 1 else logging.WARNING)
    result = quantize(args.model, args.data, args.out, options, progress=not args.no_progress)
    print(f"wrote {result.model_xml}")
    for line in summary_lines(result.details):
        print(line)
    print(f"report: {args.out}/report.md")
    failed = []
    if args.fail_on_budget and result.budget_met is False:
        failed.append(f"--fail-on-budget: the drop on the validation images is over the budget {options.max_drop:g}")
    if args.fail_on_holdout and result.holdout_held is False:
        failed.append(f"--fail-on-holdout: the budget {options.max_drop:g} did not hold on the held-out images")
    for why in failed:
        print(f"ovq quantize: exit 3 ({why}); the model and report are written", file=sys.stderr)
    return 3 if failed else 0


def summary_lines(rep) -> list[str]:
    """What ``ovq quantize`` prints about a :class:`~ovq.quantization.report.QuantizeReport`."""
    lines = []
    acc = rep.accuracy
    if acc.fp is not None and acc.int8 is not None:
        noise = f"; {acc.interval.level:.0%} interval {acc.interval.low:+.4f}..{acc.interval.high:+.4f}" \
            if acc.interval else ""
        met = {None: "", True: "; within the budget", False: "; budget NOT met (see report.md)"}[rep.budget_met]
        lines.append(f"mAP50-95 at {rep.deployment_precision} on {acc.images} validation images: FP {acc.fp:.4f} -> "
                     f"INT8 {acc.int8:.4f} (drop {acc.drop:+.4f}{noise}){met}")
    lines += _holdout_lines(rep) + _collapse_lines(rep) + _operating_lines(rep)
    kept = [s for s in rep.reverted if s.kept]
    layers = sum(len(s.layers) for s in kept)
    line = f"reverted to float: {layers} layer{'s' * (layers != 1)} in {len(kept)} step{'s' * (len(kept) != 1)}"
    lat = rep.latency
    if lat is not None and lat.final_ms is not None:
        line += (f"; batch-1 latency FP {lat.fp_ms:.3f} ms, all-INT8 {lat.int8_all_layers_ms:.3f} ms, "
                 f"final {lat.final_ms:.3f} ms ({lat.precision})")
    lines.append(line)
    sp = rep.throughput
    if sp is not None:
        lines.append(f"throughput: FP {sp.fp_default.fps:.1f} FPS ({sp.fp_default.precision}), FP f32 {sp.fp_f32.fps:.1f}, "
                     f"INT8 {sp.int8_deploy.fps:.1f} -> {sp.int8_vs_fp_default}x / {sp.int8_vs_fp_f32}x")
    v = rep.speed
    if v is not None and not v.faster:
        lines.append(f"speed: the final INT8 model is no faster than FP ({v.ratio:.2f}x, {v.basis}); try: "
                     + "; ".join(v.advice))
    return lines


def _holdout_lines(rep) -> list[str]:
    h = rep.holdout
    if h is None:
        return []
    line = (f"held out ({h.images} images never seen by quantization): FP {h.fp[0]:.4f} -> INT8 {h.int8[0]:.4f} "
            f"(drop {h.drop:+.4f})")
    if h.held is not None:
        line += f": the budget {h.budget:g} {'held' if h.held else 'did NOT hold'}"
    return [line]


def _collapse_lines(rep) -> list[str]:
    c = rep.collapse
    if c is None or c.reason is None:
        return []
    lines = [f"INT8 collapsed: {c.reason}"]
    if c.retry is not None:
        lines.append(f"  with the detection head float ({len(c.kept_float or [])} ops): mAP50-95 {c.retry.map50_95:.4f}"
                     + (f", still collapsed ({c.retry_reason})" if c.retry_reason else "")
                     + ("; that model went on" if c.used_retry else "; the first model went on"))
    return lines


def _operating_lines(rep) -> list[str]:
    o = rep.operating
    if o is None:
        return []
    line = (f"at conf {o.conf:g} (IoU 0.5): FP precision {o.fp.precision:.3f} recall {o.fp.recall:.3f} "
            f"({o.fp.detections_per_image:.1f}/image), INT8 precision {o.int8.precision:.3f} recall "
            f"{o.int8.recall:.3f} ({o.int8.detections_per_image:.1f}/image)")
    r = o.recalibrated
    if o.applied and r is not None:
        return [line, (f"confidence threshold stored in the IR: {r.conf:g} (was {o.conf:g}): INT8 recall {r.recall:.3f}, "
                      f"precision {r.precision:.3f}")]
    if o.shifted and r is not None:
        return [line, (f"INT8 shifted its confidences: at {r.conf:g} it restores FP's recall ({r.recall:.3f}, precision "
                      f"{r.precision:.3f}); --recalibrate-threshold stores that threshold")]
    return [line]
