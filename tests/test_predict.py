"""`ovq predict` on the real shared detectors."""

from __future__ import annotations

import json

import cv2
import numpy as np
import openvino as ov
import pytest

from ovq.cli import main
from ovq.core.geometry import box_iou
from ovq.model.detector import Detector

pytestmark = pytest.mark.slow


def _reference_yolox(onnx_path, image, conf=0.4, iou=0.65, size=416):
    """YOLOX's published demo pipeline, written out independently: preprocess, grid decode, per-class NMS."""
    r = min(size / image.shape[0], size / image.shape[1])
    resized = cv2.resize(image, (int(image.shape[1] * r), int(image.shape[0] * r)), interpolation=cv2.INTER_LINEAR)
    padded = np.full((size, size, 3), 114, np.uint8)
    padded[: resized.shape[0], : resized.shape[1]] = resized
    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(onnx_path)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    out = compiled(padded.transpose(2, 0, 1)[None].astype(np.float32))[0][0]
    rows = []
    for stride in (8, 16, 32):
        n = size // stride
        for y in range(n):
            for x in range(n):
                rows.append((x, y, stride))
    grid = np.array(rows, np.float32)
    cx = (out[:, 0] + grid[:, 0]) * grid[:, 2]
    cy = (out[:, 1] + grid[:, 1]) * grid[:, 2]
    w = np.exp(out[:, 2]) * grid[:, 2]
    h = np.exp(out[:, 3]) * grid[:, 2]
    scores = out[:, 4:5] * out[:, 5:]
    found = []
    for c in range(scores.shape[1]):
        sel = scores[:, c] > conf
        if not sel.any():
            continue
        boxes = np.stack([cx[sel] - w[sel] / 2, cy[sel] - h[sel] / 2, w[sel], h[sel]], 1) / r
        keep = cv2.dnn.NMSBoxes(boxes.tolist(), scores[sel, c].tolist(), conf, iou)
        for k in np.array(keep).reshape(-1):
            x, y, bw, bh = boxes[k]
            found.append((c, float(scores[sel, c][k]), [x, y, x + bw, y + bh]))
    return found


def test_yolox_finds_dog_and_bicycle_like_the_reference(assets, tmp_path):
    onnx = assets / "models/yolox_nano/yolox_nano.onnx"
    out = tmp_path / "pred"
    assert main(["predict", str(onnx), str(assets / "images/dog.jpg"), "-o", str(out), "--conf", "0.4", "--precision", "f32", "-q"]) == 0
    result = json.loads((out / "predictions.json").read_text())
    assert len(result) == 1 and result[0]["file"].endswith("dog.jpg")
    dets = result[0]["detections"]
    labels = {d["label"] for d in dets}
    assert {"dog", "bicycle"} <= labels
    assert all(d["confidence"] >= 0.4 for d in dets)
    reference = _reference_yolox(onnx, cv2.imread(str(assets / "images/dog.jpg")))
    assert len(reference) == len(dets)
    for cls, score, box in reference:
        ours = [d for d in dets if d["class_id"] == cls]
        best = min(ours, key=lambda d: np.abs(np.array(d["xyxy"]) - box).max())
        assert np.abs(np.array(best["xyxy"]) - np.array(box)).max() <= 5.0
        assert abs(best["confidence"] - score) < 0.02
    annotated = cv2.imread(str(out / "dog.jpg"))
    assert annotated is not None and annotated.shape == cv2.imread(str(assets / "images/dog.jpg")).shape


def test_omz_person_detector_finds_people_in_street(assets):
    det = Detector(assets / "models/person-detection-retail-0013-fp32", conf=0.5)
    assert det.info.family == "ssd" and det.info.input_size == (320, 544)
    image = cv2.imread(str(assets / "images/street.jpg"))
    dets = det(image)
    assert len(dets) >= 3 and set(dets.class_id.tolist()) == {0} and det.labels == ["person"]
    h, w = image.shape[:2]
    assert (dets.xyxy[:, 2] <= w).all() and (dets.xyxy[:, 3] <= h).all()
    assert (dets.xyxy[:, 3] - dets.xyxy[:, 1] > dets.xyxy[:, 2] - dets.xyxy[:, 0]).mean() > 0.7  # people stand


