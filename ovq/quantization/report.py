"""The quantization report as a typed object, and its renderings: ``report.json`` and ``report.md``.

Everything here is rendering: the numbers are measured by :mod:`ovq.quantization.measure`. The plot is in
:mod:`ovq.quantization.plot`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ovq.evaluation.metrics import DropInterval
from ovq.quantization.accuracy_control import GroupScore, RevertStep
from ovq.quantization.collapse import CollapseCheck
from ovq.quantization.findings import ClassAP, HoldoutResult, OperatingPoints, SpeedVerdict, drop_of, within
from ovq.quantization.report_trust import (
    METRIC,
    Trust,
    fmt,
    interval_dict,
    noise_lines,
    rounded,
    speed_lines,
    trust_dict,
    trust_markdown,
)


@dataclass
class Accuracy:
    """FP and INT8 mAP at the deployment precision, on ``images`` validation images (``None``: not measured)."""

    fp: float | None = None
    int8: float | None = None
    fp_map50: float | None = None
    int8_map50: float | None = None
    images: int = 0
    interval: DropInterval | None = None  # the drop's bootstrap interval over these images

    @property
    def drop(self) -> float | None:
        return None if self.fp is None or self.int8 is None else self.fp - self.int8


@dataclass
class SpeedRun:
    """One configuration of the report's interleaved throughput benchmark."""

    fps: float
    precision: str
    latency_median_ms: float
    slices_fps: list[float] = field(default_factory=list)


@dataclass
class Throughput:
    """FP and INT8, each at the device's default precision and at f32, measured taking turns."""

    fp_default: SpeedRun
    fp_f32: SpeedRun
    int8_deploy: SpeedRun
    int8_f32: SpeedRun

    @property
    def int8_vs_fp_default(self) -> float:
        return round(self.int8_deploy.fps / self.fp_default.fps, 3)

    @property
    def int8_vs_fp_f32(self) -> float:
        return round(self.int8_deploy.fps / self.fp_f32.fps, 3)


@dataclass
class Latency:
    """Batch-1 latency of the FP, fully INT8 and final models (accuracy control only)."""

    method: str
    precision: str
    fp_ms: float | None
    int8_all_layers_ms: float | None
    final_ms: float | None
    free_below_ms: float


@dataclass
class QuantizeReport:
    """What ``ovq quantize`` did and what it bought: ``report.json`` is :meth:`to_dict`, ``report.md``
    :func:`render_markdown`."""

    model: str
    family: str
    device: str
    deployment_precision: str
    compile_config: dict[str, str]
    quantization: dict[str, Any]  # the provenance stored in the IR
    accuracy: Accuracy
    quantized_ops: int
    int8_layers_at_runtime: int
    size_fp32_mb: float
    size_int8_mb: float
    quantization_seconds: float
    total_seconds: float
    peak_rss_mb: float
    first_int8_metric: float | None = None
    reverted: list[RevertStep] = field(default_factory=list)
    throughput: Throughput | None = None
    latency: Latency | None = None
    ranking_rounds: list[list[GroupScore]] | None = None
    validation_calls: dict[str, float] | None = None  # full, ranking, seconds
    per_class: list[ClassAP] | None = None
    operating: OperatingPoints | None = None
    holdout: HoldoutResult | None = None
    collapse: CollapseCheck | None = None
    speed: SpeedVerdict | None = None

    @property
    def budget_met(self) -> bool | None:
        """Whether the drop on the validation images is within ``max_drop`` (``None``: no budget, or no mAP).

        Accuracy control can end over budget: NNCF stops when it has tried every revert its ranking offered, or
        after ``max_num_iterations`` steps."""
        acc = self.accuracy
        if acc.fp is None or acc.int8 is None:
            return None
        relative = self.quantization.get("drop_type") == "relative"
        return within(drop_of(acc.fp, acc.int8, relative), self.quantization.get("max_drop"))

    def to_dict(self) -> dict[str, Any]:
        acc = self.accuracy
        out: dict[str, Any] = {
            "model": self.model,
            "family": self.family,
            "device": self.device,
            "deployment_precision": self.deployment_precision,
            "compile_config": self.compile_config,
            "quantization": self.quantization,
            "accuracy": {"metric": METRIC, "fp": _r(acc.fp), "int8": _r(acc.int8), "drop": _r(acc.drop),
                         "fp_map50": _r(acc.fp_map50), "int8_map50": _r(acc.int8_map50), "images": acc.images,
                         "drop_interval": interval_dict(acc.interval), "budget_met": self.budget_met},
            "first_int8_metric": _r(self.first_int8_metric),
            "reverted": [
                {"rank": s.rank, "layers": s.layers, "metric_after": _r(s.metric), "kept": s.kept,
                 "latency_added_ms": _r(s.cost_ms), "ranking_gain": _r(s.ranking_gain), "nncf_operations": s.operations}
                for s in self.reverted
            ],
            "quantized_ops": self.quantized_ops,
            "int8_layers_at_runtime": self.int8_layers_at_runtime,
            "size_mb": {"fp32": round(self.size_fp32_mb, 2), "int8": round(self.size_int8_mb, 2),
                        "ratio": round(self.size_int8_mb / self.size_fp32_mb, 3)},
            "throughput": _throughput_dict(self.throughput),
            "seconds": {"quantization": round(self.quantization_seconds, 1), "total": round(self.total_seconds, 1)},
            "peak_rss_mb": round(self.peak_rss_mb, 0),
        }
        if self.latency is not None:
            lat = self.latency
            out["latency"] = {"method": lat.method, "precision": lat.precision, "fp_ms": _r(lat.fp_ms, 3),
                              "int8_all_layers_ms": _r(lat.int8_all_layers_ms, 3), "final_ms": _r(lat.final_ms, 3),
                              "free_below_ms": _r(lat.free_below_ms, 4)}
        if self.ranking_rounds is not None:
            out["ranking_rounds"] = [
                [{"layers": sorted(g.layers), "gain": _r(g.gain), "latency_added_ms": _r(g.cost_ms)} for g in scores]
                for scores in self.ranking_rounds
            ]
        if self.validation_calls is not None:
            out["validation_calls"] = dict(self.validation_calls)
        out.update(trust_dict(self.trust()))
        return out

    def trust(self) -> Trust:
        q = self.quantization
        return Trust(self.deployment_precision, q.get("max_drop"), q.get("drop_type", "absolute"), self.per_class,
                     self.operating, self.holdout, self.collapse, self.speed)


