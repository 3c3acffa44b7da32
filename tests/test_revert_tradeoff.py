"""Pricing reverts in latency and choosing them by accuracy gained per latency lost."""

from __future__ import annotations

import json

import cv2
import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from ovq.cli import main
from ovq.demo import DEMO_MODEL
from ovq.profile import layer_times, revert_costs
from ovq.quantize import AdvancedQuantizeOptions, RankBy, _Call, _Validator, quantize


def _three_convs() -> ov.Model:
    rng = np.random.default_rng(0)
    x = ops.parameter([1, 3, 64, 64], ov.Type.f32, name="x")
    y = x
    for i, (cin, cout) in enumerate(((3, 16), (16, 32), (32, 8))):
        w = ops.constant(rng.normal(size=(cout, cin, 3, 3)).astype(np.float32))
        y = ops.relu(ops.convolution(y, w, [1, 1], [1, 1], [1, 1], [1, 1], name=f"conv{i}"))
    return ov.Model([y], [x])


def test_layer_times_price_every_convolution():
    model = _three_convs()
    names = {"conv0", "conv1", "conv2"}
    t = layer_times(model, names, config={"INFERENCE_PRECISION_HINT": "f32"}, runs=5)
    assert set(t.per_layer) == names
    assert all(v >= 0 for v in t.per_layer.values())
    assert 0 < sum(t.per_layer.values()) <= t.total_ms + 1e-6
    assert t.precision == "f32"
    # a name the model does not have is not invented
    assert "conv9" not in layer_times(model, names | {"conv9"}, runs=2).per_layer


def test_revert_costs_are_float_minus_int8():
    from ovq.profile import LayerTimes

    fp = LayerTimes({"a": 1.0, "b": 0.5}, 2.0, "bf16")
    q = LayerTimes({"a": 0.4, "b": 0.7, "c": 0.1}, 1.5, "bf16")
    assert revert_costs(fp, q) == pytest.approx({"a": 0.6, "b": -0.2, "c": -0.1})


def _validator(max_drop: float) -> _Validator:
    v = _Validator(detector=None, known_layers=set(), expected_precision="bf16", conf=0.001, total=100,  # type: ignore[arg-type]
                   fp_result=(0.50, []), max_drop=max_drop)
    return v


def test_revert_steps_follow_nncfs_greedy_rule():
    """Worse than before -> undone, unless the previous step was undone; a met budget is always kept."""
    v = _validator(max_drop=0.01)
    every = frozenset("abcd")
    v.calls = [
        _Call(100, 0.50, frozenset(), 0.0),  # FP (no INT8 layer): not a step
        _Call(100, 0.470, every, 0.0),  # fully INT8
        _Call(16, 0.9, every - {"a"}, 0.0),  # a ranking call: not a step
        _Call(100, 0.475, every - {"a"}, 0.0),  # 1: better -> kept
        _Call(100, 0.460, every - {"a", "b"}, 0.0),  # 2: worse -> undone
        _Call(100, 0.455, every - {"a", "c"}, 0.0),  # 3: worse, but after an undo -> kept
        _Call(100, 0.495, every - {"a", "c", "d"}, 0.0),  # 4: budget met -> kept
    ]
    steps = v.revert_steps(final_int8={"b"})
    assert [s.layers for s in steps] == [["a"], ["b"], ["c"], ["d"]]
    assert [s.kept for s in steps] == [True, False, True, True]
    assert [s.metric for s in steps] == [0.475, 0.460, 0.455, 0.495]


def _priority(g: dict, free: float) -> tuple:
    if g["gain"] <= 0:
        return (0, g["gain"], 0.0)
    if g["est_latency_added_ms"] <= free:
        return (2, g["gain"], 0.0)
    return (1, g["gain"] / g["est_latency_added_ms"], g["gain"])


@pytest.mark.slow
def test_rank_by_accuracy_per_latency_on_the_demo_model(tmp_path):
    from ovq.synth import write_yolo_dataset

    data = write_yolo_dataset(tmp_path / "data", n_train=0, n_val=96, n_calib=48, seed=3)
    out = tmp_path / "q"
    result = quantize(
        DEMO_MODEL, data, out, max_drop=0.0, calib_split="calib", val_split="val", rank_by="accuracy-per-latency",
        advanced=AdvancedQuantizeOptions(bench_seconds=0.0, ranking_subset_size=32, max_num_iterations=3), progress=False,
    )
    report = json.loads((out / "report.json").read_text())
    assert report["quantization"]["rank_by"] == RankBy.ACCURACY_PER_LATENCY.value
    est = report["latency_estimate"]
    assert est["fp_ms"] > 0 and est["int8_all_layers_ms"] > 0
    steps = report["reverted"]
    assert 1 <= len(steps) <= 3 and all(s["est_latency_added_ms"] is not None for s in steps)
    assert est["reverts_added_ms"] == pytest.approx(sum(s["est_latency_added_ms"] for s in steps if s["kept"]), abs=2e-3)
    # the first revert is the candidate with the best accuracy per latency of the first ranking
    first_round = report["ranking_rounds"][0]
    chosen = first_round[-1]
    assert max(_priority(g, est["free_below_ms"]) for g in first_round) == _priority(chosen, est["free_below_ms"])
    assert steps[0]["layers"] == chosen["layers"] and steps[0]["ranking_gain"] == chosen["gain"]
    # the trade-off is in the markdown and the plot has its second panel
    md = (out / "report.md").read_text()
    assert "per millisecond of latency" in md and "latency +ms" in md
    assert cv2.imread(str(out / "sensitivity.png")).shape[1] > 1000
    assert result.int8_map is not None


def test_rank_by_needs_max_drop(tmp_path, capsys):
    code = main(["quantize", str(DEMO_MODEL), "--data", str(tmp_path), "-o", str(tmp_path / "q"),
                 "--rank-by", "accuracy-per-latency", "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "needs --max-drop" in err[0]
    assert not (tmp_path / "q").exists()
