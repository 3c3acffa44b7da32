"""The one data type every stage takes and returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Detections:
    """Detections of one image, boxes in original-image pixels.

    ``xyxy`` is ``(N, 4)`` float32, ``confidence`` ``(N,)`` float32, ``class_id`` ``(N,)`` int64,
    ``tracker_id`` ``(N,)`` int64 or ``None``. ``data`` holds extra per-detection arrays of length N.
    Boolean masks, index arrays and slices return a new ``Detections``.
    """

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray
    tracker_id: np.ndarray | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, dtype=np.float32)
        if self.xyxy.size == 0:
            self.xyxy = self.xyxy.reshape(0, 4)
        self.confidence = np.asarray(self.confidence, dtype=np.float32).reshape(-1)
        self.class_id = np.asarray(self.class_id, dtype=np.int64).reshape(-1)
        if self.xyxy.ndim != 2 or self.xyxy.shape[1] != 4:
            raise ValueError(f"Detections.xyxy must have shape (N, 4), got {self.xyxy.shape}")
        n = len(self.xyxy)
        if self.confidence.shape != (n,):
            raise ValueError(f"Detections.confidence must have shape ({n},), got {self.confidence.shape}")
        if self.class_id.shape != (n,):
            raise ValueError(f"Detections.class_id must have shape ({n},), got {self.class_id.shape}")
        if self.tracker_id is not None:
            self.tracker_id = np.asarray(self.tracker_id, dtype=np.int64).reshape(-1)
            if self.tracker_id.shape != (n,):
                raise ValueError(f"Detections.tracker_id must have shape ({n},), got {self.tracker_id.shape}")
        for key, value in self.data.items():
            if len(value) != n:
                raise ValueError(f"Detections.data['{key}'] must have length {n}, got {len(value)}")

    @classmethod
    def empty(cls) -> Detections:
        return cls(
            xyxy=np.zeros((0, 4), np.float32),
            confidence=np.zeros((0,), np.float32),
            class_id=np.zeros((0,), np.int64),
        )

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: Any) -> Detections:
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        return Detections(
            xyxy=self.xyxy[index],
            confidence=self.confidence[index],
            class_id=self.class_id[index],
            tracker_id=None if self.tracker_id is None else self.tracker_id[index],
            data={k: np.asarray(v)[index] for k, v in self.data.items()},
        )

    def to_records(self, labels: list[str] | None = None) -> list[dict[str, Any]]:
        """Plain JSON-friendly records, one per detection."""
        records = []
        for i in range(len(self)):
            cid = int(self.class_id[i])
            record: dict[str, Any] = {
                "class_id": cid,
                "label": labels[cid] if labels and 0 <= cid < len(labels) else str(cid),
                "confidence": round(float(self.confidence[i]), 5),
                "xyxy": [round(float(v), 2) for v in self.xyxy[i]],
            }
            if self.tracker_id is not None:
                record["tracker_id"] = int(self.tracker_id[i])
            records.append(record)
        return records