def _throughput_dict(t: Throughput | None) -> dict[str, Any]:
    if t is None:
        return {}
    runs = {key: getattr(t, key) for key in ("fp_default", "fp_f32", "int8_deploy", "int8_f32")}
    out: dict[str, Any] = {
        key: {"fps": round(r.fps, 1), "precision": r.precision, "latency_median_ms": round(r.latency_median_ms, 2),
              "slices_fps": list(r.slices_fps)}
        for key, r in runs.items()
    }
    out["int8_vs_fp_default"] = t.int8_vs_fp_default
    out["int8_vs_fp_f32"] = t.int8_vs_fp_f32
    return out


_r = rounded
_fmt = fmt


# --- report.md --------------------------------------------------------------------------------------------


def render_markdown(report: QuantizeReport) -> str:
    lines = (_header(report) + _accuracy(report) + trust_markdown(report.trust()) + _reverts(report)
             + _size_and_speed(report) + _footer(report))
    return "\n".join(lines) + "\n"


def _header(report: QuantizeReport) -> list[str]:
    q = report.quantization
    budget = f", max drop {q['max_drop']} ({q['drop_type']})" if q.get("max_drop") is not None else ""
    return [
        f"# INT8 quantization report: {report.model}",
        "",
        f"- Mode: **{q['mode']}**{budget}",
        (f"- Device: {report.device}, deployment inference precision for float layers: "
        f"**{report.deployment_precision}** (validated at it; stored in the IR: {report.compile_config or 'device default'})"),
        (f"- Data: `{q['data']}`, calibration split `{q['calib_split']}` ({q['calib_images']} images), "
        f"validation split `{q['val_split']}` ({q['val_images']} images){_held_out(q)}; preset {q['preset']}, "
        f"{q.get('bias_correction', 'full')} bias correction, overflow fix on {overflow_fix_text(q)}"),
        f"- CPU: {q.get('cpu', 'unknown')} (INT8 kernels: {q.get('int8_kernels', 'unknown')})",
        f"- NNCF {q['nncf']}, OpenVINO {q['openvino']}",
        "",
    ]


def _held_out(q: dict[str, Any]) -> str:
    return f", held out: {q['holdout']}" if q.get("holdout") else ""


def overflow_fix_text(q: dict[str, Any]) -> str:
    fix = q.get("overflow_fix") or "first-layer"
    text = {"first-layer": "the first layer", "enable": "every layer", "disable": "no layer"}.get(fix, fix)
    trials = q.get("overflow_fix_trials") or {}
    if trials:
        tried = ", ".join(f"{k} {_fmt(v)}" for k, v in trials.items())
        text += f" (this CPU has no VNNI, so INT8 sums can saturate; INT8 mAP50-95 measured with each: {tried})"
    elif fix != "enable" and q.get("int8_kernels") == "no-vnni":
        text += " (this CPU has no VNNI: INT8 sums can saturate)"
    return text


def _accuracy(report: QuantizeReport) -> list[str]:
    acc = report.accuracy
    return [
        f"## Accuracy ({METRIC}, {acc.images} images, at {report.deployment_precision})",
        "",
        "| model | mAP50-95 | mAP50 |",
        "|---|---|---|",
        f"| FP | {_fmt(acc.fp)} | {_fmt(acc.fp_map50)} |",
        f"| INT8 | {_fmt(acc.int8)} | {_fmt(acc.int8_map50)} |",
        f"| drop | {_fmt(acc.drop)} | |",
        "",
    ] + _budget_lines(report) + noise_lines(acc.interval, report.quantization.get("max_drop"))


