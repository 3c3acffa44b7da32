"""``sensitivity.png``: accuracy as layers are reverted to float and, when reverts were priced, against latency.

Drawn on a :class:`matplotlib.figure.Figure` with the Agg canvas directly, so the caller's matplotlib backend
(and pyplot's global state) is left as it was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ovq.quantization.report import QuantizeReport


def plot_sensitivity(report: QuantizeReport, path: Path) -> None:
    """mAP as layers are reverted (0 = fully INT8), with the FP level and the budget; and, when the reverts were
    priced, mAP against the latency the kept reverts add (the trade-off)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    priced = report.latency is not None and any(s.cost_ms is not None for s in report.reverted)
    fig = Figure(figsize=(12 if priced else 7, 4), dpi=110)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2 if priced else 1, squeeze=False)[0]
    start = _start_metric(report)
    _reverts_axis(axes[0], report, start)
    if priced:
        _tradeoff_axis(axes[1], report, start)
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def _start_metric(report: QuantizeReport) -> float | None:
    if report.first_int8_metric is not None:
        return report.first_int8_metric
    return report.accuracy.int8 if not report.reverted else None


def _reverts_axis(ax: Any, report: QuantizeReport, start: float | None) -> None:
    from matplotlib.ticker import MaxNLocator

    steps = report.reverted
    points = [(x, y) for x, y in zip([0] + [s.rank for s in steps], [start] + [s.metric for s in steps]) if y is not None]
    if points:
        ax.plot([p[0] for p in points], [p[1] for p in points], "o-", label="INT8 after each revert step")
        undone = [(s.rank, s.metric) for s in steps if not s.kept]
        if undone:
            ax.plot([u[0] for u in undone], [u[1] for u in undone], "x", color="r", ms=9, label="step undone")
    _reference_lines(ax, report)
    _holdout_note(ax, report)
    order = "accuracy per latency" if report.quantization.get("rank_by") == "accuracy-per-latency" else "NNCF's accuracy"
    ax.set_xlabel(f"revert steps (groups of layers back to float, by {order})")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(-0.5, max([1] + [s.rank for s in steps]) + 0.5)  # one point (nothing reverted) stays a step axis
    ax.set_ylabel("mAP50-95")
    ax.set_title(f"{report.model}: accuracy vs reverts ({report.deployment_precision})", fontsize=10)


def _tradeoff_axis(ax: Any, report: QuantizeReport, start: float | None) -> None:
    lat = report.latency
    assert lat is not None
    total = lat.int8_all_layers_ms or 0.0
    xs, ys = [total], [start]
    for s in report.reverted:
        if s.kept:
            total += s.cost_ms or 0.0
            xs.append(total)
            ys.append(s.metric)
    points = [(x, y) for x, y in zip(xs, ys) if y is not None]
    if points:
        ax.plot([p[0] for p in points], [p[1] for p in points], "o-", color="tab:purple",
                label="INT8 + kept reverts (sum of steps)")
    if lat.final_ms is not None and report.accuracy.int8 is not None:
        ax.plot([lat.final_ms], [report.accuracy.int8], "*", color="k", ms=12,
                label=f"final model, measured {lat.final_ms:.3f} ms")
    if lat.fp_ms is not None:
        ax.axvline(lat.fp_ms, color="g", ls=":", lw=0.8, label=f"FP {lat.fp_ms:.3f} ms")
    _reference_lines(ax, report)
    ax.set_xlabel(f"batch-1 latency on CPU, ms ({lat.precision} float layers)")
    ax.set_ylabel("mAP50-95")
    ax.set_title("trade-off: accuracy vs latency", fontsize=10)


def _reference_lines(ax: Any, report: QuantizeReport) -> None:
    acc = report.accuracy
    if acc.fp is not None:
        ax.axhline(acc.fp, color="g", ls="--", label=f"FP {acc.fp:.4f}")
        md = report.quantization.get("max_drop")
        if md is not None and report.quantization.get("drop_type") == "absolute":
            ax.axhline(acc.fp - md, color="r", ls=":", label=f"budget (drop {md})")
    if acc.int8 is not None:
        ax.axhline(acc.int8, color="k", ls="-.", lw=0.8, label=f"final INT8 {acc.int8:.4f}")


def _holdout_note(ax: Any, report: QuantizeReport) -> None:
    """The held-out verdict in words: its images are others, so their mAP has no place on this axis."""
    h = report.holdout
    if h is None:
        return
    text = f"held out ({h.images} images): FP {h.fp[0]:.4f}, INT8 {h.int8[0]:.4f}, drop {h.drop:+.4f}"
    if h.held is not None:
        text += "\nbudget " + ("held" if h.held else "NOT held") + " there"
    low, high = ax.get_ylim()
    ax.set_ylim(low, high + 0.25 * (high - low))  # headroom: the note sits above the FP line, not on it
    ax.text(0.02, 0.97, text, transform=ax.transAxes, va="top", fontsize=8,
            bbox={"boxstyle": "round", "facecolor": "white" if h.held is not False else "mistyrose", "alpha": 0.9})
