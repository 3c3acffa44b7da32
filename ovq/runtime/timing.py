"""Latency measurements used to price the layers accuracy control puts back to float.

A revert's cost is measured, not summed from per-layer counters: putting a layer back to float also
adds reorders and precision conversions at the borders of the INT8 regions and can break the device's
fusions, and that time belongs to no layer. So every candidate model NNCF compiles for ranking is timed
as it is (batch 1, synchronous, the device's default LATENCY hint) and compared with the model it
would replace.
"""

from __future__ import annotations

import time

import numpy as np
import openvino as ov


def paired_latency_ms(
    candidate: ov.CompiledModel, reference: ov.CompiledModel, inputs: np.ndarray, runs: int = 25, block: int = 5
) -> tuple[float, float]:
    """Median batch-1 latency (ms) of ``candidate`` and of ``reference``, timed in alternating blocks.

    Alternating cancels what drifts while a ranking runs (clock, other processes), which otherwise
    shifts every candidate of a ranking against a reference timed once.
    """
    runs = max(1, runs)
    pairs = []
    for compiled in (candidate, reference):
        request = compiled.create_infer_request()
        request.set_tensor(compiled.inputs[0], ov.Tensor(np.ascontiguousarray(inputs)))
        for _ in range(3):
            request.infer()
        pairs.append(request)
    times: tuple[list[float], list[float]] = ([], [])
    done = 0
    while done < runs:
        n = min(block, runs - done)
        for request, bucket in zip(pairs, times):
            for _ in range(n):
                start = time.perf_counter()
                request.infer()
                bucket.append(time.perf_counter() - start)
        done += n
    return float(np.median(times[0]) * 1e3), float(np.median(times[1]) * 1e3)
