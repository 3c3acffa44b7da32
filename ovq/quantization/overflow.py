"""NNCF's overflow fix, chosen for the CPU the model will run on.

On a CPU without VNNI (see :func:`ovq.runtime.cpu.int8_kernels`) INT8 convolutions sum pairs of u8 x s8
products into saturating int16; NNCF's overflow fix halves the weight range (7 bits) so they cannot saturate,
by default on the first layer only. Which is right depends on the model. Measured on an AVX2 EPYC (Zen 3),
coco128 val2017 at f32, plain INT8 (FP / first layer / every layer / none):

    YOLOX-Nano  0.3378 / 0.1174 / 0.3270 / 0.1012   (every layer needed: its Swish activations are signed)
    FastestDet  0.2067 / 0.2010 / 0.1842 / 0.1745   (the first layer is enough, and costs less)

So on such a CPU both are quantized and scored at the deployment precision and the better is kept (every layer
when there are no labels to score with). Where INT8 sums are exact (VNNI, AMX) NNCF's default is kept: it was
what every earlier measurement on those CPUs used.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import openvino as ov

from ovq.quantization.options import OverflowFix
from ovq.runtime.cpu import int8_kernels
from ovq.runtime.devices import parse_device

logger = logging.getLogger(__name__)

NNCF_NAMES = {OverflowFix.FIRST_LAYER: "first_layer_only", OverflowFix.ENABLE: "enable",
              OverflowFix.DISABLE: "disable"}


def overflow_fix_candidates(choice: OverflowFix | str | None, device: str,
                            flags: Sequence[str] | None = None) -> list[OverflowFix]:
    """The settings to try for ``device``: the one asked for, or (``auto``) by the CPU's INT8 kernels."""
    choice = OverflowFix(choice or OverflowFix.AUTO)
    if choice is not OverflowFix.AUTO:
        return [choice]
    spec = parse_device(device)
    on_cpu = spec.names_family("CPU") or (spec.is_virtual and not spec.targets)
    if on_cpu and int8_kernels(flags) == "no-vnni":
        return [OverflowFix.FIRST_LAYER, OverflowFix.ENABLE]
    return [OverflowFix.FIRST_LAYER]


def nncf_parameters(fix: OverflowFix, *, compress_weights: bool = True):
    """NNCF's ``AdvancedQuantizationParameters`` with this overflow fix; ``compress_weights=False`` leaves the
    weights in float behind their FakeQuantize nodes (what NNCF's accuracy control reverts layers in)."""
    from nncf.openvino.quantization.backend_parameters import BackendParameters
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.advanced_parameters import OverflowFix as NncfOverflowFix

    backend = {} if compress_weights else {BackendParameters.COMPRESS_WEIGHTS: False}
    return AdvancedQuantizationParameters(overflow_fix=NncfOverflowFix(NNCF_NAMES[fix]), backend_params=backend)


def compress_weights(model: ov.Model) -> None:
    """Store the weights of ``model``'s quantized layers as INT8 (in place), what ``nncf.quantize`` does last."""
    from openvino._offline_transformations import compress_quantize_weights_transformation

    compress_quantize_weights_transformation(model)


@dataclass
class OverflowChoice:
    """The overflow fix to use, the mAP each tried setting scored, and the plain INT8 model made with it."""

    fix: OverflowFix
    trials: dict[str, float] = field(default_factory=dict)
    model: ov.Model | None = None


def choose_overflow_fix(
    candidates: list[OverflowFix],
    quantize_with: Callable[[OverflowFix], ov.Model],
    score: Callable[[ov.Model], float] | None,
) -> OverflowChoice:
    """The first candidate when there is one; else each is quantized with ``quantize_with`` and scored with
    ``score`` (mAP at the deployment precision), and the best is kept (ties keep the earlier, NNCF's default).
    Without ``score`` (no labels) every layer gets the fix: it cannot saturate, and costs little."""
    if len(candidates) == 1:
        return OverflowChoice(candidates[0])
    if score is None:
        logger.warning(
            "this CPU has no VNNI: its INT8 sums can saturate, so the overflow fix goes on every layer "
            "(with labelled validation images ovq would measure whether the first layer is enough)"
        )
        return OverflowChoice(OverflowFix.ENABLE)
    logger.info("this CPU has no VNNI (INT8 sums can saturate): trying the overflow fix on %s",
                " and ".join(c.value for c in candidates))
    best: OverflowChoice | None = None
    trials: dict[str, float] = {}
    for fix in candidates:
        model = quantize_with(fix)
        trials[fix.value] = score(model)
        logger.info("overflow fix on %s: INT8 mAP50-95 %.4f", fix.value, trials[fix.value])
        if best is None or trials[fix.value] > trials[best.fix.value]:
            best = OverflowChoice(fix, trials, model)
    assert best is not None
    return best
