"""Held-out images: a seeded, stratified share of the validation split (or a test split) that quantization never
sees, scored once at the end; the options, YAML and CLI that ask for it; and what the report says there."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from ovq.cli import main
from ovq.core.errors import ConfigError, DatasetError
from ovq.data.datasets import Dataset, Sample, load_dataset
from ovq.demo import DEMO_MODEL
from ovq.deployment.loader import parse_pipeline_config
from ovq.quantization.holdout import hold_out, split_samples
from ovq.quantization.options import AdvancedQuantizeOptions, QuantizeOptions
from ovq.quantization.workflow import quantize


def _samples(classes_per_image: list[list[int]]) -> list[Sample]:
    return [Sample(Path(f"/h/{i}.jpg"), [[0, 0, 5, 5]] * len(c), c, 10, 10) for i, c in enumerate(classes_per_image)]


# 20 images of class 0, 4 with class 1 (rarer, so those images are stratified by it), 2 with class 2, 1 with class 3,
# 3 backgrounds
MIXED = [[0]] * 20 + [[0, 1]] * 4 + [[2]] * 2 + [[3]] + [[]] * 3


def test_holdout_is_seeded_exact_and_stratified_by_the_rarest_class():
    samples = _samples(MIXED)
    kept, held = split_samples(samples, 0.5, seed=0)
    assert len(held) == 15 and sorted(kept + held) == list(range(30)) and not set(kept) & set(held)
    assert split_samples(samples, 0.5, seed=0) == (kept, held)  # seeded
    assert split_samples(samples, 0.5, seed=1) != (kept, held)
    held_classes = Counter(k for i in held for k in set(samples[i].class_id.tolist()))
    kept_classes = Counter(k for i in kept for k in set(samples[i].class_id.tolist()))
    assert held_classes[1] == kept_classes[1] == 2  # the rarer class split evenly, not left to chance
    assert held_classes[2] == kept_classes[2] == 1
    assert held_classes[3] + kept_classes[3] == 1  # one image: one side only
    assert sum(1 for i in held if not len(samples[i].class_id)) in (1, 2)  # backgrounds too
    # odd shares round to the nearest image, never all or none
    assert len(split_samples(samples, 0.2, seed=0)[1]) == 6
    assert len(split_samples(samples, 0.001, seed=0)[1]) == 1 and len(split_samples(samples, 0.999, seed=0)[0]) == 1


def test_holdout_needs_labelled_boxes_on_both_sides():
    one_labelled = Dataset(Path("/h"), "val", ["a"], _samples([[0], []]), labelled=True)
    with pytest.raises(DatasetError, match=r"data.yaml: the 1 images (left for quantization|held out) from split "
                                           r"'val' have no labelled boxes \(holdout 0.5\)"):
        hold_out(one_labelled, 0.5, 0, "data.yaml")
    single = Dataset(Path("/h"), "val", ["a"], _samples([[0]]), labelled=True)
    with pytest.raises(DatasetError, match="split 'val' has 1 image"):
        hold_out(single, 0.5, 0, "data.yaml")
    parts = hold_out(Dataset(Path("/h"), "val", ["a", "b", "c", "d"], _samples(MIXED), labelled=True), 0.5, 0, "d")
    assert len(parts.kept) == len(parts.held) == 15 and parts.kept.split == parts.held.split == "val"
    assert parts.source.startswith("15 of the 30 images of split 'val' (holdout 0.5, seed 0")


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"holdout": 0}, "holdout: expected a fraction between 0 and 1 (exclusive), e.g. 0.5, got 0"),
        ({"holdout": 1.0}, "holdout: expected a fraction between 0 and 1 (exclusive), e.g. 0.5, got 1.0"),
        ({"holdout": "0.5"}, "holdout: expected a fraction between 0 and 1 (exclusive), e.g. 0.5, got '0.5'"),
        ({"holdout": True}, "holdout: expected a fraction"),
        ({"holdout": 0.5, "test_split": "test"}, "holdout: give holdout (a share of val_split) or test_split"),
        ({"test_split": "val"}, "test_split: 'val' is also the val_split"),
        ({"test_split": "train"}, "test_split: 'train' is also the calib_split"),
        ({"test_split": ""}, "test_split: expected a non-empty string"),
        ({"recalibrate_threshold": "yes"}, "recalibrate_threshold: expected true or false, got 'yes'"),
    ],
)
def test_holdout_options_are_checked_with_the_option_named(fields, message):
    with pytest.raises(ConfigError) as err:
        QuantizeOptions(**fields).validate()
    assert message in str(err.value)


@pytest.mark.parametrize(
    "advanced, message",
    [
        ({"bootstrap_rounds": -1}, "bootstrap_rounds: expected an integer >= 0, got -1"),
        ({"holdout_seed": 1.5}, "holdout_seed: expected an integer, got 1.5"),
        ({"collapse_below": 2}, "collapse_below: expected a number >= 0 and <= 1, got 2"),
        ({"collapse_guard": 1}, "collapse_guard: expected true or false, got 1"),
    ],
)
def test_advanced_trust_options_are_checked(advanced, message):
    with pytest.raises(ConfigError, match=message):
        QuantizeOptions(advanced=AdvancedQuantizeOptions(**advanced)).validate()


def test_pipeline_yaml_quantize_section_takes_the_holdout_options(tmp_path):
    section = {"data": "d", "max_drop": 0.01, "holdout": 0.3, "holdout_seed": 7, "recalibrate_threshold": True,
               "bootstrap_rounds": 200, "collapse_below": 0.4}
    cfg = parse_pipeline_config({"model": "m.xml", "sources": [0], "quantize": section}, tmp_path / "p.yaml", environ={})
    opts = cfg.quantize.options
    assert opts.holdout == 0.3 and opts.recalibrate_threshold is True and opts.test_split is None
    assert opts.advanced.holdout_seed == 7 and opts.advanced.bootstrap_rounds == 200
    assert opts.advanced.collapse_below == 0.4 and opts.advanced.collapse_guard is True
    assert cfg.to_dict()["quantize"]["holdout"] == 0.3  # the resolved config says it
    test = parse_pipeline_config({"model": "m.xml", "sources": [0], "quantize": {"data": "d", "test_split": "test"}},
                                 tmp_path / "p.yaml", environ={})
    assert test.quantize.options.test_split == "test"
    for bad, message in (({"holdout": 1.5}, "p.yaml: quantize.holdout: expected a fraction between 0 and 1"),
                         ({"holdout": 0.5, "test_split": "t"}, "p.yaml: quantize.holdout: give holdout"),
                         ({"hold_out": 0.5}, "p.yaml: quantize: unknown key 'hold_out'; did you mean 'holdout'?")):
        with pytest.raises(ConfigError) as err:
            parse_pipeline_config({"model": "m.xml", "sources": [0], "quantize": {"data": "d", **bad}},
                                  tmp_path / "p.yaml", environ={})
        assert message in str(err.value)


@pytest.mark.parametrize("extra", [["--holdout", "0.5"], ["--max-drop", "0.01"]])
def test_cli_fail_on_holdout_needs_a_budget_and_held_out_images(tmp_path, capsys, extra):
    code = main(["quantize", str(DEMO_MODEL), "--data", str(tmp_path), "-o", str(tmp_path / "q"), "--fail-on-holdout",
                 *extra, "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0] == ("ovq quantize: error: --fail-on-holdout gates on the budget held out: it needs --max-drop and "
                      "--holdout or --test-split")
    assert not (tmp_path / "q").exists()


def test_cli_fail_on_budget_needs_a_budget(tmp_path, capsys):
    code = main(["quantize", str(DEMO_MODEL), "--data", str(tmp_path), "-o", str(tmp_path / "q"), "--fail-on-budget",
                 "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == ["ovq quantize: error: --fail-on-budget gates on the accuracy budget: it needs --max-drop"]
    assert not (tmp_path / "q").exists()


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory) -> Path:
    """Generated conveyor images for the shipped demo model: 'calib' to calibrate, 'val' to validate."""
    from ovq.data.synth import write_yolo_dataset

    return write_yolo_dataset(tmp_path_factory.mktemp("demo") / "data", n_train=0, n_val=96, n_calib=48, seed=3)


def _with_split(data: Path, name: str, folder: str) -> Path:
    doc = yaml.safe_load(data.read_text())
    doc[name] = folder
    out = data.with_name(f"with_{name}.yaml")
    out.write_text(yaml.safe_dump(doc))
    return out


def test_held_out_images_must_be_labelled_and_unseen(demo_data, tmp_path):
    """Each refusal comes before any quantization work, and nothing is written."""
    fast = AdvancedQuantizeOptions(bench_seconds=0.0)
    shared = _with_split(demo_data, "test", "images/val")
    with pytest.raises(DatasetError, match="validation split 'val' and test split 'test' share 96 images"):
        quantize(DEMO_MODEL, shared, tmp_path / "q", calib_split="calib", test_split="test", advanced=fast,
                 progress=False)
    calib_as_test = _with_split(demo_data, "test", "images/calib")
    with pytest.raises(DatasetError, match="calibration split 'calib' and test split 'test' share 48 images"):
        quantize(DEMO_MODEL, calib_as_test, tmp_path / "q", calib_split="calib", test_split="test", advanced=fast,
                 progress=False)
    with pytest.raises(DatasetError, match="no split 'test'"):
        quantize(DEMO_MODEL, demo_data, tmp_path / "q", calib_split="calib", test_split="test", advanced=fast,
                 progress=False)
    images = demo_data.parent / "images" / "calib"  # a folder of images: no labels at all
    with pytest.raises(DatasetError, match=r"calib: holdout needs a labelled validation split \('val'\)"):
        quantize(DEMO_MODEL, images, tmp_path / "q", holdout=0.5, advanced=fast, progress=False)
    with pytest.raises(DatasetError, match=r"calib: recalibrate_threshold needs labelled validation images"):
        quantize(DEMO_MODEL, images, tmp_path / "q", recalibrate_threshold=True, advanced=fast, progress=False)
    assert not (tmp_path / "q").exists()


def _greedy_point(det, samples, conf: float) -> tuple[float, float]:
    """Precision and recall at IoU 0.5, the plain way: decode at ``conf``, match each class's detections to its
    boxes greedily by confidence."""
    import cv2

    from ovq.core.geometry import box_iou

    tp = fp = boxes = 0
    for s in samples:
        dets = det(cv2.imread(str(s.image)), conf=conf)
        boxes += len(s.class_id)
        for k in set(dets.class_id.tolist()):
            gt = s.xyxy[s.class_id == k]
            taken = np.zeros(len(gt), bool)
            mine = dets[dets.class_id == k]
            for j in np.argsort(-mine.confidence, kind="stable"):
                iou = box_iou(mine.xyxy[j:j + 1], gt)[0] if len(gt) else np.zeros(0)
                iou[taken] = 0
                if len(iou) and iou.max() >= 0.5:
                    taken[int(iou.argmax())] = True
                    tp += 1
                else:
                    fp += 1
    return tp / max(tp + fp, 1), tp / boxes


@pytest.mark.slow
def test_holdout_is_scored_once_on_the_images_left_out(demo_data, tmp_path, capsys):
    """The report's held-out numbers are those of an independent evaluation of exactly the images the seeded
    split left out; the operating point there is what decoding at the threshold gives; a recalibrated threshold
    is stored in the IR when INT8 shifted its confidences, and only then."""
    from ovq.evaluation.accuracy import evaluate
    from ovq.model.detector import Detector

    out = tmp_path / "q"
    code = main(["quantize", str(DEMO_MODEL), "--data", str(demo_data), "--calib-split", "calib", "-o", str(out),
                 "--holdout", "0.5", "--holdout-seed", "3", "--max-drop", "0.01", "--recalibrate-threshold",
                 "--bias-correction", "fast", "--bench-time", "0", "--no-progress", "-q"])
    printed = capsys.readouterr().out
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    held = report["holdout"]
    assert held["images"] == 48 and report["accuracy"]["images"] == 48
    assert report["quantization"]["val_images"] == 48 and report["quantization"]["holdout_images"] == 48
    assert held["held"] == (held["drop"] <= 0.01 + 1e-4)
    assert f"held out (48 images never seen by quantization): FP {held['fp']['map50_95']:.4f}" in printed
    # the same split, rebuilt from the public function, evaluated independently
    val = load_dataset(demo_data, split="val")
    _, held_idx = split_samples(val.samples, 0.5, seed=3)
    held_set = Dataset(val.root, "val", val.names, [val.samples[i] for i in held_idx], labelled=True)
    fp = evaluate(DEMO_MODEL, held_set, progress=False)
    int8 = evaluate(out, held_set, progress=False)
    assert held["fp"]["map50_95"] == pytest.approx(fp.map50_95, abs=1e-4)
    assert held["int8"]["map50_95"] == pytest.approx(int8.map50_95, abs=1e-4)
    # the operating point on those images, at the model's stored threshold 0.25
    point = held["operating_point"]
    precision, recall = _greedy_point(Detector(DEMO_MODEL, cache=False), held_set.samples, 0.25)
    assert point["fp"]["precision"] == pytest.approx(precision, abs=2e-3)
    assert point["fp"]["recall"] == pytest.approx(recall, abs=2e-3)
    # asked to recalibrate, the IR's threshold moved exactly when INT8 shifted its confidences (both ways of
    # _settle_provenance are forced in test_quantize_report; here the IR is read back as a user's run would)
    op = report["operating_point"]
    det = Detector(out, cache=False)
    md = (out / "report.md").read_text()
    assert op["applied"] == op["shifted"] and det.params.conf_threshold == det.info.conf_threshold
    if op["applied"]:
        assert op["recalibrated"]["recall"] >= op["fp"]["recall"] - 1e-9
        assert det.info.conf_threshold == op["recalibrated"]["conf"]
        assert det.info.quantization["conf_threshold_fp"] == 0.25
        assert f"**The INT8 model's threshold is {op['recalibrated']['conf']:g}**" in md
    else:
        assert det.info.conf_threshold == 0.25 and "conf_threshold_fp" not in det.info.quantization
        assert "no recalibration needed" in md
    assert "## Held-out images (never seen by quantization)" in md and "## Operating point" in md
    assert "## Per class: the 5 largest drops" in md and "Noise: resampling these 48 images" in md


@pytest.mark.slow
def test_test_split_is_scored_whole_and_validation_keeps_every_image(demo_data, tmp_path):
    """--test-split: the named split is the held-out set, every image of it scored once; the validation split is
    used whole; no budget, so the report has no verdict to give there (held is None)."""
    from ovq.data.synth import write_yolo_dataset
    from ovq.evaluation.accuracy import evaluate

    other = write_yolo_dataset(tmp_path / "other", n_train=0, n_val=24, n_calib=0, seed=11)
    data = _with_split(demo_data, "test", str(other.parent / "images" / "val"))
    result = quantize(DEMO_MODEL, data, tmp_path / "q", calib_split="calib", test_split="test",
                      advanced=AdvancedQuantizeOptions(bench_seconds=0.0, bootstrap_rounds=0, bias_correction="fast"),
                      progress=False)
    held = result.report["holdout"]
    assert held["images"] == 24 and result.report["accuracy"]["images"] == 96 and held["held"] is None
    assert "split 'test'" in held["source"] and result.holdout_held is None
    test = load_dataset(data, split="test")
    assert held["fp"]["map50_95"] == pytest.approx(evaluate(DEMO_MODEL, test, progress=False).map50_95, abs=1e-4)
    assert held["int8"]["map50_95"] == pytest.approx(evaluate(tmp_path / "q", test, progress=False).map50_95, abs=1e-4)
