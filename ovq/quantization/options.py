"""What ``ovq quantize`` can be asked: one options type for the CLI, pipeline YAML and the Python API.

Each caller builds a :class:`QuantizeOptions` its own way (flags, a YAML mapping, keyword arguments) and
:meth:`QuantizeOptions.validate` checks it once. Errors name the option (``max_drop``), never a CLI flag,
so a message reads right whichever way the options came in.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import Enum
from pathlib import Path
from typing import Any

from ovq.core.errors import ConfigError, unknown_key_message
from ovq.data.layout import data_fingerprint


class Preset(str, Enum):
    """NNCF presets: symmetric everywhere (fastest on CPU), or asymmetric activations."""

    PERFORMANCE = "performance"
    MIXED = "mixed"


class DropType(str, Enum):
    ABSOLUTE = "absolute"
    RELATIVE = "relative"


class RankBy(str, Enum):
    """Order in which accuracy control reverts groups of layers to float.

    ``accuracy``: NNCF's order, the group whose revert restores the most mAP first.
    ``accuracy-per-latency``: the most mAP restored per millisecond of latency the revert adds (each
    candidate timed against the model it would replace), so the budget is met with the reverts that cost
    least speed.
    """

    ACCURACY = "accuracy"
    ACCURACY_PER_LATENCY = "accuracy-per-latency"


class Precision(str, Enum):
    """The inference precision the model will run at, validated at and stored in the IR."""

    DEFAULT = "default"  # the device's own: bf16 on CPUs with AMX or AVX512-BF16, f32 on others
    F32 = "f32"
    BF16 = "bf16"


class BiasCorrection(str, Enum):
    """NNCF's bias correction: ``auto`` takes what measured best for the model family (FAST_BIAS_CORRECTION_FAMILIES)."""

    AUTO = "auto"
    FAST = "fast"
    FULL = "full"


class OverflowFix(str, Enum):
    """NNCF's overflow fix (7-bit weights), for CPUs without VNNI whose INT8 sums can saturate.

    ``auto``: NNCF's default (the first layer) where INT8 sums are exact; on a CPU without VNNI both the first
    layer and every layer are measured and the better kept (see :mod:`ovq.quantization.overflow`).
    """

    AUTO = "auto"
    FIRST_LAYER = "first-layer"
    ENABLE = "enable"
    DISABLE = "disable"


# Families whose plain INT8 holds accuracy better with NNCF's fast bias correction than with its full one.
# Measured on coco128 (calibration train2017, validation val2017, bf16 on an AMX Xeon), three calibration subset
# sizes (128 / 96 / 64 images), plain INT8 mAP50-95:
#   YOLOX-Nano (FP 0.3364): full 0.3335 / 0.3254 / 0.3310, fast 0.3362 / 0.3346 / 0.3378
#   FastestDet (FP 0.2056): full 0.2035 / - / 0.2082,      fast 0.1992 / - / 0.2005
# Everything else gets the full correction, which is also what NNCF does by default.
FAST_BIAS_CORRECTION_FAMILIES = frozenset({"yolox", "yolox_decoded"})


@dataclass
class AdvancedQuantizeOptions:
    """Rarely changed knobs."""

    ranking_subset_size: int = 64
    max_num_iterations: int | None = None
    num_ranking_workers: int = 1
    bias_correction: BiasCorrection | str = BiasCorrection.AUTO
    overflow_fix: OverflowFix | str = OverflowFix.AUTO
    keep_decode_tail_float: bool = True
    bench_seconds: float = 5.0  # per throughput measurement in the report (0: none)
    eval_conf: float = 0.001
    latency_runs: int = 25  # accuracy control times every candidate revert: median of this many (0: off)
    holdout_seed: int = 0  # which validation images ``holdout`` keeps out
    bootstrap_rounds: int = 1000  # resamples of the images behind the drop's interval in the report (0: none)
    collapse_guard: bool = True  # a plain INT8 model that collapsed is retried with the detection head float
    collapse_below: float = 0.5  # collapsed: INT8 keeps less than this share of FP's mAP (or of its recall)


