"""The quantization report: what was reverted, what each revert bought, accuracy, size and speed."""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import openvino as ov

from ovq.core.fileio import atomic_output_dir, write_json_atomic
from ovq.core.metadata import ModelInfo

if TYPE_CHECKING:
    from ovq.quantization.workflow import AdvancedQuantizeOptions, QuantizeResult, RevertStep

logger = logging.getLogger(__name__)


def _bin_size_mb(model: ov.Model) -> float:
    with tempfile.TemporaryDirectory(prefix="ovq-size-") as tmp:
        ov.save_model(model, f"{tmp}/m.xml", compress_to_fp16=False)
        return Path(f"{tmp}/m.bin").stat().st_size / 1e6


def count_fake_quantize(model: ov.Model) -> int:
    return sum(1 for op in model.get_ops() if op.get_type_name() == "FakeQuantize")


def build_report(
    *,
    fp_model: ov.Model,
    fp_info: ModelInfo,
    quantized: ov.Model,
    q_info: ModelInfo,
    out_dir: str | Path | None,
    val: Any,
    fp_map: float | None,
    fp_map50: float | None,
    validator: Any,
    device: str,
    planner: Any = None,
    used_precision: str,
    started: float,
    quant_seconds: float,
    adv: AdvancedQuantizeOptions,
    progress: bool,
    peak_rss_mb: Callable[[], float],
) -> QuantizeResult:
    from ovq.evaluation.speed import BenchSpec, bench_rounds, benchmark_interleaved
    from ovq.evaluation.accuracy import coco_map, predict_samples
    from ovq.model.detector import Detector
    from ovq.quantization.workflow import QuantizeResult, int8_layers, quantizable_layers

    int8_map = int8_map50 = None
    with tempfile.TemporaryDirectory(prefix="ovq-q-") as tmp:
        xml = Path(tmp) / "model.xml"
        ov.save_model(quantized, str(xml), compress_to_fp16=False)
        int8_mb = xml.with_suffix(".bin").stat().st_size / 1e6
        # an independent evaluation of the saved model, compiled as run/eval/bench will compile it
        det = Detector(xml, device=device, cache=False)
        final_int8 = int8_layers(det.compiled, quantizable_layers(fp_model))
        if not final_int8:
            from ovq.core.errors import OvqError

            raise OvqError(f"{fp_info.source}: no layer runs in INT8 after quantization on {device}; nothing gained")
        reverted: list[RevertStep] = validator.revert_steps(final_int8) if validator is not None else []
        if planner is not None:
            planner.annotate(reverted)
        q_info.quantization["reverted_layers"] = sorted({n for s in reverted if s.kept for n in s.layers})
        from ovq.core.metadata import write_info

        write_info(quantized, q_info)
        if val is not None:
            preds = predict_samples(det.compiled, det, val.samples, conf=adv.eval_conf, progress="INT8 model" if progress else False)
            res = coco_map(val.samples, preds, num_classes=len(q_info.labels))
            int8_map, int8_map50 = res.map50_95, res.map50
            # the FP numbers come from quantize(), measured at the same deployment precision
        del det
        speed: dict[str, Any] = {}
        if adv.bench_seconds > 0:
            runs = {
                "fp_default": (fp_model, "default"),
                "fp_f32": (fp_model, "f32"),
                "int8_deploy": (xml, None),
                "int8_f32": (xml, "f32"),
            }
            rounds = bench_rounds(adv.bench_seconds)
            logger.info("benchmarking FP and INT8 at the default precision and f32, taking turns: %d x %.1f s each",
                        rounds, adv.bench_seconds / rounds)
            results = benchmark_interleaved(
                [BenchSpec(m, device=device, precision=prec, hint="throughput") for m, prec in runs.values()],
                seconds=adv.bench_seconds, rounds=rounds,
            )
            for key, r in zip(runs, results):
                speed[key] = {"fps": round(r.throughput_fps, 1), "precision": r.precision_used,
                              "latency_median_ms": round(r.latency_median_ms, 2), "slices_fps": list(r.slices_fps)}
            speed["int8_vs_fp_default"] = round(speed["int8_deploy"]["fps"] / speed["fp_default"]["fps"], 3)
            speed["int8_vs_fp_f32"] = round(speed["int8_deploy"]["fps"] / speed["fp_f32"]["fps"], 3)
        fp_mb = _bin_size_mb(fp_model)

        report: dict[str, Any] = {
            "model": fp_info.source,
            "family": fp_info.family,
            "device": device,
            "deployment_precision": used_precision,
            "compile_config": q_info.compile_config,
            "quantization": q_info.quantization,
            "accuracy": {
                "metric": "COCO mAP50-95 (pycocotools)",
                "fp": _r(fp_map), "int8": _r(int8_map), "drop": _r(None if fp_map is None or int8_map is None else fp_map - int8_map),
                "fp_map50": _r(fp_map50), "int8_map50": _r(int8_map50),
                "images": len(val) if val is not None else 0,
            },
            "first_int8_metric": _r(validator.first_int8_metric()) if validator is not None else None,
            "reverted": [
                {"rank": s.rank, "layers": s.layers, "metric_after": _r(s.metric), "kept": s.kept,
                 "latency_added_ms": _r(s.cost_ms), "ranking_gain": _r(s.ranking_gain),
                 "nncf_operations": s.operations}
                for s in reverted
            ],
            "quantized_ops": count_fake_quantize(quantized),
            "int8_layers_at_runtime": len(final_int8),
            "size_mb": {"fp32": round(fp_mb, 2), "int8": round(int8_mb, 2), "ratio": round(int8_mb / fp_mb, 3)},
            "throughput": speed,
            "seconds": {"quantization": round(quant_seconds, 1), "total": round(time.perf_counter() - started, 1)},
            "peak_rss_mb": round(peak_rss_mb(), 0),
        }
        if planner is not None and planner.int8_latency_ms is not None and planner.timing_input is not None:
            from ovq.runtime.timing import paired_latency_ms

            final_ms, fp_ms = paired_latency_ms(
                ov.compile_model(quantized, device_name="CPU", config=planner.config),
                ov.compile_model(fp_model, device_name="CPU", config=planner.config),
                planner.timing_input, max(adv.latency_runs, 100),
            )
            report["latency"] = {
                "method": f"median of {max(adv.latency_runs, 100)} synchronous batch-1 inferences on CPU, LATENCY hint "
                          f"(the default), at the validation precision, final and FP timed in alternating blocks; each "
                          f"revert timed on the candidate NNCF compiled against the model it would replace "
                          f"(median of {adv.latency_runs} each, alternating)",
                "precision": used_precision,
                "fp_ms": _r(fp_ms, 3),
                "int8_all_layers_ms": _r(planner.int8_latency_ms, 3),
                "final_ms": _r(final_ms, 3),
                "free_below_ms": _r(planner.free_ms, 4),
            }
            report["ranking_rounds"] = [
                [{"layers": sorted(g.layers), "gain": _r(g.gain), "latency_added_ms": _r(g.cost_ms)} for g in scores]
                for scores in planner.rounds
            ]
        if validator is not None:
            calls = validator.calls
            report["validation_calls"] = {
                "full": sum(1 for c in calls if c.items == validator.total),
                "ranking": sum(1 for c in calls if c.items != validator.total),
                "seconds": round(sum(c.seconds for c in calls), 1),
            }
        model_xml = None
        if out_dir is not None:
            with atomic_output_dir(out_dir) as target:
                ov.save_model(quantized, str(target / "model.xml"), compress_to_fp16=False)
                write_json_atomic(target / "report.json", report)
                (target / "report.md").write_text(render_markdown(report), encoding="utf-8")
                plot_sensitivity(report, target / "sensitivity.png")
            model_xml = Path(out_dir) / "model.xml"
    return QuantizeResult(model_xml=model_xml, model=quantized, fp_map=fp_map, int8_map=int8_map, reverted=reverted, report=report)


