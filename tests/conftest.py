"""Shared fixtures: the real assets in ../shared/assets (skipped when absent) and tiny models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ovq.detections import Detections

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT.parent / "shared" / "assets"


@pytest.fixture(scope="session")
def assets() -> Path:
    if not (ASSETS / "README.md").exists():
        pytest.skip(f"shared assets not found at {ASSETS} (they live beside the project, not in it)")
    return ASSETS


def make_dets(boxes, scores=None, classes=None, tracker_id=None) -> Detections:
    """A small helper to build Detections in tests."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    n = len(boxes)
    return Detections(
        xyxy=boxes,
        confidence=np.ones(n, np.float32) if scores is None else np.asarray(scores, np.float32),
        class_id=np.zeros(n, np.int64) if classes is None else np.asarray(classes, np.int64),
        tracker_id=tracker_id,
    )