@dataclass
class QuantizeOptions:
    """Everything :func:`ovq.quantize` can be asked, checked by :meth:`validate`.

    ``max_drop``: with it, NNCF's accuracy control keeps the mAP50-95 drop within it (``drop_type`` absolute or
    relative), validated on ``val_split`` at ``precision`` (the precision the model will run at); without it a
    plain INT8 quantization. ``rank_by`` (with ``max_drop``) orders the reverts, see :class:`RankBy`.

    ``holdout``: the fraction of ``val_split`` kept out of everything quantization decides (accuracy control,
    the overflow-fix choice, the collapse guard) and scored once at the end, FP and INT8, so the report says
    whether the budget held on images nothing was tuned on; ``test_split`` does the same with a named split.
    ``recalibrate_threshold``: store in the IR the confidence threshold at which INT8 finds as many objects as
    the FP model did at its own (when INT8 shifted its confidences).
    """

    max_drop: float | None = None
    drop_type: DropType | str = DropType.ABSOLUTE
    calib_split: str = "train"
    val_split: str = "val"
    subset_size: int = 300
    preset: Preset | str = Preset.PERFORMANCE
    ignore: tuple[str, ...] = ()
    device: str = "CPU"
    precision: Precision | str = Precision.DEFAULT
    rank_by: RankBy | str = RankBy.ACCURACY
    holdout: float | None = None
    test_split: str | None = None
    recalibrate_threshold: bool = False
    advanced: AdvancedQuantizeOptions = field(default_factory=AdvancedQuantizeOptions)

    def validate(self) -> QuantizeOptions:
        """A checked copy with every choice as its Enum; :class:`ConfigError` naming the option otherwise."""
        adv = self.advanced
        if not isinstance(adv, AdvancedQuantizeOptions):
            raise ConfigError(f"advanced: expected AdvancedQuantizeOptions, got {type(adv).__name__}")
        checked_adv = dataclasses.replace(
            adv,
            bias_correction=_choice(BiasCorrection, "bias_correction", adv.bias_correction or "auto"),
            overflow_fix=_choice(OverflowFix, "overflow_fix", adv.overflow_fix or "auto"),
            ranking_subset_size=_integer("ranking_subset_size", adv.ranking_subset_size, low=1),
            num_ranking_workers=_integer("num_ranking_workers", adv.num_ranking_workers, low=1),
            latency_runs=_integer("latency_runs", adv.latency_runs, low=0),
            bench_seconds=_number("bench_seconds", adv.bench_seconds, low=0.0),
            eval_conf=_number("eval_conf", adv.eval_conf, low=0.0, high=1.0),
            holdout_seed=_integer("holdout_seed", adv.holdout_seed, low=0),
            bootstrap_rounds=_integer("bootstrap_rounds", adv.bootstrap_rounds, low=0),
            collapse_guard=_flag("collapse_guard", adv.collapse_guard),
            collapse_below=_number("collapse_below", adv.collapse_below, low=0.0, high=1.0),
        )
        if adv.max_num_iterations is not None:
            _integer("max_num_iterations", adv.max_num_iterations, low=1)
        checked = dataclasses.replace(
            self,
            max_drop=None if self.max_drop is None else _number("max_drop", self.max_drop, low=0.0, high=1.0),
            drop_type=_choice(DropType, "drop_type", self.drop_type),
            calib_split=_text("calib_split", self.calib_split),
            val_split=_text("val_split", self.val_split),
            subset_size=_integer("subset_size", self.subset_size, low=1),
            preset=_choice(Preset, "preset", self.preset),
            ignore=_patterns(self.ignore),
            device=_text("device", self.device),
            precision=_choice(Precision, "precision", self.precision),
            rank_by=_choice(RankBy, "rank_by", self.rank_by),
            holdout=None if self.holdout is None else _fraction("holdout", self.holdout),
            test_split=None if self.test_split is None else _text("test_split", self.test_split),
            recalibrate_threshold=_flag("recalibrate_threshold", self.recalibrate_threshold),
            advanced=checked_adv,
        )
        _check_splits(checked)
        if checked.rank_by is not RankBy.ACCURACY and checked.max_drop is None:
            raise ConfigError(f"rank_by: {checked.rank_by.value} orders the reverts of accuracy control: it needs max_drop")
        if checked.rank_by is RankBy.ACCURACY_PER_LATENCY and checked_adv.latency_runs == 0:
            raise ConfigError("rank_by: accuracy-per-latency needs revert timing (latency_runs > 0)")
        return checked

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> QuantizeOptions:
        """Options from a flat mapping (a pipeline YAML's ``quantize:`` section, minus its ``data``/``output``).

        Keys are the field names of this class and of :class:`AdvancedQuantizeOptions`; an unknown key is an
        error with a close-match suggestion. Values are checked by :meth:`validate`.
        """
        top = {f.name for f in fields(cls)} - {"advanced"}
        advanced = {f.name for f in fields(AdvancedQuantizeOptions)}
        kwargs: dict[str, Any] = {}
        adv: dict[str, Any] = {}
        for key, value in data.items():
            if key in top:
                kwargs[key] = tuple(value) if key == "ignore" and isinstance(value, list) else value
            elif key in advanced:
                adv[key] = value
            else:
                raise ConfigError(unknown_key_message(str(key), top | advanced))
        return cls(**kwargs, advanced=AdvancedQuantizeOptions(**adv)).validate()

    def to_dict(self) -> dict[str, Any]:
        """Plain data (Enums as their values), e.g. for a resolved pipeline config."""
        out = {f.name: _plain(getattr(self, f.name)) for f in fields(self) if f.name != "advanced"}
        out.update({f.name: _plain(getattr(self.advanced, f.name)) for f in fields(self.advanced)})
        return out


