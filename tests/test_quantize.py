"""INT8 quantization: plain and under an accuracy budget, at the deployment precision."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import numpy as np
import openvino as ov
import pytest
from conftest import CPU_INT8, random_images

from ovq.cli import main
from ovq.core.errors import DatasetError, DeviceError, OvqError
from ovq.core.metadata import read_info, write_info
from ovq.model.detector import Detector
from ovq.model.paths import model_digest
from ovq.quantization.layers import decode_tail, int8_layers
from ovq.quantization.nncf_hooks import accuracy_control_hooks
from ovq.quantization.options import AdvancedQuantizeOptions, QuantizeOptions
from ovq.quantization.workflow import quantize

FAST = AdvancedQuantizeOptions(bench_seconds=0.0)


def _coco(assets):
    return assets / "coco128"


def test_decode_tail_stops_at_convolutions():
    import openvino.opset13 as ops

    x = ops.parameter([1, 3, 8, 8], ov.Type.f32, name="x")
    w = ops.constant(np.ones((6, 3, 1, 1), np.float32))
    conv = ops.convolution(x, w, [1, 1], [0, 0], [0, 0], [1, 1], name="head_conv")
    sig = ops.sigmoid(conv, name="tail_sigmoid")
    mul = ops.multiply(sig, ops.constant(np.float32(8.0)), name="tail_stride")
    out = ops.reshape(mul, ops.constant(np.array([1, 6, 64], np.int64)), False, name="tail_reshape")
    names = set(decode_tail(ov.Model([out], [x])))
    assert {"tail_sigmoid", "tail_stride", "tail_reshape"} <= names
    assert "head_conv" not in names and "x" not in names


def test_decode_tail_of_a_head_with_several_branches_is_whole():
    """Every branch's tail, not only the last one walked (the walk once keyed nodes by id() of their Python
    wrappers, which Python reuses once a wrapper is freed, and lost two of three branches here)."""
    import openvino.opset13 as ops

    x = ops.parameter([1, 3, 8, 8], ov.Type.f32, name="x")
    outs = []
    for b in range(3):
        w = ops.constant(np.ones((6, 3, 1, 1), np.float32))
        conv = ops.convolution(x, w, [1, 1], [0, 0], [0, 0], [1, 1], name=f"head_conv{b}")
        bias = ops.add(conv, ops.constant(np.ones((1, 6, 1, 1), np.float32)), name=f"bias{b}")
        sig = ops.sigmoid(bias, name=f"sigmoid{b}")
        mul = ops.multiply(sig, ops.constant(np.float32(8.0)), name=f"stride{b}")
        outs.append(ops.reshape(mul, ops.constant(np.array([1, 6, 64], np.int64)), False, name=f"reshape{b}"))
    names = set(decode_tail(ov.Model([ops.concat(outs, 2, name="concat")], [x])))
    expected = {f"{kind}{b}" for kind in ("bias", "sigmoid", "stride", "reshape") for b in range(3)} | {"concat"}
    assert names == expected


def test_nncf_validates_at_the_deployment_precision(assets):
    """NNCF 3.4 forces f32 for validation; inside ovq's hooks it compiles like deployment does."""
    from nncf.quantization.algorithms.accuracy_control.openvino_backend import OVPreparedModel

    det = Detector(assets / "models/fastestdet/FastestDet.onnx")
    default = det.inference_precision

    def precision_nncf_uses() -> str:
        return OVPreparedModel(det.model).model_for_inference.get_property("INFERENCE_PRECISION_HINT").to_string()

    def keep_order(call_nncf, groups, model):
        return call_nncf()

    assert precision_nncf_uses() == "f32"
    with accuracy_control_hooks(validate_f32=False, rank=keep_order):
        assert precision_nncf_uses() == default
    with accuracy_control_hooks(validate_f32=True, rank=keep_order):
        assert precision_nncf_uses() == "f32"
    assert precision_nncf_uses() == "f32"  # and the hook is undone afterwards


