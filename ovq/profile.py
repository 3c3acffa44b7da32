"""Per-layer latency from the device's performance counters (``PERF_COUNT``).

Used to put a price on each layer the accuracy control may revert to float: the time the layer
takes in the float model (at the deployment precision) minus its time in the INT8 model. The
device fuses ops, so a runtime node's time is attributed to the original convolutions / matmuls it
holds (``originalLayersNames``); time of nodes that hold none (reorders, converts, pooling) is not
attributed. The numbers are estimates of where time goes, not a benchmark: the report states the
measured throughput of the final model next to them.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import openvino as ov

from ovq.runtime import compile_model

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LayerTimes:
    """Median time per inference (ms) of each original layer, and of the whole inference."""

    per_layer: dict[str, float]
    total_ms: float
    precision: str


def _strip(name: str) -> str:
    return name.removesuffix("/WithoutBiases")


def layer_times(
    model: ov.Model,
    layers: set[str],
    *,
    device: str = "CPU",
    config: dict[str, str] | None = None,
    runs: int = 30,
    seed: int = 0,
) -> LayerTimes:
    """Median per-layer time (ms) over ``runs`` synchronous inferences of ``model`` on random input.

    ``layers`` are the original layer names to report (see :func:`ovq.quantize.quantizable_layers`);
    each runtime node's time is split evenly among the names of ``layers`` it was fused from.
    """
    from ovq.runtime import execution_precision

    cfg = {**(config or {}), "PERF_COUNT": "YES", "PERFORMANCE_HINT": "LATENCY"}
    compiled = compile_model(model, device, config=cfg, cache=False)
    owners: dict[str, list[str]] = {}
    for op in compiled.get_runtime_model().get_ops():
        rt = op.get_rt_info()
        if "originalLayersNames" not in rt:
            continue
        names = {_strip(n) for n in rt["originalLayersNames"].astype(str).split(",") if n}
        held = sorted(names & layers)
        if held:
            owners[op.get_friendly_name()] = held
    request = compiled.create_infer_request()
    rng = np.random.default_rng(seed)
    for port in compiled.inputs:
        shape = list(port.get_partial_shape().to_shape())
        dtype = port.get_element_type().to_dtype()
        if np.issubdtype(dtype, np.integer):
            data = rng.integers(0, 256, size=shape).astype(dtype)
        else:
            data = rng.random(size=shape).astype(dtype)
        request.set_tensor(port, ov.Tensor(data))
    request.infer()  # warm-up
    samples: dict[str, list[float]] = defaultdict(list)
    totals: list[float] = []
    for _ in range(max(1, runs)):
        request.infer()
        per_run: dict[str, float] = defaultdict(float)
        total = 0.0
        for info in request.profiling_info:
            ms = info.real_time.total_seconds() * 1e3
            total += ms
            for name in owners.get(info.node_name, ()):
                per_run[name] += ms / len(owners[info.node_name])
        for name in {n for held in owners.values() for n in held}:
            samples[name].append(per_run.get(name, 0.0))
        totals.append(total)
    return LayerTimes(
        per_layer={name: float(np.median(v)) for name, v in samples.items()},
        total_ms=float(np.median(totals)),
        precision=execution_precision(compiled),
    )


def revert_costs(float_times: LayerTimes, int8_times: LayerTimes) -> dict[str, float]:
    """Estimated latency (ms) added by running each layer in float instead of INT8 (may be negative)."""
    names = set(float_times.per_layer) | set(int8_times.per_layer)
    return {n: float_times.per_layer.get(n, 0.0) - int8_times.per_layer.get(n, 0.0) for n in names}