# options that change only the report, not the INT8 model made: a change of one of them does not make it again
REPORT_ONLY = frozenset({"bench_seconds", "bootstrap_rounds", "num_ranking_workers"})


def options_asked(opts: QuantizeOptions) -> dict[str, Any]:
    """The options that decide the INT8 model, as asked (``precision: default``, not what it resolved to), for
    the provenance: a pipeline reuses its quantized model only while they are the same
    (:func:`ovq.deployment.build.settings_changed`)."""
    return {k: v for k, v in opts.to_dict().items() if k not in REPORT_ONLY}


def data_used(data: str | Path, opts: QuantizeOptions, *, skip: str | Path | None = None) -> dict[str, Any]:
    """What decides the images quantization calibrates and validates on: the data (the path and a fingerprint of
    its files, :func:`~ovq.data.layout.data_fingerprint`; ``skip``: the output folder) and the options that pick
    images from it, as asked. Stored in the provenance; a pipeline reuses its quantized model only while these
    are the same (:func:`ovq.deployment.build.settings_changed`)."""
    path = Path(data)
    return {
        "path": os.path.realpath(path),
        "fingerprint": data_fingerprint(path, skip=None if skip is None else Path(skip)),
        "calib_split": opts.calib_split,
        "subset_size": opts.subset_size,
        "val_split": opts.val_split,
        "holdout": opts.holdout,
        "holdout_seed": opts.advanced.holdout_seed if opts.holdout is not None else None,
        "test_split": opts.test_split,
    }


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple):
        return list(value)
    return value


def _choice(kind: type[Enum], name: str, value: Any) -> Any:
    try:
        return kind(value.lower() if isinstance(value, str) else value)
    except ValueError:
        allowed = ", ".join(str(m.value) for m in kind)  # type: ignore[attr-defined]
        raise ConfigError(f"{name}: expected one of {allowed}, got {value!r}") from None


def _number(name: str, value: Any, *, low: float | None = None, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name}: expected a number, got {value!r}")
    value = float(value)
    if (low is not None and value < low) or (high is not None and value > high) or math.isnan(value):
        bounds = " and ".join(b for b in (f">= {low:g}" if low is not None else "",
                                          f"<= {high:g}" if high is not None else "") if b)
        raise ConfigError(f"{name}: expected a number {bounds}, got {value:g}")
    return value


def _integer(name: str, value: Any, *, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name}: expected an integer, got {value!r}")
    if value < low:
        raise ConfigError(f"{name}: expected an integer >= {low}, got {value}")
    return value


def _fraction(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < float(value) < 1.0:
        raise ConfigError(f"{name}: expected a fraction between 0 and 1 (exclusive), e.g. 0.5, got {value!r}")
    return float(value)


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{name}: expected true or false, got {value!r}")
    return value


def _check_splits(opts: QuantizeOptions) -> None:
    """The held-out images come from one place, never a split quantization already uses."""
    if opts.holdout is not None and opts.test_split is not None:
        raise ConfigError("holdout: give holdout (a share of val_split) or test_split (a split of its own), not both")
    if opts.test_split is not None and opts.test_split in (opts.val_split, opts.calib_split):
        used = "val_split" if opts.test_split == opts.val_split else "calib_split"
        raise ConfigError(f"test_split: '{opts.test_split}' is also the {used}; the test images must be ones "
                          "quantization never sees")


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{name}: expected a non-empty string, got {value!r}")
    return value


def _patterns(values: Any) -> tuple[str, ...]:
    if isinstance(values, str) or not isinstance(values, (list, tuple)):
        raise ConfigError(f"ignore: expected a list of layer-name patterns, got {values!r}")
    out = []
    for i, p in enumerate(values):
        text = _text(f"ignore[{i}]", p)
        try:
            re.compile(text)
        except re.error as exc:
            raise ConfigError(f"ignore[{i}]: '{text}' is not a valid regular expression ({exc})") from None
        out.append(text)
    return tuple(out)