# Plain INT8 YOLOX-Nano on coco128 (calibrated on train2017, scored on val2017, 128 images): the largest mAP drop
# against the FP model at the device's default precision that each kind of CPU guarantees, and what was measured:
#   amx      Xeon (Sapphire Rapids), bf16: FP 0.3364 -> INT8 0.3362 (0.0002)
#   vnni     EPYC Zen 4 (AVX512-BF16, VNNI, no AMX), bf16: 0.3385 -> 0.3322 (0.0063); at f32 0.3378 -> 0.3330
#   no-vnni  EPYC Zen 3 (AVX2 only, no bf16), f32: 0.3378 -> 0.3270 (0.0108) with the overflow fix on every
#            layer, which ovq chooses there; with NNCF's default (the first layer only) 0.1174
# NNCF calibrates at f32 on every CPU, so the quantized model differs at most by f32 rounding; with AMX or VNNI
# INT8 sums are exact, and what moves the drop is bf16 rounding of the float layers (AMX and AVX512-BF16 round
# differently: the same FP model reads 0.3364 and 0.3385). Without VNNI, INT8 sums saturate unless every layer
# has 7-bit weights, which costs 0.011 (see ovq.runtime.cpu.int8_kernels).
YOLOX_INT8_MAX_DROP = {"amx": 0.005, "vnni": 0.008, "no-vnni": 0.015}
CPU_KINDS = {"amx": "AMX-INT8", "vnni": "VNNI and no AMX", "no-vnni": "neither VNNI nor AMX (AVX2)"}


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(YOLOX_INT8_MAX_DROP))
def test_plain_int8_yolox_accuracy_on_cpu_kind(kind, assets, tmp_path):
    if CPU_INT8 != kind:
        pytest.skip(f"the {kind} figure needs a CPU with {CPU_KINDS[kind]}; this CPU's INT8 kernels: {CPU_INT8}")
    out = tmp_path / "q"
    result = quantize(
        assets / "models/yolox_nano/yolox_nano.onnx", _coco(assets), out,
        calib_split="train2017", val_split="val2017", advanced=FAST, progress=False,
    )
    budget = YOLOX_INT8_MAX_DROP[kind]
    assert result.fp_map == pytest.approx(0.337, abs=0.005)
    assert result.fp_map - result.int8_map <= budget, f"{kind} CPU: FP {result.fp_map:.4f}, INT8 {result.int8_map:.4f}"
    # and against the FP32 model evaluated at f32 (where f32 is the default, that is the evaluation above)
    from ovq.evaluation.accuracy import evaluate

    report = json.loads((out / "report.json").read_text())
    fp32 = result.fp_map if report["deployment_precision"] == "f32" else evaluate(
        assets / "models/yolox_nano/yolox_nano.onnx", _coco(assets), split="val2017", precision="f32",
        progress=False).map50_95
    assert fp32 - result.int8_map <= budget
    assert report["accuracy"]["int8"] == pytest.approx(result.int8_map, abs=1e-4)
    assert report["quantized_ops"] > 50 and report["reverted"] == []
    assert report["size_mb"]["int8"] < 0.5 * report["size_mb"]["fp32"]
    assert (out / "report.md").read_text().count("mAP50-95") >= 1 and (out / "sensitivity.png").stat().st_size > 1000
    # the saved model carries its provenance and runs with no flags
    det = Detector(out)
    q = det.info.quantization
    assert q["mode"] == "plain" and q["calib_split"] == "train2017" and q["int8_kernels"] == kind
    assert q["bias_correction"] == "fast"  # YOLOX's measured default
    if kind == "no-vnni":  # both tried, every layer kept: the first layer alone lets the sums saturate
        assert q["overflow_fix"] == "enable" and set(q["overflow_fix_trials"]) == {"first-layer", "enable"}
        assert q["overflow_fix_trials"]["first-layer"] < q["overflow_fix_trials"]["enable"] - 0.1
    else:
        assert q["overflow_fix"] == "first-layer" and q["overflow_fix_trials"] == {}
    assert len(int8_layers(det.compiled)) > 50
    # the Focus stem became one convolution of the image, and it runs INT8 too
    assert "Conv_41" in int8_layers(det.compiled)


@pytest.mark.parametrize(
    "choice, device, flags, expected",
    [
        (None, "CPU", ["avx2"], ["first-layer", "enable"]),  # no VNNI: measure both
        ("auto", "AUTO", ["avx512f", "avx2"], ["first-layer", "enable"]),
        (None, "CPU", ["avx512_vnni", "avx2"], ["first-layer"]),  # exact sums: NNCF's default
        (None, "CPU", ["amx_int8", "avx512_vnni"], ["first-layer"]),
        (None, "GPU", ["avx2"], ["first-layer"]),
        ("disable", "CPU", ["avx2"], ["disable"]),  # asked for: used as it is
    ],
)
def test_overflow_fix_candidates_follow_the_cpu(choice, device, flags, expected):
    from ovq.quantization.overflow import overflow_fix_candidates

    assert [c.value for c in overflow_fix_candidates(choice, device, flags)] == expected


def _stamp_quantized_on(folder, kernels: str) -> None:
    """Rewrite an ovq INT8 model's provenance to say which CPU kind quantized it."""
    model = ov.Core().read_model(folder / "model.xml")
    info = read_info(model)
    info.quantization["int8_kernels"] = kernels
    write_info(model, info)
    ov.save_model(model, folder.parent / "stamped.xml", compress_to_fp16=False)
    del model
    for ext in ("xml", "bin"):
        (folder.parent / f"stamped.{ext}").replace(folder / f"model.{ext}")


