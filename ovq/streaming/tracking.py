"""Multi-object tracking: stable per-stream track IDs in ``Detections.tracker_id``.

The association is ByteTrack as implemented by Roboflow's ``trackers`` package (Apache-2.0, the maintained
successor of supervision's ByteTrack, which supervision 0.27+ no longer ships); install it with
``pip install 'ovq[track]'``. One :class:`ByteTracker` per stream: IDs never leak between streams.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ovq.core.detections import Detections
from ovq.core.errors import DependencyError

logger = logging.getLogger(__name__)

_INSTALL_HINT = "tracking needs the 'trackers' package (ByteTrack): pip install 'ovq[track]' or pip install trackers"


def _import_trackers() -> tuple[Any, Any]:
    try:
        import supervision as sv
        from trackers import ByteTrackTracker
    except ImportError as exc:
        raise DependencyError(f"{_INSTALL_HINT} ({exc})") from None
    return sv, ByteTrackTracker


class ByteTracker:
    """ByteTrack for one stream: ``update(dets) -> dets`` with ``tracker_id`` set (``-1``: not yet confirmed).

    Detections come back in their input order. ``frame_rate`` scales how long a lost track is kept
    (``lost_track_buffer`` frames at 30 fps). With ``timestamp`` (seconds) passed to :meth:`update`, motion is
    predicted over the real time between frames, so a live stream that dropped frames still associates well.
    """

    def __init__(
        self,
        *,
        frame_rate: float = 30.0,
        lost_track_buffer: int = 30,
        track_activation_threshold: float = 0.5,
        high_conf_det_threshold: float = 0.5,
        minimum_iou_threshold: float = 0.1,
        minimum_consecutive_frames: int = 2,
    ) -> None:
        self._sv, tracker_cls = _import_trackers()
        self._tracker = tracker_cls(
            lost_track_buffer=lost_track_buffer,
            frame_rate=float(frame_rate),
            track_activation_threshold=track_activation_threshold,
            minimum_consecutive_frames=minimum_consecutive_frames,
            minimum_iou_threshold=minimum_iou_threshold,
            high_conf_det_threshold=high_conf_det_threshold,
        )

    def update(self, dets: Detections, *, timestamp: float | None = None) -> Detections:
        n = len(dets)
        sv_dets = self._sv.Detections(
            xyxy=dets.xyxy.astype(np.float32, copy=True).reshape(-1, 4),
            confidence=dets.confidence.astype(np.float32, copy=True),
            class_id=dets.class_id.astype(int, copy=True),
            data={"ovq_index": np.arange(n)},
        )
        tracked = self._tracker.update(sv_dets, timestamp=timestamp)
        ids = np.full(n, -1, np.int64)
        if len(tracked):
            order = np.asarray(tracked.data["ovq_index"], np.int64)
            ids[order] = np.asarray(tracked.tracker_id, np.int64)
        return Detections(
            xyxy=dets.xyxy, confidence=dets.confidence, class_id=dets.class_id, tracker_id=ids, data=dict(dets.data)
        )

    def reset(self) -> None:
        self._tracker.reset()


def check_tracking_available() -> None:
    """Raise :class:`DependencyError` with the install command when tracking cannot run."""
    _import_trackers()