def test_omz_person_detector_says_person_where_a_user_looks(assets, tmp_path, capsys):
    """Its IR names no class and SSD labels count the background: detections read '1' (printed, JSON, drawn)."""
    out = tmp_path / "out"
    code = main(["predict", str(assets / "models/person-detection-retail-0013-fp32"),
                 str(assets / "images/person.jpg"), "-o", str(out), "--conf", "0.3", "-q"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "person.jpg: person 1.00, person 0.4" in printed
    found = json.loads((out / "predictions.json").read_text())[0]["detections"]
    assert [(d["class_id"], d["label"]) for d in found] == [(0, "person")] * 2


def test_fastestdet_finds_the_dog_where_yolox_does(assets):
    image = cv2.imread(str(assets / "images/dog.jpg"))
    fast = Detector(assets / "models/fastestdet/FastestDet.onnx", conf=0.5)
    yolox = Detector(assets / "models/yolox_nano/yolox_nano.onnx", conf=0.5)
    assert fast.info.family == "fastestdet" and fast.info.resize == "stretch"
    a, b = fast(image), yolox(image)
    dog = 16
    assert dog in a.class_id and dog in b.class_id
    iou = box_iou(a.xyxy[a.class_id == dog], b.xyxy[b.class_id == dog]).max()
    assert iou > 0.6


def test_predict_folder_and_unreadable_image(assets, tmp_path, capsys):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    out = tmp_path / "o"
    code = main(["predict", str(assets / "models/fastestdet/FastestDet.onnx"), str(bad), "-o", str(out), "-q"])
    assert code == 2 and "broken.jpg: not a readable image" in capsys.readouterr().err
    assert not out.exists()


def test_predict_never_writes_over_its_input_images(tiny, tmp_path, capsys):
    """`-o` the images' own folder once replaced each image by its annotated copy (a second run then detected on
    the drawings)."""
    folder = tmp_path / "pics"
    folder.mkdir()
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    cv2.imwrite(str(folder / "a.jpg"), image)
    before = (folder / "a.jpg").read_bytes()
    assert main(["predict", str(tiny), str(folder), "-o", str(folder), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "a.jpg: is an input image" in err[0], err
    assert (folder / "a.jpg").read_bytes() == before and sorted(p.name for p in folder.iterdir()) == ["a.jpg"]
    assert main(["predict", str(tiny), str(folder), "-o", str(folder / "annotated"), "-q"]) == 0
    assert (folder / "a.jpg").read_bytes() == before and (folder / "annotated/a.jpg").exists()


@pytest.mark.parametrize(("given", "out", "said"), [
    ("ds/images/val", "ds/images/val/out", "is inside the dataset's images folder {t}/ds/images"),
    ("ds/images/val", "ds/labels/val/out", "is inside the dataset's labels folder {t}/ds/labels"),
    ("ds/images/val/a.jpg", "ds/images/train/out", "is inside the dataset's images folder {t}/ds/images"),
    ("unlabelled/images/val", "unlabelled/images/val/out",
     "is inside the input folder {t}/unlabelled/images/val, in a dataset's images folder"),
], ids=["into the input split", "into labels", "into another split", "input in an images folder"])
def test_predict_refuses_an_output_folder_inside_a_dataset(tiny, tmp_path, capsys, given, out, said):
    """`ovq predict M coco128/images/train2017 -o coco128/images/train2017/out` wrote the annotated copies among
    the dataset's images (the next eval or quantize of a data.yaml naming that folder read them as data). Now one
    line, exit 2, nothing written; a plain folder of photos may still hold its own out/."""
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    for folder in ("ds/images/val", "ds/images/train", "ds/labels/val", "unlabelled/images/val", "photos"):
        (tmp_path / folder).mkdir(parents=True)
    for folder in ("ds/images/val", "unlabelled/images/val", "photos"):
        cv2.imwrite(str(tmp_path / folder / "a.jpg"), image)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert main(["predict", str(tiny), str(tmp_path / given), "-o", str(tmp_path / out), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [(f"ovq predict: error: {tmp_path / out}: {said.format(t=tmp_path)}: the annotated images would be "
                    "read as its data; give a folder outside it")]
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert main(["predict", str(tiny), str(tmp_path / "photos"), "-o", str(tmp_path / "photos/out"), "-q"]) == 0
    assert main(["predict", str(tiny), str(tmp_path / given), "-o", str(tmp_path / "ds/out"), "-q"]) == 0


@pytest.mark.parametrize(("args", "said"), [
    (["--iou", "nan"], "--iou nan: expected a number from 0 to 1"),
    (["--conf", "-0.5"], "--conf -0.5: expected a number from 0 to 1"),
    (["--conf", "1.5"], "--conf 1.5: expected a number from 0 to 1"),
    (["--max-det", "0"], "--max-det 0: expected at least 1"),
    (["--classes", "a,c"], "--classes a,c: the model has no class 'c'"),
    (["--classes", "7"], "--classes 7: class id 7 is out of range; the model has 2 classes"),
])
def test_bad_options_are_refused_by_their_flag(tiny, tmp_path, capsys, args, said):
    """They were named as the Python API names them: 'conf 1.5: ...', 'max_det 0: ...', 'classes: ...'."""
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((64, 64, 3), np.uint8))
    assert main(["predict", str(tiny), str(tmp_path / "a.png"), "-o", str(tmp_path / "o"), *args, "-q"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"ovq predict: error: {said}"]
    assert not (tmp_path / "o").exists()


def test_eval_names_a_bad_conf_by_its_flag(tiny, tmp_path, capsys):
    assert main(["eval", str(tiny), "--data", str(tmp_path), "--conf", "2", "-q"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == ["ovq eval: error: --conf 2: expected a number from 0 to 1"]


class _Watching(Detector):
    """The real detector, noting before each image how many annotated images the output's temporary twin holds."""

    def __init__(self, model, out_dir):
        super().__init__(model, precision="f32", cache=False)
        self.out_dir, self.seen = out_dir, []

    def __call__(self, image, **kwargs):
        twins = list(self.out_dir.parent.glob(f".{self.out_dir.name}.tmp-*"))
        self.seen.append(sum(len(list(t.glob("*.jpg"))) for t in twins))
        return super().__call__(image, **kwargs)


def test_predict_writes_each_annotated_image_as_it_goes_and_nothing_when_one_fails(tiny, tmp_path):
    """Every annotated image was held in memory until the last one was done: 144 MB an 8000x6000 picture, 2.2 GB
    peak for 12 of them, so a folder of camera photos ran out of memory. Still all or nothing."""
    from ovq.core.errors import DatasetError
    from ovq.evaluation.prediction import predict

    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((64, 80, 3), 60 * i, np.uint8))
    out = tmp_path / "out"
    detector = _Watching(tiny, out)
    assert len(predict(detector, [folder], out)) == 3
    assert detector.seen == [0, 1, 2] and sorted(p.name for p in out.iterdir()) == [
        "0.jpg", "1.jpg", "2.jpg", "predictions.json"]
    (folder / "3.png").write_bytes(b"not a png")
    again = tmp_path / "again"
    with pytest.raises(DatasetError, match="3.png: not a readable image"):
        predict(_Watching(tiny, again), [folder], again)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]


def _pictures(folder, names):
    folder.mkdir(exist_ok=True)
    for i, name in enumerate(names):
        cv2.imwrite(str(folder / name), np.full((64, 80, 3), 40 * i, np.uint8))
    return [str(folder / n) for n in names]


def _listed(out):
    """The annotated images predictions.json lists (each input's stem as .jpg, as predict names them)."""
    from pathlib import Path

    return sorted(Path(r["file"]).stem + ".jpg" for r in json.loads((out / "predictions.json").read_text()))


def test_a_second_predict_into_the_folder_leaves_only_what_its_json_lists(tiny, tmp_path, capsys):
    """`ovq predict M a.png b.png -o out` then `ovq predict M c.png -o out`: out/ held a.jpg and b.jpg beside a
    predictions.json listing only c.png. Now the earlier run's images that this one does not make again are removed
    as the new result moves in; the user's own files stay, also an image of the earlier run rewritten since."""
    import os
    import time

    a, b, c = _pictures(tmp_path / "in", ["a.png", "b.png", "c.png"])
    out = tmp_path / "out"
    assert main(["predict", str(tiny), a, b, c, "-o", str(out), "-q"]) == 0
    assert _listed(out) == ["a.jpg", "b.jpg", "c.jpg"]
    (out / "notes.txt").write_text("mine")  # the user's own files in the folder
    (out / "mine.jpg").write_bytes(b"mine")
    later = time.time() + 5
    os.utime(out / "b.jpg", (later, later))  # b.jpg rewritten after ovq wrote it: not ovq's any more
    assert main(["predict", str(tiny), c, "-o", str(out), "-q"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["b.jpg", "c.jpg", "mine.jpg", "notes.txt", "predictions.json"]
    assert _listed(out) == ["c.jpg"] and json.loads((out / "predictions.json").read_text())[0]["annotated"] == "c.jpg"
    assert (out / "notes.txt").read_text() == "mine" and (out / "mine.jpg").read_bytes() == b"mine"


def test_an_earlier_json_without_annotated_names_or_with_foreign_ones(tiny, tmp_path):
    """A predictions.json from before the names were recorded: each file's name is worked out as predict names it.
    One naming a path outside the folder, or a file that is not an annotated image, removes nothing there."""
    import shutil

    a, b = _pictures(tmp_path / "in", ["a.png", "b.png"])
    out = tmp_path / "out"
    assert main(["predict", str(tiny), a, b, "-o", str(out), "-q"]) == 0
    records = json.loads((out / "predictions.json").read_text())
    for r in records:
        r.pop("annotated", None)
    (out / "predictions.json").write_text(json.dumps(records))
    assert main(["predict", str(tiny), b, "-o", str(out), "-q"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["b.jpg", "predictions.json"]

    (tmp_path / "outside.jpg").write_bytes(b"x")
    shutil.copy(tmp_path / "in/a.png", out / "data.csv")
    (out / "predictions.json").write_text(json.dumps([{"file": a, "annotated": "../outside.jpg"},
                                                      {"file": a, "annotated": "data.csv"}]))
    assert main(["predict", str(tiny), b, "-o", str(out), "-q"]) == 0
    assert (tmp_path / "outside.jpg").read_bytes() == b"x" and (out / "data.csv").exists()