@pytest.mark.parametrize("fix, warns", [("first-layer", True), ("enable", False)])
def test_model_quantized_for_vnni_warns_on_a_cpu_without_it(fix, warns, tmp_path, monkeypatch, caplog):
    from conftest import tiny_yolo_ir

    from ovq.runtime import cpu  # cpu_flags is defined (and read) there

    model = tiny_yolo_ir(tmp_path)
    images = random_images(tmp_path / "calib")
    quantize(model, images, tmp_path / "q", subset_size=4, advanced=AdvancedQuantizeOptions(
        bench_seconds=0.0, overflow_fix=fix), progress=False)
    _stamp_quantized_on(tmp_path / "q", "vnni")  # as if quantized on a CPU with exact INT8 sums
    monkeypatch.setattr(cpu, "cpu_flags", lambda *a, **k: ["avx2"])
    with caplog.at_level(logging.WARNING, logger="ovq"):
        Detector(tmp_path / "q", device="CPU", cache=False)
    warned = [r.getMessage() for r in caplog.records if "saturate" in r.getMessage()]
    assert bool(warned) == warns, warned
    if warns:
        assert f"'{fix}'" in warned[0] and "tiny" in warned[0]


def test_unknown_overflow_fix_is_rejected(tmp_path):
    from conftest import tiny_yolo_ir

    model = tiny_yolo_ir(tmp_path)
    with pytest.raises(OvqError, match="overflow_fix: expected one of auto, first-layer, enable, disable, got 'half'"):
        quantize(model, tmp_path, tmp_path / "q", advanced=AdvancedQuantizeOptions(overflow_fix="half"), progress=False)
    assert not (tmp_path / "q").exists()


def test_max_drop_needs_labels(assets, tmp_path, capsys):
    out = tmp_path / "q"
    code = main([
        "quantize", str(assets / "models/fastestdet/FastestDet.onnx"), "--data", str(assets / "images"),
        "-o", str(out), "--max-drop", "0.01", "-q",
    ])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "needs a labelled dataset" in err[0] and "images" in err[0]
    assert not out.exists()


def _split_dataset(root, val_label: str):
    """images/train (calibration) and images/val with one label file holding ``val_label``."""
    (root / "images").mkdir(parents=True)
    random_images(root / "images" / "train", n=4)
    random_images(root / "images" / "val", n=2)
    (root / "labels" / "val").mkdir(parents=True)
    (root / "labels" / "val" / "0.txt").write_text(val_label + "\n")
    return root


@pytest.mark.parametrize(("label", "val_split", "says"), [
    ("garbage line here", "val", r"labels/val/0.txt:1: "),
    ("0 0.5 0.5 0.2 0.2", "nope", r"no split 'nope'"),
], ids=["malformed", "named-split"])  # a class past the model's, named by no classes.txt: test_eval_classes.py
def test_bad_validation_data_is_refused_without_a_budget_too(tiny, tmp_path, label, val_split, says):
    """Plain quantize once skipped a corrupt validation split, or one named that was not there, without a word:
    exit 0, "validation split None (0 images)", every mAP n/a."""
    data = _split_dataset(tmp_path / "ds", label)
    with pytest.raises(DatasetError, match=says):
        quantize(tiny, data, tmp_path / "q", calib_split="train", val_split=val_split, advanced=FAST, progress=False)
    assert not (tmp_path / "q").exists()


def test_a_dataset_without_a_val_split_still_quantizes_without_accuracy(tiny, tmp_path, caplog):
    data = _split_dataset(tmp_path / "ds", "0 0.5 0.5 0.2 0.2")
    (data / "images" / "val").rename(data / "images" / "test")
    with caplog.at_level(logging.INFO, logger="ovq"):
        result = quantize(tiny, data, tmp_path / "q", calib_split="train", advanced=FAST, progress=False)
    assert result.fp_map is None and (tmp_path / "q" / "model.xml").exists()
    assert result.details.quantization["source_sha256"] == model_digest(tiny)  # which model it came from
    assert any("no 'val' split, so accuracy is not measured" in r.getMessage() for r in caplog.records)


def test_an_absent_device_is_one_error_before_the_model_loads(tiny, tmp_path, ovq_log):
    """`ovq quantize M ... --max-drop 0.01 --device XPU` warned "NNCF's accuracy control validates on CPU; the budget
    is checked there, not on XPU" above the error that XPU is not there: two lines, after the model had loaded."""
    with pytest.raises(DeviceError, match="device 'XPU' is not available on this machine"):
        quantize(tiny, tmp_path / "data", tmp_path / "q", max_drop=0.01, device="XPU", progress=False)
    assert ovq_log.messages(logging.WARNING) == [] and not (tmp_path / "q").exists()


def _coco_json(folder):
    """random_images' four images as a COCO JSON (instances_train.json beside them), one box each."""
    random_images(folder)
    doc = {"images": [{"id": i, "file_name": f"{i}.png", "width": 64, "height": 64} for i in range(4)],
           "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
           "annotations": [{"id": i, "image_id": i, "category_id": 1 + i % 2, "bbox": [8, 8, 32, 32], "iscrowd": 0}
                           for i in range(4)]}
    (folder / "instances_train.json").write_text(json.dumps(doc))
    return folder / "instances_train.json"