def _r(v: float | None, nd: int = 4) -> float | None:
    return None if v is None else round(float(v), nd)


def render_markdown(report: dict[str, Any]) -> str:
    acc = report["accuracy"]
    q = report["quantization"]
    lines = [
        f"# INT8 quantization report: {report['model']}",
        "",
        f"- Mode: **{q['mode']}**" + (f", max drop {q['max_drop']} ({q['drop_type']})" if q["max_drop"] is not None else ""),
        f"- Device: {report['device']}, deployment inference precision for float layers: **{report['deployment_precision']}**"
        f" (validated at it; stored in the IR: {report['compile_config'] or 'device default'})",
        f"- Data: `{q['data']}`, calibration split `{q['calib_split']}` ({q['calib_images']} images), "
        f"validation split `{q['val_split']}` ({q['val_images']} images); preset {q['preset']}, "
        f"{q.get('bias_correction', 'full')} bias correction, overflow fix on {_overflow_fix(q)}",
        f"- NNCF {q['nncf']}, OpenVINO {q['openvino']}",
        "",
        "## Accuracy (" + acc["metric"] + f", {acc['images']} images, at {report['deployment_precision']})",
        "",
        "| model | mAP50-95 | mAP50 |",
        "|---|---|---|",
        f"| FP | {_fmt(acc['fp'])} | {_fmt(acc['fp_map50'])} |",
        f"| INT8 | {_fmt(acc['int8'])} | {_fmt(acc['int8_map50'])} |",
        f"| drop | {_fmt(acc['drop'])} | |",
        "",
        "## Reverted to float",
        "",
    ]
    if report["reverted"]:
        if report.get("first_int8_metric") is not None:
            lines.append(f"Fully quantized, before any revert: mAP50-95 {_fmt(report['first_int8_metric'])}.")
            lines.append("")
        rank_by = q.get("rank_by") or "accuracy"
        lines.append(
            "Reverts chosen by " + ("**mAP restored per millisecond of latency added**" if rank_by == "accuracy-per-latency"
                                    else "**mAP restored** (NNCF's order)")
            + "; 'gain' is the mAP the revert restored on the ranking subset and 'latency' the batch-1 latency it"
            " added, both measured on the candidate model when it was chosen."
        )
        lines.append("")
        lines += ["| step | layers | mAP50-95 after | gain (subset) | latency +ms | gain per ms | kept |", "|---|---|---|---|---|---|---|"]
        for s in report["reverted"]:
            names = ", ".join(f"`{n}`" for n in s["layers"])
            if not names:
                ops = s.get("nncf_operations") or []
                names = ("quantizers of " + ", ".join(f"`{n}`" for n in ops[:4]) + (" ..." if len(ops) > 4 else "")) if ops \
                    else "(no INT8 layer at runtime)"
            cost, gain = s.get("latency_added_ms"), s.get("ranking_gain")
            free = (report.get("latency") or {}).get("free_below_ms", 0.0)
            if cost is None or gain is None:
                per_ms = "n/a"
            elif cost <= free:
                per_ms = "free"
            else:
                per_ms = f"{gain / cost:.3f}"
            lines.append(
                f"| {s['rank']} | {names} | {_fmt(s['metric_after'])} | {_fmt(gain)} | "
                f"{'n/a' if cost is None else f'{cost:+.3f}'} | {per_ms} | {'yes' if s['kept'] else 'no (undone: made it worse)'} |"
            )
        lat = report.get("latency")
        if lat:
            final = "n/a" if lat["final_ms"] is None else f"{lat['final_ms']} ms"
            lines += [
                "",
                f"Batch-1 latency on CPU ({lat['precision']} float layers), measured: FP {lat['fp_ms']} ms, all layers INT8 "
                f"{lat['int8_all_layers_ms']} ms, final model {final}. (\"free\": within the timing noise, "
                f"{lat['free_below_ms']} ms.)",
            ]
    else:
        lines.append("None: every quantizable layer runs in INT8 (apart from the decode tail kept float by default).")
    lines += [
        "",
        "## Size and speed",
        "",
        f"- FakeQuantize ops: {report['quantized_ops']}; layers running in INT8 on {report['device']}: {report['int8_layers_at_runtime']}",
        f"- Weights: FP32 {report['size_mb']['fp32']} MB -> INT8 {report['size_mb']['int8']} MB ({report['size_mb']['ratio']}x)",
    ]
    sp = report["throughput"]
    if sp:
        turns = len(sp["fp_default"].get("slices_fps", []))
        lines += [
            "",
            f"Throughput hint, the four runs taking turns ({turns} slices each; FPS is the median slice), so a slow "
            "spell of the machine hits them all alike." if turns > 1 else "Throughput hint.",
            "",
            "| model | precision used | throughput (FPS) | median latency (ms) |",
            "|---|---|---|---|",
        ]
        for key, label in (("fp_default", "FP, device default"), ("fp_f32", "FP, f32"), ("int8_deploy", "INT8, deployment"), ("int8_f32", "INT8, f32 float layers")):
            r = sp[key]
            lines.append(f"| {label} | {r['precision']} | {r['fps']} | {r['latency_median_ms']} |")
        lines += ["", f"INT8 vs FP at the device default: **{sp['int8_vs_fp_default']}x**; vs FP at f32: **{sp['int8_vs_fp_f32']}x**."]
        default_prec = sp["fp_default"]["precision"]
        if sp["int8_vs_fp_default"] < 0.97 and default_prec != "f32" and report["device"].upper().startswith("CPU"):
            lines += [
                "",
                f"On this {report['device']} the FP model at its default {default_prec} is about as fast as INT8 or faster "
                f"(its matrix units run {default_prec} about as fast as INT8 for this model). INT8 still pays where the "
                f"float layers run at f32 (CPUs without AMX: {sp['int8_vs_fp_f32']}x here) and where memory or "
                "model size matters; measure on the target machine with `ovq bench`.",
            ]
    lines += [
        "",
        f"Wall time {report['seconds']['total']} s (quantization {report['seconds']['quantization']} s), peak RSS {report['peak_rss_mb']:.0f} MB.",
    ]
    if "validation_calls" in report:
        vc = report["validation_calls"]
        lines.append(f"Accuracy control ran {vc['full']} full validations and {vc['ranking']} ranking validations ({vc['seconds']} s).")
    return "\n".join(lines) + "\n"


