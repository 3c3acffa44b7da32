"""What ovq plugs into NNCF's accuracy control: the validation function, and the planner that prices reverts.

NNCF's ``quantize_with_accuracy_control`` calls :class:`Validator` on the whole validation set (the FP model,
the INT8 model, then after each revert) and on a ranking subset (one call per candidate revert; the planner says
when a ranking runs, since the subset can be the whole set when the set is small). The validator
scores COCO mAP at the deployment precision, keeps a record of every call (:class:`ValidationCall`), and from
those records :meth:`Validator.revert_steps` reconstructs which layers each step put back to float.

:class:`RevertPlanner` sees each of NNCF's rankings (through :mod:`ovq.quantization.nncf_hooks`): it times every
candidate against the model it would replace and, for :attr:`RankBy.ACCURACY_PER_LATENCY`, reorders them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from ovq.core.errors import OvqError
from ovq.evaluation.accuracy import predict_samples
from ovq.evaluation.metrics import coco_map
from ovq.model.detector import Detector
from ovq.quantization.findings import drop_of
from ovq.quantization.layers import int8_layers
from ovq.quantization.options import RankBy
from ovq.runtime.compilation import execution_precision
from ovq.runtime.timing import paired_latency_ms

logger = logging.getLogger(__name__)


@dataclass
class RevertStep:
    """One accuracy-control step: the layers NNCF put back to float and the metric after it."""

    rank: int
    layers: list[str]
    metric: float
    kept: bool = True
    cost_ms: float | None = None  # batch-1 latency the revert added, measured when it was chosen
    ranking_gain: float | None = None  # mAP it restored on the ranking subset when it was chosen
    ranking_round: int = 0  # which of NNCF's rankings it was chosen from (1 = the first)
    operations: list[str] = field(default_factory=list)  # NNCF's names of the operations it reverted


@dataclass
class ValidationCall:
    """One call NNCF made to the validation function."""

    items: int
    metric: float
    int8: frozenset[str]
    seconds: float
    samples: list[Any] | None = None  # kept for ranking calls (the ranking subset)
    ranking_round: int = 0
    latency_ms: float | None = None  # measured batch-1 latency of the model validated (ranking calls)
    reference_ms: float | None = None  # ... and of the model it would replace, timed alternately with it

    @property
    def full(self) -> bool:
        """A validation of the whole set (not a ranking call)."""
        return self.samples is None


@dataclass
class Validator:
    """The validation function NNCF calls: mAP over the given samples plus per-image values."""

    detector: Detector
    known_layers: set[str]
    expected_precision: str
    conf: float
    total: int
    fp_result: tuple[float, list[float]] | None = None
    inputs: dict[Path, tuple[np.ndarray, Any]] = field(default_factory=dict)
    max_drop: float | None = None
    relative: bool = False
    calls: list[ValidationCall] = field(default_factory=list)
    ranking_round: int = 0  # how many rankings NNCF has done so far (set by RevertPlanner)
    ranking: bool = False  # a ranking is running: calls are on the ranking subset (set by RevertPlanner)
    latency_runs: int = 0  # > 0: time every model validated on the ranking subset (median of this many runs)
    reference: ov.CompiledModel | None = None  # the model the ranked candidates would replace (set by the planner)
    classes: tuple[int, ...] | None = None  # only these class ids are scored (a dataset matched by name)

    def __call__(self, compiled: ov.CompiledModel, items: Any) -> tuple[float, list[float]]:
        samples = list(items)
        used = execution_precision(compiled)
        if used != self.expected_precision:
            raise OvqError(
                f"NNCF compiled the model for validation at {used}, not the deployment precision "
                f"{self.expected_precision}; this NNCF version is not supported by ovq"
            )
        int8 = frozenset(int8_layers(compiled, self.known_layers))
        full = not self.ranking
        if full and not int8 and self.fp_result is not None:  # NNCF validating the float model again
            metric, per_image = self.fp_result
            self.calls.append(ValidationCall(len(samples), metric, int8, 0.0, None, self.ranking_round))
            return metric, per_image
        start = time.perf_counter()
        phase = "validating" if full else "ranking"
        preds = predict_samples(
            compiled, self.detector, samples, conf=self.conf, progress=phase if full else False, preprocessed=self.inputs,
            classes=self.classes,
        )
        result = coco_map(samples, preds, num_classes=len(self.detector.labels), per_image=True, matches=False)
        seconds = time.perf_counter() - start
        latency = reference = None
        if not full and self.latency_runs > 0 and self.reference is not None and samples:
            latency, reference = paired_latency_ms(
                compiled, self.reference, self.inputs[samples[0].image][0], self.latency_runs
            )
        self.calls.append(ValidationCall(len(samples), result.map50_95, int8, seconds, None if full else samples,
                                         self.ranking_round, latency, reference))
        if full:
            logger.info("%s %d images: mAP50-95 %.4f (%d INT8 layers)", phase, len(samples), result.map50_95, len(int8))
        return result.map50_95, list(result.per_image)

    def first_int8_metric(self) -> float | None:
        full = [c for c in self.calls if c.full and c.int8]
        return full[0].metric if full else None

    def revert_steps(self, final_int8: set[str]) -> list[RevertStep]:
        """The revert steps NNCF took, from the full validations after the first INT8 one.

        Whether a step was kept follows NNCF's greedy rule: a step that makes the drop worse is undone,
        unless the step before it was itself undone (then it is kept and the search goes on). A step's
        layers are those it took out of INT8 relative to the model it started from. The reconstruction is
        checked against ``final_int8``, the layers that run in INT8 in the model NNCF returned.
        """
        full = [c for c in self.calls if c.full and c.int8]
        steps: list[RevertStep] = []
        if not full or self.fp_result is None:
            return steps
        fp = self.fp_result[0]

        accepted = full[0].int8
        previous, stepped_back = drop_of(fp, full[0].metric, self.relative), True
        for rank, call in enumerate(full[1:], start=1):
            current = drop_of(fp, call.metric, self.relative)
            met = self.max_drop is not None and current <= self.max_drop  # NNCF's own test, no rounding slack
            kept = met or current <= previous or stepped_back
            steps.append(RevertStep(rank=rank, layers=sorted(accepted - call.int8), metric=call.metric, kept=kept,
                                    ranking_round=call.ranking_round))
            if kept:
                accepted = call.int8
            stepped_back = not kept
            previous = current
        if set(accepted) != set(final_int8):
            logger.warning(
                "the reconstructed revert steps do not match the returned model (%d vs %d INT8 layers); "
                "the step list in the report may be inexact", len(accepted), len(final_int8),
            )
        return steps


@dataclass
class GroupScore:
    """One candidate revert as a ranking saw it: what it restored, and what it cost."""

    layers: frozenset[str]
    gain: float
    cost_ms: float
    operations: tuple[str, ...] = ()


@dataclass
class RevertPlanner:
    """Sees each of NNCF's rankings: prices every candidate revert in latency and, for
    :attr:`RankBy.ACCURACY_PER_LATENCY`, reorders the candidates by mAP restored per millisecond.

    A candidate's gain is its ranking-subset mAP minus the current model's on the same images; its cost
    is its measured batch-1 latency minus the current model's (:mod:`ovq.runtime.timing`), both timed on the
    models NNCF compiled, so the reorders a revert adds at the borders of INT8 regions are counted.
    """

    validator: Validator
    rank_by: RankBy
    config: dict[str, str]
    int8_latency_ms: float | None = None  # the fully quantized model, timed at the first ranking
    timing_input: np.ndarray | None = None  # the input every latency is measured on
    rounds: list[list[GroupScore]] = field(default_factory=list)

    @property
    def free_ms(self) -> float:
        """Below this cost a revert counts as free: within the timing noise (2% of the INT8 latency)."""
        return max(0.01, 0.02 * (self.int8_latency_ms or 0.0))

    def priority(self, s: GroupScore) -> tuple[int, float, float]:
        if s.gain <= 0:
            return (0, s.gain, 0.0)
        if s.cost_ms <= self.free_ms:  # restores accuracy at no measurable cost: take it first
            return (2, s.gain, 0.0)
        return (1, s.gain / s.cost_ms, s.gain)

    def rank(self, call_nncf: Callable[[], list[Any]], groups: list[Any], quantized_model: ov.Model) -> list[Any]:
        """NNCF's ranking of ``groups`` (candidate reverts of ``quantized_model``), priced and maybe reordered."""
        # the current model, compiled as NNCF compiles the candidates (CPU, the deployment precision);
        # each candidate is timed against it in alternation
        compiled = ov.compile_model(quantized_model, device_name="CPU", config=self.config)
        timed = self.validator.latency_runs > 0
        self.validator.reference = compiled if timed else None
        start = len(self.validator.calls)
        self.validator.ranking = True
        try:
            ranked = call_nncf()
        finally:
            self.validator.reference = None
            self.validator.ranking = False
        calls = self.validator.calls[start:]
        if len(calls) != len(groups) or any(c.samples is None or (timed and c.latency_ms is None) for c in calls):
            raise OvqError(
                f"NNCF ranked {len(groups)} groups with {len(calls)} timed subset validations; "
                "this NNCF version is not supported by ovq's revert pricing"
            )
        if not groups:
            return ranked
        scores = self._scores(compiled, calls, groups, timed)
        if self.rank_by is RankBy.ACCURACY:
            position = {id(g): i for i, g in enumerate(groups)}
            order = [position[id(g)] for g in ranked]
        else:
            order = sorted(range(len(groups)), key=lambda i: self.priority(scores[i]))  # NNCF pops from the end
            best = scores[order[-1]]
            logger.info(
                "next revert by accuracy per latency: %d layers, %+.4f mAP on the ranking subset for %+.3f ms",
                len(best.layers), best.gain, best.cost_ms,
            )
        self.rounds.append([scores[i] for i in order])
        self.validator.ranking_round = len(self.rounds)
        return ranked if self.rank_by is RankBy.ACCURACY else [groups[i] for i in order]

    def _scores(self, compiled: ov.CompiledModel, calls: list[ValidationCall], groups: list[Any],
                timed: bool) -> list[GroupScore]:
        current = frozenset(int8_layers(compiled, self.validator.known_layers))
        self.validator.ranking = True
        try:
            baseline, _ = self.validator(compiled, calls[0].samples)
        finally:
            self.validator.ranking = False
        if timed and self.int8_latency_ms is None:
            self.int8_latency_ms = float(np.median([c.reference_ms for c in calls]))
        return [
            GroupScore(frozenset(current - c.int8), c.metric - baseline,
                       (c.latency_ms - c.reference_ms) if timed else 0.0,
                       tuple(sorted(getattr(op, "node_name", str(op)) for op in getattr(g, "operations", ()))))
            for c, g in zip(calls, groups)
        ]

    def annotate(self, steps: list[RevertStep]) -> None:
        """Give each step the latency it was measured to add and the subset gain it was chosen for.

        Between two rankings NNCF pops candidates off the end of the ranked list, so the p-th step after
        ranking r took the p-th candidate from the end of that ranking.
        """
        taken: dict[int, int] = {}
        for step in steps:
            r = step.ranking_round
            p = taken.get(r, 0)
            taken[r] = p + 1
            if 1 <= r <= len(self.rounds) and p < len(self.rounds[r - 1]):
                chosen = self.rounds[r - 1][-(p + 1)]
                step.ranking_gain = chosen.gain
                step.cost_ms = chosen.cost_ms
                step.operations = list(chosen.operations)
