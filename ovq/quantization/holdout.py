"""Validation images kept out of quantization: a seeded share of the validation split, stratified by class.

Accuracy control ranks layers and checks its budget on the validation images, and the overflow-fix choice and
the collapse guard pick by them too, so the mAP they end on is optimistic by construction (measured: FastestDet
met ``--max-drop 0.002`` on ovq's own validation while an independent evaluation of the same images saw 0.0036).
The held-out share is scored once, after everything is decided.

Stratified so both parts see the classes alike: each image is put in the stratum of its rarest class (the
class found in the fewest images of the split; images without boxes form their own stratum), and each stratum
gives up its share, rounded so the total is exact. A class found in a single image can only be on one side.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from ovq.core.errors import DatasetError
from ovq.data.datasets import Dataset, Sample


@dataclass
class HeldOut:
    """The validation split minus the held-out images (``kept``), the held-out ones, and where they came from."""

    kept: Dataset
    held: Dataset
    source: str


def split_samples(samples: Sequence[Sample], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices of the samples kept and held out (``fraction`` of them, at least one each side), in sample order."""
    n = len(samples)
    if n < 2:
        raise ValueError(f"cannot hold out part of {n} image(s)")
    images_with = Counter(int(k) for s in samples for k in set(s.class_id.tolist()))
    strata: dict[int, list[int]] = {}
    for i, s in enumerate(samples):
        classes = set(s.class_id.tolist())
        key = min(classes, key=lambda k: (images_with[k], k)) if classes else -1
        strata.setdefault(int(key), []).append(i)
    total = min(n - 1, max(1, round(fraction * n)))
    rng = np.random.default_rng(seed)
    keys = sorted(strata)
    quota = {k: fraction * len(strata[k]) for k in keys}
    take = {k: int(np.floor(quota[k])) for k in keys}
    # the remaining images go to the strata with the largest remainders (seeded order among equals)
    tiebreak = rng.permutation(len(keys))
    order = sorted(range(len(keys)), key=lambda j: (-(quota[keys[j]] - take[keys[j]]), tiebreak[j]))
    short = total - sum(take.values())
    for j in order[:max(0, short)]:
        take[keys[j]] += 1
    held: list[int] = []
    for k in keys:
        members = list(strata[k])
        rng.shuffle(members)
        held += members[:take[k]]
    held_set = set(held)
    return [i for i in range(n) if i not in held_set], sorted(held_set)


def hold_out(val: Dataset, fraction: float, seed: int, where: object) -> HeldOut:
    """Split ``val`` into the images quantization may use and the ones it never sees; both need labelled boxes."""
    if len(val) < 2:
        raise DatasetError(f"{where}: split '{val.split}' has {len(val)} image(s); holdout needs at least 2")
    kept_idx, held_idx = split_samples(val.samples, fraction, seed)
    kept = replace(val, samples=[val.samples[i] for i in kept_idx])
    held = replace(val, samples=[val.samples[i] for i in held_idx])
    for part, name in ((kept, "left for quantization"), (held, "held out")):
        if part.boxes == 0:
            raise DatasetError(
                f"{where}: the {len(part)} images {name} from split '{val.split}' have no labelled boxes "
                f"(holdout {fraction:g}); use a larger validation split or another holdout fraction"
            )
    source = (f"{len(held)} of the {len(val)} images of split '{val.split}' (holdout {fraction:g}, seed {seed}, "
              "stratified by each image's rarest class)")
    return HeldOut(kept, held, source)