def _overflow_fix(q: dict[str, Any]) -> str:
    fix = q.get("overflow_fix") or "first-layer"
    text = {"first-layer": "the first layer", "enable": "every layer", "disable": "no layer"}.get(fix, fix)
    trials = q.get("overflow_fix_trials") or {}
    if trials:
        tried = ", ".join(f"{k} {_fmt(v)}" for k, v in trials.items())
        text += f" (this CPU has no VNNI, so INT8 sums can saturate; INT8 mAP50-95 measured with each: {tried})"
    elif fix != "enable" and q.get("int8_kernels") == "no-vnni":
        text += " (this CPU has no VNNI: INT8 sums can saturate)"
    return text


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def plot_sensitivity(report: dict[str, Any], path: Path) -> None:
    """mAP as layers are reverted (0 = fully INT8), with the FP level and the budget; and, when the
    reverts were priced, mAP against the estimated latency the kept reverts add (the trade-off)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    acc = report["accuracy"]
    steps = report["reverted"]
    priced = report.get("latency") is not None and any(s.get("latency_added_ms") is not None for s in steps)
    fig, axes = plt.subplots(1, 2 if priced else 1, figsize=(12 if priced else 7, 4), dpi=110, squeeze=False)
    ax = axes[0][0]
    first = report.get("first_int8_metric")
    start = first if first is not None else (acc["int8"] if not steps else None)
    xs = [0] + [s["rank"] for s in steps]
    ys = [start] + [s["metric_after"] for s in steps]
    pts = [(x, y) for x, y in zip(xs, ys) if y is not None]
    if pts:
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label="INT8 after each revert step")
        undone = [(s["rank"], s["metric_after"]) for s in steps if not s["kept"]]
        if undone:
            ax.plot([u[0] for u in undone], [u[1] for u in undone], "x", color="r", ms=9, label="step undone")
    _reference_lines(ax, report)
    order = "accuracy per latency" if report["quantization"].get("rank_by") == "accuracy-per-latency" else "NNCF's accuracy"
    ax.set_xlabel(f"revert steps (groups of layers back to float, by {order})")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("mAP50-95")
    ax.set_title(f"{report['model']}: accuracy vs reverts ({report['deployment_precision']})", fontsize=10)
    if priced:
        tx = axes[0][1]
        lat = report["latency"]
        cx, cy, total = [lat["int8_all_layers_ms"]], [start], lat["int8_all_layers_ms"]
        for s in steps:
            if s["kept"]:
                total += s.get("latency_added_ms") or 0.0
                cx.append(total)
                cy.append(s["metric_after"])
        pts = [(x, y) for x, y in zip(cx, cy) if y is not None]
        if pts:
            tx.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color="tab:purple", label="INT8 + kept reverts (sum of steps)")
        if lat.get("final_ms") is not None and acc["int8"] is not None:
            tx.plot([lat["final_ms"]], [acc["int8"]], "*", color="k", ms=12, label=f"final model, measured {lat['final_ms']} ms")
        if lat.get("fp_ms") is not None:
            tx.axvline(lat["fp_ms"], color="g", ls=":", lw=0.8, label=f"FP {lat['fp_ms']} ms")
        _reference_lines(tx, report)
        tx.set_xlabel(f"batch-1 latency on CPU, ms ({lat['precision']} float layers)")
        tx.set_ylabel("mAP50-95")
        tx.set_title("trade-off: accuracy vs latency", fontsize=10)
    for a in axes[0]:
        a.grid(alpha=0.3)
        if a.get_legend_handles_labels()[0]:
            a.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _reference_lines(ax: Any, report: dict[str, Any]) -> None:
    acc = report["accuracy"]
    if acc["fp"] is not None:
        ax.axhline(acc["fp"], color="g", ls="--", label=f"FP {acc['fp']:.4f}")
        md = report["quantization"].get("max_drop")
        if md is not None and report["quantization"].get("drop_type") == "absolute":
            ax.axhline(acc["fp"] - md, color="r", ls=":", label=f"budget (drop {md})")
    if acc["int8"] is not None:
        ax.axhline(acc["int8"], color="k", ls="-.", lw=0.8, label=f"final INT8 {acc['int8']:.4f}")
