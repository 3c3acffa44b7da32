"""What the pipeline hands its sinks: one :class:`FrameResult` per frame, to every :class:`Sink`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from ovq.core.detections import Detections


@dataclass
class FrameResult:
    """One frame's result, as every sink receives it."""

    stream: str  # stream name ("s0", or the name given)
    source: str  # the source string (passwords redacted)
    frame_index: int  # index of the frame in its source; gaps in a live stream are dropped frames
    timestamp: float  # wall time of capture (time.time())
    frame: np.ndarray  # the BGR frame as decoded (not annotated; do not modify)
    detections: Detections
    latency_ms: float  # capture -> result (after decoding and tracking, before the sinks)
    labels: list[str] | None = None  # the model's class names
    fps: float | None = None  # the source's nominal frame rate when known


@runtime_checkable
class Sink(Protocol):
    """Receives every result of every stream, in frame order per stream, from one thread.

    Optional: ``start(stream_names)``, called once the model, device and sources are open (open files there,
    not before); ``abort()``, called instead of ``close()`` when the run failed (replace no earlier output);
    ``written``, a mapping of the files finished by ``close()`` to what they hold.
    """

    def write(self, result: FrameResult) -> None: ...

    def close(self) -> None: ...