def test_a_coco_json_calibrates_and_says_it_cannot_also_validate(tiny, tmp_path, caplog):
    """A COCO JSON holds one split, so the calibration split and the 'validation' split were the same file: every
    quantize on one failed with "calibration split 'train' and validation split 'train' share 4 images", though
    --val-split was never given."""
    data = _coco_json(tmp_path / "coco")
    with caplog.at_level(logging.INFO, logger="ovq"):
        result = quantize(tiny, data, tmp_path / "q", advanced=FAST, progress=False)
    assert result.fp_map is None and (tmp_path / "q" / "model.xml").exists()
    assert any("a COCO JSON holds one split ('train')" in r.getMessage() for r in caplog.records)
    for fields, needs in [({"max_drop": 0.01}, "max_drop needs"), ({"val_split": "val2017"}, "val_split needs"),
                          ({"test_split": "test"}, "test_split needs"), ({"holdout": 0.5}, "holdout needs")]:
        with pytest.raises(DatasetError, match=rf"instances_train\.json: a COCO JSON holds one split .* {needs}"):
            quantize(tiny, data, tmp_path / "q2", advanced=FAST, progress=False, **fields)
    assert not (tmp_path / "q2").exists()


def test_quantize_never_writes_over_the_float_model_it_quantizes(tiny, tmp_path, capsys):
    """quantize MODEL_DIR -o MODEL_DIR replaced the float model with the INT8 one (exit 0): the float model was gone,
    and quantizing it again was refused as 'already quantized by ovq'."""
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny.parent if tiny.is_file() else tiny, model)
    before = {p.name: p.read_bytes() for p in model.iterdir()}
    calib = random_images(tmp_path / "calib")
    for src, out in [(model, model), (model / "model.xml", model), (model / "model.xml", tmp_path / "." / "model")]:
        assert main(["quantize", str(src), "--data", str(calib), "-o", str(out), "--bench-time", "0", "-q"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [(f"ovq quantize: error: {out}: holds the float model being quantized (model.xml), which the "
                        "INT8 model would replace; give another output folder (-o)")]
    assert {p.name: p.read_bytes() for p in model.iterdir()} == before


def test_a_model_another_tool_quantized_is_refused_before_any_work(tmp_path, capsys):
    """An INT8 IR from another tool (Ultralytics' ``format=openvino, int8=True``, any nncf.quantize output) carries
    no ovq provenance: quantize calibrated it again and stopped in NNCF with 'NNCF failed: More than one node in
    NNCFGraph matches name Constant_1720' (Ultralytics' export), or wrote a model quantized twice."""
    import nncf
    from conftest import tiny_yolo_ir

    tiny_yolo_ir(tmp_path)  # its source graph, tmp_path / "tiny.xml", quantized by NNCF directly
    rng = np.random.default_rng(0)
    calib = nncf.Dataset([rng.random((1, 3, 64, 64), dtype=np.float32) for _ in range(2)])
    int8 = nncf.quantize(ov.Core().read_model(tmp_path / "tiny.xml"), calib, subset_size=2)
    ov.save_model(int8, tmp_path / "int8.xml")
    images = random_images(tmp_path / "calib")
    out = tmp_path / "q"
    capsys.readouterr()  # (torch's own warning, imported by NNCF)
    assert main(["quantize", str(tmp_path / "int8.xml"), "--data", str(images), "-o", str(out), "--bench-time", "0",
                 "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [(f"ovq quantize: error: {tmp_path / 'int8.xml'}: already quantized (2 FakeQuantize operations in "
                    "its graph); quantize the float model it was made from")]
    assert not out.exists()


def test_calibration_and_validation_must_differ(assets, tmp_path):
    with pytest.raises(DatasetError, match="share 128 images"):
        quantize(
            assets / "models/fastestdet/FastestDet.onnx", _coco(assets), tmp_path / "q", max_drop=0.01,
            calib_split="val2017", val_split="val2017", advanced=FAST, progress=False,
        )
    assert not (tmp_path / "q").exists()


def test_few_calibration_images_warn_with_count(assets, tmp_path, caplog):
    folder = tmp_path / "calib"
    folder.mkdir()
    for p in sorted((assets / "coco128/images/train2017").glob("*.jpg"))[:5]:
        (folder / p.name).write_bytes(p.read_bytes())
    with caplog.at_level(logging.WARNING, logger="ovq"):
        result = quantize(assets / "models/fastestdet/FastestDet.onnx", folder, tmp_path / "q", subset_size=300,
                          advanced=AdvancedQuantizeOptions(bench_seconds=0.0, bias_correction="fast"), progress=False)
    assert any("calibrating on 5 images" in r.getMessage() and "300" in r.getMessage() for r in caplog.records)
    assert result.fp_map is None and (tmp_path / "q" / "model.xml").exists()  # no labels: no accuracy, still a model


def test_bad_ignore_pattern_is_rejected_before_work(assets, tmp_path):
    with pytest.raises(OvqError, match="matches no layer"):
        quantize(assets / "models/fastestdet/FastestDet.onnx", assets / "images", tmp_path / "q",
                 ignore=["no_such_layer_.*"], advanced=FAST, progress=False)
    assert not (tmp_path / "q").exists()
    with pytest.raises(OvqError, match="bias_correction: expected one of auto, fast, full, got 'none'"):
        quantize(assets / "models/fastestdet/FastestDet.onnx", assets / "images", tmp_path / "q",
                 advanced=AdvancedQuantizeOptions(bias_correction="none"), progress=False)
    assert not (tmp_path / "q").exists()


@pytest.mark.slow
def test_accuracy_control_fastestdet_holds_budget_at_default_precision(assets, tmp_path):
    """--max-drop 0.002 reverts layers and lands within it at the device default, judged independently."""
    from ovq.evaluation.accuracy import evaluate
    from ovq.runtime.cpu import int8_kernels

    out = tmp_path / "q"
    # without VNNI, overflow_fix="auto" quantizes and scores both candidates first (the YOLOX test above covers
    # that choice); this test takes the one auto keeps for FastestDet there (coco128 val on Zen 3: first-layer
    # 0.2010, enable 0.1842), saving a quantization and two evaluations. Ranking on 24 images and no revert
    # timing (test_revert_tradeoff.py covers it) keep it at 290 s on Zen 3 (490 s ranking on 48 and timing);
    # the reverts were the same there: Conv_3 + Conv_6 kept, five layers undone, Conv_257 kept.
    overflow = "first-layer" if int8_kernels() == "no-vnni" else "auto"
    result = quantize(
        assets / "models/fastestdet/FastestDet.onnx", _coco(assets), out, max_drop=0.002,
        calib_split="train2017", val_split="val2017",
        advanced=AdvancedQuantizeOptions(bench_seconds=0.0, ranking_subset_size=24, latency_runs=0,
                                         overflow_fix=overflow),
        progress=False,
    )
    kept = [s for s in result.reverted if s.kept]
    assert kept and all(s.layers for s in kept)
    report = json.loads((out / "report.json").read_text())
    assert report["quantization"]["reverted_layers"] == sorted({n for s in kept for n in s.layers})
    assert report["first_int8_metric"] < result.fp_map - 0.002  # plain INT8 alone broke the budget
    # an independent evaluation of the saved model, compiled the way `ovq eval` does by default
    det_default = evaluate(out, _coco(assets), split="val2017", progress=False)
    fp_default = evaluate(assets / "models/fastestdet/FastestDet.onnx", _coco(assets), split="val2017", progress=False)
    assert det_default.precision == fp_default.precision  # both at the device default (bf16 on AMX)
    assert fp_default.map50_95 - det_default.map50_95 <= 0.002 + 1e-4
    assert Detector(out).info.quantization["validated_precision"] == det_default.precision


def test_cli_bias_correction_choice_is_recorded_and_no_progress_is_quiet(assets, tmp_path, capsys):
    folder = tmp_path / "calib"
    folder.mkdir()
    for p in sorted((assets / "coco128/images/train2017").glob("*.jpg"))[:6]:
        (folder / p.name).write_bytes(p.read_bytes())
    out = tmp_path / "q"
    code = main([
        "quantize", str(assets / "models/fastestdet/FastestDet.onnx"), "--data", str(folder), "-o", str(out),
        "--subset-size", "6", "--bias-correction", "fast", "--bench-time", "0", "--no-progress", "-q",
    ])
    printed = capsys.readouterr()
    assert code == 0
    assert read_info(ov.Core().read_model(out / "model.xml")).quantization["bias_correction"] == "fast"
    # NNCF's own progress bars are silenced too: only ovq's result lines reach stdout
    assert "Applying" not in printed.out and "━" not in printed.out
    assert printed.out.splitlines()[0] == f"wrote {out / 'model.xml'}"


# --- one options type, checked once ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"max_drop": -0.1}, "max_drop: expected a number >= 0 and <= 1, got -0.1"),
        ({"max_drop": 2}, "max_drop: expected a number >= 0 and <= 1, got 2"),
        ({"max_drop": "0.1"}, "max_drop: expected a number, got '0.1'"),
        ({"precision": "f16"}, "precision: expected one of default, f32, bf16, got 'f16'"),
        ({"rank_by": "accuracy-per-latency"}, "rank_by: accuracy-per-latency orders the reverts of accuracy control: it needs max_drop"),
        ({"subset_size": 0}, "subset_size: expected an integer >= 1, got 0"),
        ({"ignore": ["conv("]}, r"ignore\[0\]: 'conv\(' is not a valid regular expression"),
        ({"ignore": "conv.*"}, "ignore: expected a list of layer-name patterns"),
        ({"preset": "fast"}, "preset: expected one of performance, mixed, got 'fast'"),
    ],
)
def test_options_are_checked_once_with_the_option_named(fields, message):
    from ovq.core.errors import ConfigError
    from ovq.quantization.options import QuantizeOptions

    with pytest.raises(ConfigError, match=message):
        QuantizeOptions(**fields).validate()


def test_options_from_a_mapping_reject_unknown_keys_and_take_advanced_ones():
    from ovq.core.errors import ConfigError
    from ovq.quantization.options import BiasCorrection, OverflowFix, Precision, QuantizeOptions

    opts = QuantizeOptions.from_mapping({"max_drop": 0.01, "precision": "BF16", "bias_correction": "fast",
                                         "overflow_fix": "enable", "bench_seconds": 0, "ignore": ["a.*"]})
    assert opts.precision is Precision.BF16 and opts.ignore == ("a.*",)
    assert opts.advanced.bias_correction is BiasCorrection.FAST and opts.advanced.overflow_fix is OverflowFix.ENABLE
    assert QuantizeOptions.from_mapping(opts.to_dict()) == opts  # round trip through plain data
    with pytest.raises(ConfigError, match="unknown key 'max_dorp'; did you mean 'max_drop'"):
        QuantizeOptions.from_mapping({"max_dorp": 0.01})


def test_the_api_takes_options_or_fields_not_both(tmp_path):
    from ovq.core.errors import ConfigError
    from ovq.quantization.options import QuantizeOptions

    with pytest.raises(ConfigError, match="not both"):
        quantize("m", "d", options=QuantizeOptions(), max_drop=0.1)
    with pytest.raises(ConfigError, match="unknown key 'maxdrop'; did you mean 'max_drop'"):
        quantize("m", "d", maxdrop=0.1)


def test_api_errors_name_the_option_the_cli_names_its_flag(tmp_path, capsys):
    """One wording per way in: Python and YAML name the option, the command line its flag (since 200f4da)."""
    with pytest.raises(OvqError, match=r"^max_drop: expected a number >= 0 and <= 1, got -1$"):
        QuantizeOptions(max_drop=-1).validate()
    code = main(["quantize", "m.onnx", "--data", "d", "-o", str(tmp_path / "q"), "--max-drop", "-1", "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == ["ovq quantize: error: --max-drop: expected a number >= 0 and <= 1, got -1"]


# --- NNCF hooks: a checked contract, no lasting side effects ---------------------------------------------


def test_installed_nncf_has_what_the_hooks_bind_by_name():
    """Fails loudly when an NNCF release renames the parameters ovq's hooks rely on."""
    import inspect

    from ovq.quantization.nncf_hooks import HOOKS, check_contract

    check_contract()
    for hook in HOOKS:
        _, original, signature = hook.resolve()
        assert set(hook.parameters) <= set(signature.parameters), hook.where
        assert inspect.isfunction(original)


def test_contract_check_names_a_renamed_parameter(monkeypatch):
    from ovq.core.errors import DependencyError
    from ovq.quantization import nncf_hooks

    renamed = nncf_hooks.Hook(nncf_hooks.RANKING.module, nncf_hooks.RANKING.owner, nncf_hooks.RANKING.method,
                              ("groups_to_rank", "model_to_rank"))
    monkeypatch.setattr(nncf_hooks, "HOOKS", (renamed,))
    with pytest.raises(DependencyError, match="has no parameter model_to_rank; ovq's accuracy control supports NNCF 3.4"):
        nncf_hooks.check_contract()


def test_ranking_hook_binds_by_name_and_is_undone():
    from nncf.quantization.algorithms.accuracy_control.ranker import Ranker

    original = Ranker.rank_groups_of_quantizers
    seen = {}

    def rank(call_nncf, groups, model):
        seen["groups"], seen["model"] = groups, model
        return ["reordered"]

    with accuracy_control_hooks(validate_f32=True, rank=rank):
        # keyword and positional calls reach the planner the same way
        got = Ranker.rank_groups_of_quantizers(None, quantized_model="M", groups_to_rank=["g"],
                                               quantized_model_graph=None, reference_values_for_each_item=[],
                                               approximate_values_for_each_item=[])
        assert got == ["reordered"] and seen == {"groups": ["g"], "model": "M"}
        Ranker.rank_groups_of_quantizers(None, ["h"], "N", None, [], [])
        assert seen == {"groups": ["h"], "model": "N"}
    assert Ranker.rank_groups_of_quantizers is original


def test_hooks_refuse_a_second_concurrent_call_and_are_restored_after_an_error():
    from nncf.quantization.algorithms.accuracy_control.ranker import Ranker

    from ovq.quantization.nncf_hooks import ConcurrentQuantizeError

    original = Ranker.rank_groups_of_quantizers
    busy = pytest.raises(ConcurrentQuantizeError, match="another quantization with accuracy control is running")
    with accuracy_control_hooks(validate_f32=True, rank=lambda c, g, m: c()), busy, \
            accuracy_control_hooks(validate_f32=True, rank=lambda c, g, m: c()):
        pass
    with pytest.raises(RuntimeError, match="boom"), accuracy_control_hooks(validate_f32=True, rank=lambda c, g, m: c()):
        raise RuntimeError("boom")
    assert Ranker.rank_groups_of_quantizers is original
    with accuracy_control_hooks(validate_f32=True, rank=lambda c, g, m: c()):
        pass  # the lock was released on the error path too


def test_quiet_progress_leaves_stdout_and_matplotlib_alone(tmp_path):
    """No process-wide side effects: sys.stdout is never swapped, rich's console and matplotlib's backend are
    as they were, and the peak memory is the call's own."""
    import sys

    import matplotlib
    from conftest import tiny_yolo_ir
    from rich import get_console

    stdout, backend, quiet = sys.stdout, matplotlib.get_backend(), get_console().quiet
    images = random_images(tmp_path / "calib")
    result = quantize(tiny_yolo_ir(tmp_path), images, tmp_path / "q", subset_size=4,
                      advanced=AdvancedQuantizeOptions(bench_seconds=0.0), progress=False)
    assert sys.stdout is stdout and matplotlib.get_backend() == backend and get_console().quiet == quiet
    assert (tmp_path / "q" / "sensitivity.png").stat().st_size > 1000
    import psutil

    assert 0 < result.details.peak_rss_mb <= psutil.Process().memory_info().rss / 2**20 * 2


def test_an_output_folder_that_cannot_be_written_fails_before_any_work(tmp_path, capsys, monkeypatch):
    """`-o /proc/q` was said after calibration, NNCF and the report (120 s for FastestDet on coco128)."""
    from ovq.demo import DEMO_MODEL
    from ovq.quantization import workflow

    def no_work(*args, **kwargs):
        raise AssertionError("the model was read before the output was checked")

    monkeypatch.setattr(workflow, "_float_model", no_work)
    images = random_images(tmp_path / "images")
    assert main(["quantize", str(DEMO_MODEL), "--data", str(images), "-o", "/proc/q", "--no-progress", "-q"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ovq quantize: error: /proc/q: cannot write in /proc: ")


def test_an_error_inside_nncf_is_one_line_and_keeps_its_traceback_at_v(tmp_path, capsys, monkeypatch):
    """ovq's own validation function failing inside NNCF's accuracy control: one line, the whole chain with -v."""
    from ovq.data.synth import write_yolo_dataset
    from ovq.demo import DEMO_MODEL
    from ovq.quantization.accuracy_control import Validator

    data = write_yolo_dataset(tmp_path / "data", n_train=0, n_val=8, n_calib=8, seed=3, width=160, height=160)
    original = Validator.__call__

    def broken_validation(self, compiled, items):
        if self.calls:  # NNCF's second call: the INT8 model
            raise KeyError("a bug in ovq's callback")
        return original(self, compiled, items)

    monkeypatch.setattr(Validator, "__call__", broken_validation)
    args = ["quantize", str(DEMO_MODEL), "--data", str(data), "-o", str(tmp_path / "q"), "--calib-split", "calib",
            "--subset-size", "8", "--max-drop", "0.01", "--bench-time", "0", "--no-progress", "--overflow-fix", "first-layer",
            "--bias-correction", "fast"]
    assert main([*args, "-q"]) == 2
    err = capsys.readouterr().err  # (torch, imported by NNCF, may add its own warning line)
    assert "Traceback" not in err and "NNCF failed" in err.strip().splitlines()[-1]
    assert "a bug in ovq's callback" in err.strip().splitlines()[-1]
    assert main([*args, "-v"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "in broken_validation" in err and "quantize_with_accuracy_control" in err
    assert err.strip().splitlines()[-1].startswith("ovq quantize: error:")
    assert not (tmp_path / "q").exists()


# --- accuracy control quantizes once ----------------------------------------------------------------------


def test_weights_compressed_after_the_fact_are_what_nncf_quantize_writes(tmp_path):
    """The plain model ovq hands to accuracy control keeps float weights; compressing a copy of it gives the model
    nncf.quantize returns, constant for constant."""
    import nncf

    from ovq.demo import DEMO_MODEL
    from ovq.quantization.options import OverflowFix
    from ovq.quantization.overflow import compress_weights, nncf_parameters

    fp = ov.Core().read_model(DEMO_MODEL / "model.xml")
    rng = np.random.default_rng(0)
    calib = nncf.Dataset([rng.integers(0, 256, (1, 320, 320, 3), dtype=np.uint8) for _ in range(4)])
    fix = OverflowFix.FIRST_LAYER

    def quantized(compress: bool) -> ov.Model:
        return nncf.quantize(fp, calib, subset_size=4, fast_bias_correction=True,
                             advanced_parameters=nncf_parameters(fix, compress_weights=compress))

    direct, raw = quantized(True), quantized(False)
    later = raw.clone()
    compress_weights(later)

    def constants(model: ov.Model) -> list[tuple[str, np.ndarray]]:
        return [(op.get_element_type().get_type_name(), op.get_data().copy()) for op in model.get_ordered_ops()
                if op.get_type_name() == "Constant"]

    assert any(t == "i8" for t, _ in constants(direct)) and not any(t == "i8" for t, _ in constants(raw))
    ours, theirs = constants(later), constants(direct)
    assert len(ours) == len(theirs)
    assert all(a[0] == b[0] and np.array_equal(a[1], b[1]) for a, b in zip(ours, theirs))


def test_accuracy_control_starts_from_the_plain_model_instead_of_quantizing_again(tmp_path, monkeypatch, ovq_log):
    import nncf.openvino.quantization.quantize_model as nncf_ov

    from ovq.data.synth import write_yolo_dataset
    from ovq.demo import DEMO_MODEL

    calls = []
    original = nncf_ov.native_quantize_impl
    monkeypatch.setattr(nncf_ov, "native_quantize_impl", lambda **kw: calls.append(kw) or original(**kw))
    data = write_yolo_dataset(tmp_path / "data", n_train=0, n_val=16, n_calib=8, seed=5)
    result = quantize(  # a budget plain INT8 meets: NNCF validates the model it starts from, then stops
        DEMO_MODEL, data, tmp_path / "q", max_drop=0.5, calib_split="calib", val_split="val", subset_size=8,
        advanced=AdvancedQuantizeOptions(bench_seconds=0.0, bias_correction="fast", latency_runs=0,
                                         bootstrap_rounds=0), progress=False,
    )
    plain = max(1, len(result.report["quantization"]["overflow_fix_trials"]))  # 2 on a CPU without VNNI
    plain += result.details.collapse.retry is not None
    assert len(calls) == plain, "accuracy control quantized the model again"
    assert any("not quantized a second time" in m for m in ovq_log.messages())
    # NNCF validated the plain model ovq scored: the same first INT8 mAP
    assert result.report["first_int8_metric"] == pytest.approx(result.details.collapse.first.map50_95, abs=5e-5)  # report: 4 decimals


def test_torchs_cuda_warning_from_nncfs_backend_check_is_not_shown_unless_vv():
    """NNCF imports torch to ask whether the model is a torch model; torch warned "No CUDA runtime is found" on
    every `ovq quantize` of an OpenVINO model."""
    pytest.importorskip("torch")
    code = ("import sys; from ovq.cli import _setup_logging; _setup_logging(int(sys.argv[1]), False); "
            "import nncf.common.utils.backend as b; b.is_torch_model(object())")

    def stderr(verbose: int) -> str:
        return subprocess.run([sys.executable, "-c", code, str(verbose)], capture_output=True, text=True,
                              check=True, timeout=120).stderr
    loud = stderr(2)
    if "No CUDA runtime is found" not in loud:
        pytest.skip("torch found a CUDA runtime here: it has nothing to warn about")
    assert "No CUDA runtime" not in stderr(0)


def test_calibration_takes_images_spread_over_the_split_not_its_first_ones(tiny, tmp_path):
    """The first subset_size images of a sorted folder were one camera's, or a video's first seconds of frames."""
    from ovq.data.images import read_image
    from ovq.quantization.inputs import read_inputs, spread_over
    from ovq.quantization.options import QuantizeOptions

    assert spread_over(list(range(10)), 4) == [0, 2, 5, 7] and spread_over(list(range(3)), 5) == [0, 1, 2]
    assert spread_over(list(range(300)), 300) == list(range(300))
    data = random_images(tmp_path / "frames", n=9)  # 0.png .. 8.png
    detector = Detector(tiny)
    inputs = read_inputs(data, tiny, detector, QuantizeOptions(subset_size=3))
    expected = [detector.preprocess(read_image(data / f"{i}.png"))[0] for i in (0, 3, 6)]
    assert len(inputs.calib_tensors) == 3
    for got, want in zip(inputs.calib_tensors, expected, strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(("args", "said"), [
    (["--max-drop", "-1e-3"], "--max-drop: expected a number >= 0 and <= 1, got -0.001"),
    (["--subset-size", "0"], "--subset-size: expected an integer >= 1, got 0"),
    (["--rank-by", "accuracy-per-latency"],
     "--rank-by: accuracy-per-latency orders the reverts of accuracy control: it needs --max-drop"),
    (["--ranking-subset", "0"], "--ranking-subset: expected an integer >= 1, got 0"),
])
def test_a_bad_quantize_option_is_named_by_its_flag(tmp_path, capsys, args, said):
    """QuantizeOptions names its fields ('max_drop: ...'), right for YAML and Python but not for a command line."""
    out = tmp_path / "int8"
    assert main(["quantize", str(tmp_path / "m.onnx"), "--data", str(tmp_path), "-o", str(out), *args, "-q"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"ovq quantize: error: {said}"]
    assert not out.exists()


@pytest.mark.parametrize(("out", "said"), [
    ("ds/images/train", "is inside the dataset's images folder {ds}/images: its files would be read as data"),
    ("ds", "is the folder of the dataset {ds}: the INT8 model and its report would go in among the data"),
    (".", "holds the dataset {ds}: the INT8 model and its report would go in among the data"),
], ids=["its calibration images", "the dataset", "above it"])
def test_quantize_refuses_an_output_folder_in_or_around_its_dataset(tiny, tmp_path, capsys, out, said):
    """`ovq quantize M --data ds -o ds/images/train` wrote model.xml, the report and sensitivity.png among the
    calibration images (the plot was a calibration image of the next run); `-o ds` or `-o .` put them among the
    data. Refused before any work, as a pipeline's quantize.output is."""
    ds = _split_dataset(tmp_path / "ds", "0 0.5 0.5 0.2 0.2")
    before = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    target = tmp_path / out
    assert main(["quantize", str(tiny), "--data", str(ds), "-o", str(target), "--calib-split", "train",
                 "--bench-time", "0", "-q"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"ovq quantize: error: {target}: {said.format(ds=ds)}; give a folder outside it"]
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == before
