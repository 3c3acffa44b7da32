"""A dataset labelling some of a model's classes (a COCO JSON of a few of COCO's categories, an 80-class model):
matched by name, in ovq eval and in ovq quantize; one line when its names are not the model's."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import pycocotools_map

from ovq.cli import main
from ovq.evaluation.accuracy import dataset_classes
from ovq.model.detector import Detector


def _coco(tmp_path: Path, categories: list[tuple[int, str]]) -> Path:
    """Six random 64x64 images; each has a box of every category listed (the tiny model's boxes land anywhere)."""
    rng = np.random.default_rng(3)
    images = tmp_path / "images"  # beside the JSON, where ovq looks
    images.mkdir(exist_ok=True)
    doc = {"images": [], "annotations": [], "categories": [{"id": i, "name": n} for i, n in categories]}
    for k in range(6):
        name = f"{k}.png"
        cv2.imwrite(str(images / name), rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
        doc["images"].append({"id": 100 + k, "file_name": name, "width": 64, "height": 64})
        for cat, _ in categories:
            x, y = (float(v) for v in rng.uniform(0, 30, 2))
            doc["annotations"].append({"id": len(doc["annotations"]) + 1, "image_id": 100 + k, "category_id": cat,
                                       "bbox": [x, y, 24.0, 30.0], "area": 720.0, "iscrowd": 0})
    path = tmp_path / "instances_val.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize("categories", [[(7, "b")], [(3, "B"), (4, "a")]], ids=["one of two", "in another order"])
def test_eval_matches_a_datasets_classes_to_the_models_by_name(tiny, tmp_path, capsys, categories):
    """Before: 'the dataset has 1 classes, the model 2; class indices must mean the same thing', exit 2; and a JSON
    listing the model's classes in another order was scored by position (a warning, 'b' taken for 'a')."""
    gt_file = _coco(tmp_path, categories)
    results, metrics = tmp_path / "results.json", tmp_path / "metrics.json"
    assert main(["eval", str(tiny), "--data", str(gt_file), "--save-json", str(results), "--json", str(metrics),
                 "--conf", "0", "--no-progress"]) == 0
    records = json.loads(results.read_text())
    assert records and {r["category_id"] for r in records} == {cat for cat, _ in categories}
    assert json.loads(metrics.read_text())["map50_95"] == pytest.approx(pycocotools_map(gt_file, results), abs=1e-4)
    pairs = ", ".join(f"{name} = {'ab'.index(name.lower())}" for _, name in sorted(categories))
    assert f"its {len(categories)} classes matched to {tiny}'s by name ({pairs}); only they are scored" in (
        capsys.readouterr().err)


def test_eval_refuses_a_dataset_whose_names_are_not_the_models(tiny, tmp_path, capsys):
    gt_file = _coco(tmp_path, [(1, "b"), (2, "zebra"), (3, "cat")])
    assert main(["eval", str(tiny), "--data", str(gt_file), "--no-progress", "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    said = (f"{gt_file}: 'zebra', 'cat' are not among the model's 2 classes ('a', 'b'), so the dataset's 3 classes "
            "cannot be matched to the model's by name (nor by position: the model has 2)")
    assert err == [f"ovq eval: error: {said}"]


def test_quantize_validates_on_a_dataset_of_some_of_the_models_classes(tiny, tmp_path):
    """Before: the validation split was refused ('accuracy not measured'; with max_drop, exit 2)."""
    from ovq.quantization.inputs import read_inputs
    from ovq.quantization.options import QuantizeOptions

    _yolo_folder(tmp_path, "0 0.5 0.5 0.4 0.5\n")
    (tmp_path / "classes.txt").write_text("b\n")
    detector = Detector(tiny)
    inputs = read_inputs(tmp_path, tiny, detector, QuantizeOptions(subset_size=4, max_drop=0.01))
    assert inputs.val is not None and dataset_classes(inputs.val) == (1,) and inputs.val.names == ["a", "b"]
    assert all(s.class_id.tolist() == [1] for s in inputs.val.samples)
    scored = inputs.score(detector.compiled, detector, conf=0.0)
    assert list(scored.per_class) == ["b"]


@pytest.mark.slow
def test_yolox_on_coco128s_people_and_cars_alone(assets, tmp_path, capsys):
    doc = json.loads((assets / "coco128/annotations/instances_train2017.json").read_text())
    doc["categories"] = [c for c in doc["categories"] if c["name"] in ("person", "car")]
    doc["annotations"] = [a for a in doc["annotations"] if a["category_id"] in (1, 3)]
    gt_file = tmp_path / "instances_train2017.json"
    gt_file.write_text(json.dumps(doc))
    results, metrics = tmp_path / "results.json", tmp_path / "metrics.json"
    assert main(["eval", str(assets / "models/yolox_nano/yolox_nano.onnx"), "--data", str(gt_file), "--images",
                 str(assets / "coco128/images/train2017"), "--save-json", str(results), "--json", str(metrics),
                 "--no-progress", "-q"]) == 0
    said = json.loads(metrics.read_text())
    assert set(said["per_class"]) == {"person", "car"}
    assert said["map50_95"] == pytest.approx(pycocotools_map(gt_file, results), abs=1e-3)
    # the same person AP as the 80-class evaluation of the same images on this machine (no figure of one CPU's)
    full = tmp_path / "full.json"
    assert main(["eval", str(assets / "models/yolox_nano/yolox_nano.onnx"), "--data",
                 str(assets / "coco128/annotations/instances_train2017.json"), "--images",
                 str(assets / "coco128/images/train2017"), "--json", str(full), "--no-progress", "-q"]) == 0
    assert said["per_class"]["person"] == pytest.approx(json.loads(full.read_text())["per_class"]["person"], abs=1e-3)


def _yolo_folder(root: Path, line: str = "5 0.5 0.5 0.4 0.5\n") -> Path:
    """train and val splits of four images each, labelled with ``line``, and no classes.txt."""
    rng = np.random.default_rng(6)
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for k in range(4):
            cv2.imwrite(str(root / "images" / split / f"{k}.png"), rng.integers(0, 256, (64, 64, 3), np.uint8))
            (root / "labels" / split / f"{k}.txt").write_text(line)
    return root


def test_quantize_calibrates_on_a_folder_whose_classes_are_not_the_models(tiny, tmp_path, ovq_log):
    """A YOLO folder naming no classes was bounded by the model's: a person detector (one class) could not even
    calibrate on coco128's images ('000000000009.txt:1: class 45 is out of range 0..0 (1 names)', exit 2)."""
    from ovq.core.errors import DatasetError
    from ovq.quantization.inputs import read_inputs
    from ovq.quantization.options import QuantizeOptions

    data = _yolo_folder(tmp_path / "data")
    detector = Detector(tiny)
    inputs = read_inputs(data, tiny, detector, QuantizeOptions(subset_size=4))
    assert len(inputs.calib_tensors) == 4 and inputs.val is None
    said = [m for m in ovq_log.messages() if m.startswith("accuracy not measured")]
    assert len(said) == 1 and "0.txt:1: class 5 is out of range 0..1 (2 names, the model's: the dataset" in said[0]
    with pytest.raises(DatasetError, match=r"0\.txt:1: class 5 is out of range 0\.\.1 \(2 names, the model's: the"):
        read_inputs(data, tiny, detector, QuantizeOptions(subset_size=4, max_drop=0.01))


def test_eval_says_whose_class_names_bounded_the_labels(tiny, tmp_path, capsys):
    """'0.txt:1: class 5 is out of range 0..1 (2 names)' read as a broken dataset: the names were the model's.
    Labels of classes past the model's are still refused, but as a dataset that is not the model's."""
    data = _yolo_folder(tmp_path / "data")
    assert main(["eval", str(tiny), "--data", str(data), "--no-progress", "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    said = (f"{data}/labels/val/0.txt:1: class 5 is out of range 0..1 (2 names, the model's: the dataset names none "
            "in classes.txt or names.txt)")
    assert err == [f"ovq eval: error: {said}"]
    gt_file = _coco(tmp_path, [(1, "a"), (2, "b"), (3, "zebra")])
    assert main(["eval", str(tiny), "--data", str(gt_file), "--no-progress", "-q"]) == 2
    assert capsys.readouterr().err.strip().endswith("; a copy of the dataset labelling only 'a', 'b' would be scored")


def test_eval_of_a_model_that_names_no_classes_says_so(tiny, tmp_path, capsys):
    """An SSD IR an earlier ovq converted names none: 'not among the model's 0 classes ()' and 'a copy of the dataset
    labelling only  would be scored' would have been said of it."""
    import openvino as ov

    from ovq.core.metadata import read_info, write_info

    model = ov.Core().read_model(str(tiny))
    write_info(model, replace(read_info(model), labels=[]))
    ov.save_model(model, str(tmp_path / "unnamed.xml"))
    gt_file = _coco(tmp_path, [(7, "b")])
    assert main(["eval", str(tmp_path / "unnamed.xml"), "--data", str(gt_file), "--no-progress", "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    said = ("the model names no classes, so the dataset's ('b') cannot be matched to its class ids; convert the model "
            "again (--labels names them)")
    assert err == [f"ovq eval: error: {gt_file}: {said}"]


def test_model_api_labels_with_underscores_match_coco_names_with_spaces(tiny, tmp_path, capsys):
    """Model API's rt_info labels are one string, spaces made '_' ('traffic_light'): a COCO JSON of 'traffic light'
    was refused as "'traffic light' is not among the model's 2 classes ('traffic_light', 'hot_dog')"."""
    import openvino as ov

    from ovq.core.metadata import read_info, write_info

    model = ov.Core().read_model(str(tiny))
    write_info(model, replace(read_info(model), labels=["traffic_light", "hot_dog"]))
    ov.save_model(model, str(tmp_path / "model_api.xml"))
    gt_file = _coco(tmp_path, [(10, "traffic light")])
    assert main(["eval", str(tmp_path / "model_api.xml"), "--data", str(gt_file), "--no-progress"]) == 0
    assert "its 1 classes matched to" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--save-json", "--json"])
def test_eval_refuses_to_write_over_its_dataset_file(tiny, tmp_path, capsys, flag):
    """`ovq eval M --data gt.json --save-json gt.json` scored the model, then replaced the COCO ground truth with
    its predictions ('wrote gt.json', exit 0); --json gt.json replaced it with the metrics."""
    gt = _coco(tmp_path, [(7, "b")])
    before = gt.read_bytes()
    assert main(["eval", str(tiny), "--data", str(gt), flag, str(gt), "--no-progress", "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [(f"ovq eval: error: {flag} {gt}: is the dataset file (--data); writing there would replace it (give "
                   "another file)")]
    assert gt.read_bytes() == before



def _yolo(tmp_path: Path) -> Path:
    """A YOLO folder: images/val/0.png labelled, 1.png a background image (no label file)."""
    rng = np.random.default_rng(5)
    root = tmp_path / "yolo"
    (root / "images/val").mkdir(parents=True)
    (root / "labels/val").mkdir(parents=True)
    for k in range(2):
        cv2.imwrite(str(root / f"images/val/{k}.png"), rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    (root / "labels/val/0.txt").write_text("1 0.5 0.5 0.4 0.4\n")
    return root


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(("layout", "out", "said"), [
    ("yolo", "labels/val/0.txt", "is a label file of the dataset {data}"),
    ("yolo", "images/val/0.png", "is an image of the dataset {data}"),
    ("yolo", "labels/val/1.txt", "is a label file of the dataset {data}"),  # the background image's label to be
    ("yolo", "labels/val/results.json", "is inside the dataset's folder {data}/labels"),
    ("yolo", "images/train/results.json", "is inside the dataset's folder {data}/images"),
    ("coco", "images/3.png", "is an image of the dataset {data}"),
    ("coco", "images/results.json", "is inside the dataset's folder {root}/images"),
], ids=["yolo label", "yolo image", "background label", "yolo labels folder", "other split", "coco image",
        "coco image folder"])
@pytest.mark.parametrize("flag", ["--save-json", "--json"])
def test_eval_refuses_to_write_into_its_dataset(tiny, tmp_path, capsys, layout, out, said, flag):
    """`ovq eval M --data yolo/ --save-json yolo/labels/val/0.txt` replaced the label file with the results (exit 0;
    the next eval failed on it as a malformed label line), and `--save-json yolo/images/val/0.png` an image; only
    the dataset's top file was refused. Now any file of the dataset, or a path in its folders: one line, exit 2."""
    if layout == "yolo":
        root = data = _yolo(tmp_path)
    else:
        root, data = tmp_path, _coco(tmp_path, [(7, "b")])
    before = _tree(root)
    target = root / out
    code = main(["eval", str(tiny), "--data", str(data), flag, str(target), "--conf", "0", "--no-progress", "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == [(f"ovq eval: error: {flag} {target}: {said.format(data=data, root=root)}; writing there would "
                    "change the dataset (give a file outside it)")]
    assert _tree(root) == before


def test_eval_writes_beside_its_dataset_folders(tiny, tmp_path):
    """A results file at the YOLO folder's top, beside images/ and labels/, is no file of the dataset: written."""
    root = _yolo(tmp_path)
    assert main(["eval", str(tiny), "--data", str(root), "--save-json", str(root / "results.json"), "--conf", "0",
                 "--no-progress", "-q"]) == 0
    assert isinstance(json.loads((root / "results.json").read_text()), list)


def test_a_nameless_yolo_folder_is_not_scored_against_coco_category_slots(tmp_path, capsys):
    """A YOLO folder naming no classes (coco128's labels: COCO's 80 classes, 0..79) and a model labelled with COCO's
    91 category slots (torchvision's weights, `--labels coco91`): the folder's ids were taken as the slots (11, stop
    sign, scored as 'N/A'; 12, parking meter, as 'stop sign') and eval printed the garbage, exit 0. Now one line
    saying why and what to add; with a classes.txt its classes are matched to the slots by name."""
    from conftest import tiny_yolo_ir

    from ovq.core.labels import COCO80, COCO91

    model = tiny_yolo_ir(tmp_path, labels=COCO91)
    root = _yolo(tmp_path)
    (root / "labels/val/0.txt").write_text("11 0.5 0.5 0.4 0.4\n0 0.3 0.3 0.2 0.2\n")
    assert main(["eval", str(model), "--data", str(root), "--conf", "0", "--no-progress", "-q"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [(
        f"ovq eval: error: {root}: the dataset names no classes, so its class ids would be the model's, but the "
        "model's 90 classes are category slots with 10 'N/A' gaps (as torchvision's COCO weights number COCO's "
        "categories), which YOLO class ids do not follow; name the dataset's classes, one a line, in classes.txt "
        "beside images/ and labels/ (COCO's 80 for COCO data) and they are matched to the model's by name")]
    (root / "classes.txt").write_text("\n".join(COCO80) + "\n")
    metrics = tmp_path / "metrics.json"
    assert main(["eval", str(model), "--data", str(root), "--conf", "0", "--json", str(metrics), "--no-progress",
                 "-q"]) == 0
    assert sorted(json.loads(metrics.read_text())["per_class"]) == ["person", "stop sign"]


@pytest.mark.parametrize("out", ["val.txt", "train.txt", "lists/train/results.json"],
                         ids=["the split's list", "another split's list", "another split's folder"])
@pytest.mark.parametrize("flag", ["--save-json", "--json"])
def test_eval_refuses_to_write_over_a_split_image_list(tiny, tmp_path, capsys, flag, out):
    """A data.yaml may name a .txt list of image paths as a split (`val: val.txt`): `ovq eval M --data data.yaml
    --save-json val.txt` wrote the results over the list, exit 0, and the next run failed on it (train.txt, another
    split's list, too). Now one line, exit 2, the list intact; also a file in a folder another split names."""
    root = _yolo(tmp_path)
    (root / "lists/train").mkdir(parents=True)
    (root / "val.txt").write_text("images/val/0.png\nimages/val/1.png\n")
    (root / "train.txt").write_text("images/val/0.png\n")
    data = root / "data.yaml"
    data.write_text("val: val.txt\ntrain: [train.txt, lists/train]\nnames: [a, b]\n")
    before = _tree(root)
    target = root / out
    code = main(["eval", str(tiny), "--data", str(data), flag, str(target), "--conf", "0", "--no-progress", "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    said = f"is inside the dataset's folder {root / 'lists/train'}" if out.startswith("lists") else (
        f"is an image list of the dataset {data}")
    assert code == 2
    assert err == [(f"ovq eval: error: {flag} {target}: {said}; writing there would change the dataset (give a file "
                    "outside it)")]
    assert _tree(root) == before
