"""The demo detector's training script: deterministic, and its export is a model ovq reads as it is."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_training_is_bit_reproducible_and_exports_a_yolo_layout(tmp_path):
    pytest.importorskip("torch", reason="the demo model's training needs the 'train' extra (torch, onnx)")
    pytest.importorskip("onnx", reason="the demo model's ONNX export needs the 'train' extra (torch, onnx)")
    sys.path.insert(0, str(ROOT / "pipelines" / "demo_model"))
    try:
        from train import main
    finally:
        sys.path.pop(0)
    runs = [main(out=tmp_path / f"run{i}", epochs=1, n_train=64, n_val=8, n_calib=2, batch=16) for i in (1, 2)]
    digests = [hashlib.sha256((tmp_path / f"run{i}" / "demo.onnx").read_bytes()).hexdigest() for i in (1, 2)]
    assert digests[0] == digests[1], "same seed and settings must give the same weights"
    assert runs[0]["mAP50-95"] == runs[1]["mAP50-95"] and runs[0]["steps"] == 4

    import ovq
    from ovq.data.synth import CLASSES

    xml = ovq.convert(tmp_path / "run1" / "demo.onnx", tmp_path / "ir", family="yolo", labels=list(CLASSES))
    det = ovq.Detector(xml, cache=False)
    assert tuple(det.model.outputs[0].get_shape()) == (1, 9, 2100) and det.labels == list(CLASSES)
    assert det.info.input_size == (320, 320)
