"""Which variant of its detector a pipeline runs: the resize and the NMS inside the graph, or in Python.

A pipeline's detector is a :class:`~ovq.model.detector.Detector` or anything with its shape (a remote one has no
graph of its own, so neither method); the choice is made once, when the sources are open and their frame sizes
known. Resizing in the graph: why Python is the CPU's default, :class:`ovq.streaming.pipeline.Pipeline`.

Decoding and NMS in the graph (the families with NMS: yolo, yolov5, yolox, yolox_decoded, fastestdet) are the default
on the CPU, where they were measured; on GPU/NPU NMS stays in Python. On the shared person video paced at a camera's rate (2-core
EPYC Zen 3, f32, a shared VM, 6 interleaved rounds): FastestDet at 60 fps took 13.4 instead of 14.1 ms of CPU a frame
(lower in all 6 pairs), YOLOX-Nano at 20 fps the same (37.7 / 36.9, ratios 0.97-1.07). Flat out, FastestDet's fps
moved within this VM's noise (12 paired ``ovq run`` rounds: median ratio 0.99). YOLOv8n at 640 (2-core EPYC Zen 5,
bf16; the appended ops ran in f32) paced at 20 fps: the same either way (43.3 / 42.7 ms, 4 pairs).
"""

from __future__ import annotations

import logging
from typing import Any

from ovq.core.errors import ConfigError

logger = logging.getLogger(__name__)


def with_nms(detector: Any, wanted: bool | None, conf: float | None) -> Any:
    """``detector`` with decoding and NMS in its graph when ``wanted`` (``None``: when it can and runs on the
    CPU); :class:`ConfigError` when wanted and it cannot."""
    why_not = getattr(detector, "why_not_nms_in_graph", None)
    if wanted is False or why_not is None:
        if wanted:
            raise ConfigError("NMS in the graph: this detector has no graph of its own (a remote model)")
        return detector
    reason = why_not(conf)
    if wanted is None:
        if reason or not runs_on_cpu(detector):
            return detector
    elif reason:
        raise ConfigError(f"NMS in the graph: {reason}")
    return detector.with_nms_in_graph(conf)


def with_resize(detector: Any, wanted: bool | None, sizes: set[tuple[int, int] | None]) -> tuple[Any, tuple[int, int] | None]:
    """``detector`` resizing in its graph from the one frame size all sources share, when ``wanted`` (``None``:
    on GPU and NPU), and that size; else ``detector`` and ``None``."""
    for_source = getattr(detector, "for_source", None)
    if wanted is None:
        wanted = str(getattr(detector, "device", "")).upper().startswith(("GPU", "NPU"))
    if not wanted or for_source is None or None in sizes or len(sizes) != 1:
        if wanted and len(sizes - {None}) > 1:
            logger.info("resizing in Python: the sources' frame sizes differ (%s)", sorted(sizes - {None}))
        return detector, None
    (size,) = sizes
    return for_source(*size), size


def runs_on_cpu(detector: Any) -> bool:
    """Whether ``detector`` runs on the CPU: its device is, or AUTO has nothing else to choose from."""
    device = str(getattr(detector, "device", "")).upper()
    if device.startswith("CPU"):
        return True
    core = getattr(detector, "core", None)
    if not device.startswith("AUTO") or core is None:
        return False
    return all(d.upper().startswith("CPU") for d in core.available_devices)