def _budget_lines(report: QuantizeReport) -> list[str]:
    if report.budget_met is None:
        return []
    q = report.quantization
    if report.budget_met:
        return [f"The budget ({q['max_drop']:g} {q.get('drop_type', 'absolute')}) was met on these images.", ""]
    return [(f"**The budget ({q['max_drop']:g} {q.get('drop_type', 'absolute')}) was NOT met**: accuracy control "
             "stopped over it, having tried every revert its ranking offered (or reached `--max-iterations`). The model "
             "written is the closest it got."), ""]


def _reverts(report: QuantizeReport) -> list[str]:
    lines = ["## Reverted to float", ""]
    if not report.reverted:
        return lines + ["None: every quantizable layer runs in INT8 (apart from the decode tail kept float by default)."]
    if report.first_int8_metric is not None:
        lines += [f"Fully quantized, before any revert: mAP50-95 {_fmt(report.first_int8_metric)}.", ""]
    by_latency = report.quantization.get("rank_by") == "accuracy-per-latency"
    lines += [
        "Reverts chosen by " + ("**mAP restored per millisecond of latency added**" if by_latency
                                else "**mAP restored** (NNCF's order)")
        + "; 'gain' is the mAP the revert restored on the ranking subset and 'latency' the batch-1 latency it"
        " added, both measured on the candidate model when it was chosen.",
        "",
        "| step | layers | mAP50-95 after | gain (subset) | latency +ms | gain per ms | kept |",
        "|---|---|---|---|---|---|---|",
    ]
    free = report.latency.free_below_ms if report.latency else 0.0
    for s in report.reverted:
        names = ", ".join(f"`{n}`" for n in s.layers) or _operations(s.operations)
        if s.cost_ms is None or s.ranking_gain is None:
            per_ms = "n/a"
        else:
            per_ms = "free" if s.cost_ms <= free else f"{s.ranking_gain / s.cost_ms:.3f}"
        cost = "n/a" if s.cost_ms is None else f"{s.cost_ms:+.3f}"
        kept = "yes" if s.kept else "no (undone: made it worse)"
        lines.append(f"| {s.rank} | {names} | {_fmt(s.metric)} | {_fmt(s.ranking_gain)} | {cost} | {per_ms} | {kept} |")
    lat = report.latency
    if lat:
        final = "n/a" if lat.final_ms is None else f"{lat.final_ms:.3f} ms"
        lines += [
            "",
            (f"Batch-1 latency on CPU ({lat.precision} float layers), measured: FP {_ms(lat.fp_ms)}, all layers INT8 "
            f"{_ms(lat.int8_all_layers_ms)}, final model {final}. (\"free\": within the timing noise, "
            f"{lat.free_below_ms:.4f} ms.)"),
        ]
    return lines


def _ms(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f} ms"


def _operations(ops: list[str]) -> str:
    if not ops:
        return "(no INT8 layer at runtime)"
    return "quantizers of " + ", ".join(f"`{n}`" for n in ops[:4]) + (" ..." if len(ops) > 4 else "")


def _size_and_speed(report: QuantizeReport) -> list[str]:
    lines = [
        "",
        "## Size and speed",
        "",
        (f"- FakeQuantize ops: {report.quantized_ops}; layers running in INT8 on {report.device}: "
        f"{report.int8_layers_at_runtime}"),
        (f"- Weights: FP32 {report.size_fp32_mb:.2f} MB -> INT8 {report.size_int8_mb:.2f} MB "
        f"({report.size_int8_mb / report.size_fp32_mb:.3f}x)"),
    ]
    sp = report.throughput
    if sp is None:
        return lines + speed_lines(report.speed)
    turns = len(sp.fp_default.slices_fps)
    lines += [
        "",
        f"Throughput hint, the four runs taking turns ({turns} slices each; FPS is the median slice), so a slow "
        "spell of the machine hits them all alike." if turns > 1 else "Throughput hint.",
        "",
        "| model | precision used | throughput (FPS) | median latency (ms) |",
        "|---|---|---|---|",
    ]
    for label, r in (("FP, device default", sp.fp_default), ("FP, f32", sp.fp_f32),
                     ("INT8, deployment", sp.int8_deploy), ("INT8, f32 float layers", sp.int8_f32)):
        lines.append(f"| {label} | {r.precision} | {r.fps:.1f} | {r.latency_median_ms:.2f} |")
    lines += ["", f"INT8 vs FP at the device default: **{sp.int8_vs_fp_default}x**; vs FP at f32: **{sp.int8_vs_fp_f32}x**."]
    return lines + speed_lines(report.speed)


def _footer(report: QuantizeReport) -> list[str]:
    lines = [
        "",
        (f"Wall time {report.total_seconds:.1f} s (quantization {report.quantization_seconds:.1f} s), peak RSS "
        f"during the call {report.peak_rss_mb:.0f} MB."),
    ]
    vc = report.validation_calls
    if vc:
        lines.append(f"Accuracy control ran {vc['full']:.0f} full validations and {vc['ranking']:.0f} ranking "
                     f"validations ({vc['seconds']} s).")
    return lines
