"""Datasets: the four layouts, boxes in pixels, and every label error named by file and line."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from ovq.core.errors import DatasetError
from ovq.core.geometry import box_iou
from ovq.core.labels import COCO80
from ovq.data.datasets import image_size, label_path_for, load_dataset
from ovq.data.images import list_images


def _image(path: Path, width: int, height: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((height, width, 3), 90, np.uint8)
    assert cv2.imwrite(str(path), img)
    return path


def _yolo_folder(root: Path, split: str = "val", names: list[str] | None = None) -> Path:
    """Three images: one labelled, one background (no label file), one with an empty label file."""
    _image(root / "images" / split / "a.png", 200, 100)
    _image(root / "images" / split / "b.png", 64, 48)
    _image(root / "images" / split / "c.jpg", 50, 50)
    labels = root / "labels" / split
    labels.mkdir(parents=True)
    (labels / "a.txt").write_text("1 0.5 0.5 0.2 0.4\n\n0 0.1 0.9 0.2 0.2\n")
    (labels / "c.txt").write_text("")
    if names:
        (root / "classes.txt").write_text("\n".join(names) + "\n")
    return root


def test_yolo_folder_boxes_in_original_pixels(tmp_path):
    root = _yolo_folder(tmp_path / "ds", split="val2017", names=["cat", "dog"])
    ds = load_dataset(root, split="val")  # 'val' finds the only folder starting with it
    assert ds.split == "val2017" and ds.labelled and ds.names == ["cat", "dog"] and len(ds) == 3
    a, b, c = ds.samples
    assert (a.width, a.height) == (200, 100) and (b.width, b.height) == (64, 48)
    np.testing.assert_allclose(a.xyxy, [[80, 30, 120, 70], [0, 80, 40, 100]], atol=1e-4)
    assert a.class_id.tolist() == [1, 0] and a.xyxy.dtype == np.float32 and a.class_id.dtype == np.int64
    assert b.xyxy.shape == (0, 4) and c.class_id.shape == (0,)  # missing and empty label files: background


def test_a_blank_line_among_the_class_names_is_refused_not_dropped(tmp_path):
    """Dropping it moved 'dog' onto class 1, where the labels mean the blank line's class."""
    root = _yolo_folder(tmp_path / "ds", names=["cat", "", "dog"])
    with pytest.raises(DatasetError, match=r"classes\.txt: line 2 is blank: class ids follow the lines"):
        load_dataset(root)
    (root / "classes.txt").write_text("cat\ndog\n\n\n")  # blank lines at the end name no class: fine
    assert load_dataset(root).names == ["cat", "dog"]


def test_yolo_folder_names_from_argument_bound_the_classes(tmp_path):
    root = _yolo_folder(tmp_path / "ds")
    assert load_dataset(root, names=["x", "y", "z"]).names == ["x", "y", "z"]
    assert load_dataset(root).names == ["0", "1"]  # no names anywhere: numbered up to the largest id
    with pytest.raises(DatasetError, match=r"a\.txt:1: class 1 is out of range 0..0"):
        load_dataset(root, names=["only"])


def test_yolo_folder_takes_the_images_in_a_splits_subfolders_as_its_yaml_does(tmp_path):
    """images/val/cam1/d.png was left out of the folder's split (7 of 8 coco128 images, mAP 0.3446 for 0.3924) while the
    same folder through a data.yaml took it; images/ itself, when it holds the images, still does not take its splits."""
    root = _yolo_folder(tmp_path / "ds", names=["cat", "dog", "fox"])
    _image(root / "images" / "val" / "cam1" / "d.png", 100, 100)
    (root / "labels" / "val" / "cam1").mkdir()
    (root / "labels" / "val" / "cam1" / "d.txt").write_text("2 0.5 0.5 1.0 1.0\n")
    (root / "data.yaml").write_text("path: .\nval: images/val\nnames: [cat, dog, fox]\n")
    folder, yaml = load_dataset(root), load_dataset(root / "data.yaml")
    assert [s.image for s in folder.samples] == [s.image for s in yaml.samples] and len(folder) == 4
    assert [s.class_id.tolist() for s in folder.samples] == [s.class_id.tolist() for s in yaml.samples]
    assert folder.samples[-1].image.name == "d.png" and folder.samples[-1].class_id.tolist() == [2]
    flat = tmp_path / "flat"
    _image(flat / "images" / "a.png", 20, 20)
    _image(flat / "images" / "train" / "b.png", 20, 20)
    (flat / "labels").mkdir()
    assert [s.image.name for s in load_dataset(flat, names=["cat"]).samples] == ["a.png"]


def test_hidden_files_beside_the_images_are_not_images_of_the_set(tmp_path):
    """A dataset copied from a Mac has a ._a.png (AppleDouble metadata) beside each image: 'not a readable image', exit
    2; a .ipynb_checkpoints copy was scored as an unlabelled image (coco128, 8 images: mAP 0.3329 for 0.3924)."""
    root = _yolo_folder(tmp_path / "ds", names=["cat", "dog"])
    val = root / "images" / "val"
    (val / "._a.png").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(4000))
    (val / ".ipynb_checkpoints").mkdir()
    (val / ".ipynb_checkpoints" / "a-checkpoint.png").write_bytes((val / "a.png").read_bytes())
    (root / "data.yaml").write_text("path: .\nval: images/val\nnames: [cat, dog]\n")
    for data in (root, root / "data.yaml"):
        assert [s.image.name for s in load_dataset(data).samples] == ["a.png", "b.png", "c.jpg"]
    assert [p.name for p in list_images([val])] == ["a.png", "b.png", "c.jpg"]


def test_ultralytics_yaml_folder_list_and_txt(tmp_path):
    root = tmp_path / "data"
    _yolo_folder(root)
    _image(root / "images" / "extra" / "d.png", 100, 100)
    (root / "labels" / "extra").mkdir(parents=True)
    (root / "labels" / "extra" / "d.txt").write_text("2 0.5 0.5 1.0 1.0\n")
    (root / "val.txt").write_text("images/extra/d.png\n")
    cfg = tmp_path / "cfg" / "data.yaml"
    cfg.parent.mkdir()
    cfg.write_text(
        "path: ../data\ntrain: [images/val, val.txt]\nval: images/val\nnames:\n  0: cat\n  1: dog\n  2: fox\n"
    )
    val = load_dataset(cfg, split="val")
    assert val.format == "yaml" and val.names == ["cat", "dog", "fox"] and len(val) == 3 and val.boxes == 2
    train = load_dataset(cfg, split="train")
    assert len(train) == 4 and train.samples[-1].image.name == "d.png"
    np.testing.assert_allclose(train.samples[-1].xyxy, [[0, 0, 100, 100]])
    assert train.samples[-1].class_id.tolist() == [2]
    with pytest.raises(DatasetError, match=r"data\.yaml: no split 'test'; the file names: train, val"):
        load_dataset(cfg, split="test")


def test_ultralytics_yaml_missing_split_names_every_split_the_file_has(tmp_path):
    # ovq.data.synth and the shipped pipelines use a 'calib' split: a mistyped --calib-split was told
    # "the file names: train, val", as if calib were not there
    root = tmp_path / "data"
    _yolo_folder(root)
    cfg = root / "data.yaml"
    cfg.write_text("path: .\ncalib: images/val\nval: images/val\ntrain: images/val\ndownload: get.sh\n"
                   "names: [cat, dog, fox]\n")
    assert len(load_dataset(cfg, split="calib")) == 3
    with pytest.raises(DatasetError, match=r"data\.yaml: no split 'calibration'; the file names: train, val, calib$"):
        load_dataset(cfg, split="calibration")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("path: .\nval: nowhere\nnames: [a]\n", r"val: 'nowhere' not found"),
        ("path: .\nval: .\n", r"missing 'names'"),
        ("path: .\nval: .\nnc: 3\nnames: [a, b]\n", r"nc: 3, but 'names' lists 2 classes"),
        ("path: missing_dir\nval: .\nnames: [a]\n", r"path: dataset folder 'missing_dir'"),
        ("val: [unclosed\n", r"data\.yaml: line \d+: invalid YAML"),
        # values of the wrong type: one line naming the key (they were tracebacks)
        ("path: .\nval: .\nnc: abc\nnames: [a, b]\n", r"data\.yaml: nc: expected the number of classes .* got 'abc'"),
        ("path: .\nval: .\nnc: true\nnames: [a]\n", r"nc: expected the number of classes"),
        ("path: [x]\nval: .\nnames: [a]\n", r"data\.yaml: path: expected a string, got \['x'\]"),
        ("path: .\nval: {a: 1}\nnames: [a]\n", r"data\.yaml: val: expected a folder, a \.txt list"),
        ("path: .\nval: [., 3]\nnames: [a]\n", r"data\.yaml: val\[1\]: expected a folder or file name, got 3"),
        ("path: .\nval: .\nnames: [a, [b]]\n", r"data\.yaml: names\[1\]: expected a class name"),
        ("path: .\nval: .\nnames: [a, ~]\n", r"data\.yaml: names\[1\]: expected a class name, got None"),
        # an entry too long for the file system: the entry named, shortened, with the system's reason
        ("path: .\nval: " + "x" * 300 + "\nnames: [a]\n", r"data\.yaml: val: x{60}\.\.\.\(300 characters\): File name too long"),
    ],
)
def test_yaml_errors_name_the_file(tmp_path, text, message):
    cfg = tmp_path / "data.yaml"
    cfg.write_text(text)
    with pytest.raises(DatasetError, match=message) as info:
        load_dataset(cfg)
    assert str(cfg) in str(info.value) and "\n" not in str(info.value)


def test_label_path_replaces_last_images_folder():
    assert label_path_for(Path("/d/images/x/images/val/a.jpg")) == Path("/d/images/x/labels/val/a.txt")
    assert label_path_for(Path("/d/pics/a.jpg")) == Path("/d/pics/a.txt")


def _coco_json(root: Path) -> Path:
    _image(root / "images" / "val2030" / "p.jpg", 100, 80)
    _image(root / "images" / "val2030" / "q.jpg", 40, 30)
    doc = {
        "images": [
            {"id": 7, "file_name": "q.jpg", "width": 40, "height": 30},
            {"id": 3, "file_name": "p.jpg", "width": 100, "height": 80},
        ],
        "categories": [{"id": 12, "name": "tree"}, {"id": 3, "name": "car"}, {"id": 7, "name": "cup"}],
        "annotations": [
            {"id": 1, "image_id": 3, "category_id": 12, "bbox": [10, 20, 30, 40], "iscrowd": 0},
            {"id": 2, "image_id": 3, "category_id": 3, "bbox": [0, 0, 100, 80], "iscrowd": 0},
            {"id": 3, "image_id": 3, "category_id": 7, "bbox": [5, 5, 10, 10], "iscrowd": 1},
        ],
    }
    path = root / "annotations" / "instances_val2030.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(doc))
    return path


def test_coco_json_maps_category_ids_to_contiguous_indices(tmp_path):
    path = _coco_json(tmp_path / "coco")
    ds = load_dataset(path)
    assert ds.format == "coco" and ds.split == "val2030" and ds.names == ["car", "cup", "tree"]
    assert [s.image.name for s in ds.samples] == ["p.jpg", "q.jpg"]
    p, q = ds.samples
    np.testing.assert_allclose(p.xyxy, [[10, 20, 40, 60], [0, 0, 100, 80]])
    assert p.class_id.tolist() == [2, 0]  # 12 -> 2 (tree), 3 -> 0 (car); the crowd box is kept apart
    np.testing.assert_allclose(p.crowd_xyxy, [[5, 5, 15, 15]])
    assert p.crowd_class_id.tolist() == [1]
    assert q.xyxy.shape == (0, 4) and (q.width, q.height) == (40, 30)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["annotations"][0].update(category_id=99), r"annotation id 1: category_id 99 is not among"),
        (lambda d: d["annotations"][1].update(bbox=[50, 0, 100, 80]), r"annotation id 2: bbox .* is outside"),
        (lambda d: d["annotations"][1].update(bbox=[1, 2]), r"annotation id 2: needs"),
        # int() made 3.5 category 3 and true image 1: another class, another image, exit 0
        (lambda d: d["annotations"][1].update(category_id=3.5), r"annotation id 2: needs an integer .*'category_id'"),
        (lambda d: d["annotations"][1].update(image_id=True), r"annotation id 2: needs an integer 'image_id'"),
        (lambda d: d["categories"][0].update(id=12.5), r"every category needs an integer 'id'"),
        (lambda d: d["images"][0].update(id=7.5), r"image entry .* needs an integer 'id'"),
        (lambda d: d["annotations"][0].update(image_id=5), r"annotation id 1: image_id 5 is not among"),
        (lambda d: d["images"][0].update(file_name="gone.jpg"), r"image gone\.jpg \(id 7\) not found"),
        (lambda d: d.pop("categories"), r"not a COCO instances file"),
        # NaN passed every bound check and became ground truth (mAP moved, exit 0)
        (lambda d: d["annotations"][0].update(bbox=[float("nan"), 20, 30, 40]), r"annotation id 1: .* not finite"),
        (lambda d: d["annotations"][0].update(bbox=[10, 20, -5, 40]), r"annotation id 1: .* negative width"),
        # a second entry for an id shifted every class after it (still 80 classes: exit 0, mAP 0.02 instead of 0.52)
        (lambda d: d["categories"].append({"id": 3, "name": "bus"}), r"category id 3 is listed twice, as 'car' and 'bus'"),
        (lambda d: d["images"].append({"id": 3, "file_name": "q.jpg"}), r"image id 3 is listed twice \(p.jpg and q.jpg\)"),
        # the string "0" was truthy: an object to find became a region where detections are not counted
        (lambda d: d["annotations"][0].update(iscrowd="0"), r"annotation id 1: iscrowd '0': expected 0 or 1"),
        (lambda d: d["annotations"][0].update(iscrowd=2), r"annotation id 1: iscrowd 2: expected 0 or 1"),
    ],
)
def test_coco_json_errors(tmp_path, change, message):
    path = _coco_json(tmp_path / "coco")
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(DatasetError, match=message) as info:
        load_dataset(path)
    assert str(path) in str(info.value)


def test_coco_json_entry_listed_twice_the_same_counts_once(tmp_path):
    path = _coco_json(tmp_path / "coco")
    doc = json.loads(path.read_text())
    doc["categories"].insert(0, dict(doc["categories"][1]))
    doc["images"].append(dict(doc["images"][0]))
    path.write_text(json.dumps(doc))
    ds = load_dataset(path)
    assert ds.names == ["car", "cup", "tree"] and [s.class_id.tolist() for s in ds.samples] == [[2, 0], []]
    assert ds.extra["category_ids"] == [3, 7, 12]


def test_coco_json_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "instances_x.json"
    path.write_text('{\n  "images": [\n  oops\n}')
    with pytest.raises(DatasetError, match=r"instances_x\.json:3: not valid JSON"):
        load_dataset(path)


@pytest.mark.parametrize("kind", ["dangling", "loop", "fifo"])
def test_an_image_name_that_is_no_file_is_an_error_not_a_missing_image(tmp_path, kind):
    """A broken symlink, a symlink loop or a FIFO named like an image was left out of the split (and its labels
    with it) without a word: a measurement on fewer images than the user has."""
    root = _yolo_folder(tmp_path / "ds")
    bad = root / "images" / "val" / "z.jpg"
    if kind == "dangling":
        bad.symlink_to(tmp_path / "nowhere.jpg")
    elif kind == "loop":
        bad.symlink_to(root / "images" / "val" / "zz.jpg")
        (root / "images" / "val" / "zz.jpg").symlink_to(bad)
    else:
        os.mkfifo(bad)
    (root / "images" / "val" / "folder.jpg").mkdir()  # a folder named like an image is no image: left out
    with pytest.raises(DatasetError, match=r"z\.jpg: (a symbolic link to nothing|Too many levels|not a regular file)"):
        load_dataset(root)
    for link in (bad, root / "images" / "val" / "zz.jpg"):
        link.unlink(missing_ok=True)
    assert len(load_dataset(root)) == 3


def test_plain_image_folder_is_unlabelled(tmp_path):
    _image(tmp_path / "pics" / "a.png", 30, 20)
    _image(tmp_path / "pics" / "b.jpg", 10, 10)
    ds = load_dataset(tmp_path / "pics", split="train")
    assert not ds.labelled and ds.format == "images" and len(ds) == 2 and ds.samples[0].width == 30


def test_empty_or_missing_dataset_is_an_error(tmp_path):
    (tmp_path / "ds" / "images" / "val").mkdir(parents=True)
    (tmp_path / "ds" / "labels" / "val").mkdir(parents=True)
    with pytest.raises(DatasetError, match="holds no images"):
        load_dataset(tmp_path / "ds")
    (tmp_path / "nothing").mkdir()
    with pytest.raises(DatasetError, match="no images here"):
        load_dataset(tmp_path / "nothing")
    with pytest.raises(DatasetError, match="no such file or folder"):
        load_dataset(tmp_path / "absent")
    with pytest.raises(DatasetError, match=r"no split 'test' under images/; found: val"):
        load_dataset(tmp_path / "ds", split="test")
    for bad in ("", " ", "..", "val/../x"):  # "" read the images/ folder itself as a split
        with pytest.raises(DatasetError, match=f"split '{re.escape(bad)}' is not a split name"):
            load_dataset(tmp_path / "ds", split=bad)


GOOD = "0 0.5 0.5 0.2 0.2\n1 0.25 0.25 0.5 0.5\n"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("5 0.5 0.5 0.1 0.1", r"class 5 is out of range 0..1 \(2 names\)"),
        ("-1 0.5 0.5 0.1 0.1", r"class '-1' is not a non-negative integer"),
        ("0.5 0.5 0.5 0.1 0.1", r"class '0.5' is not a non-negative integer"),
        ("0 0.5 0.5 0.1", r"malformed line '0 0.5 0.5 0.1'"),
        ("0 0.5 0.5 0.1 0.1 0.3", r"malformed line"),
        ("0 a 0.5 0.1 0.1", r"malformed line .*not all fields are numbers"),
        ("0 nan 0.5 0.1 0.1", r"non-finite"),
        ("0 1.2 0.5 0.1 0.1", r"box 1.2 0.5 0.1 0.1 is outside 0..1"),
        ("0 0.95 0.5 0.2 0.1", r"reaches outside the image"),
        ("0 0.5 0.5 0 0.1", r"zero width or height"),
    ],
)
def test_label_errors_name_file_and_line(tmp_path, line, message):
    root = _yolo_folder(tmp_path / "ds", names=["cat", "dog"])
    label = root / "labels" / "val" / "a.txt"
    label.write_text(GOOD + line + "\n")
    with pytest.raises(DatasetError, match=message) as info:
        load_dataset(root)
    text = str(info.value)
    assert text.startswith(f"{label}:3: ") and "\n" not in text


def _text_files(tmp_path: Path) -> dict[str, tuple[Path, Path]]:
    """Each text file a dataset has, as (file, what to load): label file, class names, image list, COCO JSON."""
    root = _yolo_folder(tmp_path / "ds", names=["cat", "dog"])
    (root / "val.txt").write_text("images/val/a.png\n")
    cfg = root / "data.yaml"
    cfg.write_text("path: .\nval: val.txt\nnames: [cat, dog]\n")
    coco = _coco_json(tmp_path / "coco")
    return {"label": (root / "labels" / "val" / "a.txt", root), "names": (root / "classes.txt", root),
            "list": (root / "val.txt", cfg), "coco": (coco, coco)}


@pytest.mark.parametrize("kind", ["label", "names", "list", "coco"])
def test_dataset_text_files_not_in_utf8_are_named_and_a_byte_order_mark_is_read(tmp_path, kind):
    """A file saved as Latin-1 was a UnicodeDecodeError traceback (names, list, COCO JSON), and one saved by a Windows
    editor with a byte-order mark was refused ('not all fields are numbers', 'Unexpected UTF-8 BOM')."""
    path, data = _text_files(tmp_path)[kind]
    text = path.read_text(encoding="utf-8")
    expected = load_dataset(data)
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    read = load_dataset(data)
    assert read.names == expected.names and [s.class_id.tolist() for s in read.samples] == [
        s.class_id.tolist() for s in expected.samples]
    path.write_bytes(text.encode("utf-8") + "\u00e4\n".encode("latin-1"))
    with pytest.raises(DatasetError, match=rf"^{re.escape(str(path))}: .* is not UTF-8 text \(byte \d+"):
        load_dataset(data)


def test_polygon_labels_become_their_bounding_box(tmp_path):
    root = _yolo_folder(tmp_path / "ds", names=["cat", "dog"])
    (root / "labels" / "val" / "a.txt").write_text("1 0.1 0.2 0.5 0.2 0.3 0.8\n")
    np.testing.assert_allclose(load_dataset(root).samples[0].xyxy, [[20, 20, 100, 80]], atol=1e-4)


def test_image_size_reads_header_and_applies_exif_rotation(tmp_path):
    from PIL import Image

    path = tmp_path / "rot.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    Image.fromarray(np.zeros((40, 100, 3), np.uint8)).save(path, exif=exif.tobytes())
    decoded = cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_COLOR)
    assert image_size(path) == (decoded.shape[1], decoded.shape[0]) == (40, 100)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    with pytest.raises(DatasetError, match="broken.png: not a readable image"):
        image_size(broken)


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp", ".tiff", ".mpo.jpg"])
@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_image_size_is_the_size_opencv_decodes_for_every_format_and_orientation(tmp_path, suffix, orientation):
    """TIFF's size was turned twice, and MPO's (the multi-picture JPEG many phone cameras write) not at all."""
    from PIL import Image

    path = tmp_path / f"rot{suffix}"
    exif = Image.Exif()
    exif[0x0112] = orientation
    image = Image.fromarray(np.zeros((40, 100, 3), np.uint8))
    if suffix == ".mpo.jpg":
        image.save(path, format="MPO", save_all=True, append_images=[image], exif=exif.tobytes())
        assert Image.open(path).format == "MPO"
    else:
        image.save(path, exif=exif.tobytes())
    decoded = cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_COLOR)
    assert image_size(path) == (decoded.shape[1], decoded.shape[0]) == ((40, 100) if orientation > 4 else (100, 40))


@pytest.mark.parametrize("where", ["none", "before", "after"])
def test_image_size_of_a_png_reads_no_pixels_and_finds_its_exif_where_opencv_does(tmp_path, monkeypatch, where):
    """Pillow's getexif() decoded a whole PNG to look for an eXIf chunk after its image data: 143 ms for a 4K PNG's
    size (OpenCV's decode is 200 ms), for every image of a dataset, before any inference."""
    import io
    import struct

    from PIL import Image, ImageFile

    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((40, 100, 3), np.uint8)).save(buffer, "PNG", exif=exif.tobytes())
    data, chunks, pos = buffer.getvalue(), [], 8
    while pos < len(buffer.getvalue()):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        chunks.append(data[pos : pos + 12 + length])
        pos += 12 + length
    assert [c[4:8] for c in chunks] == [b"IHDR", b"eXIf", b"IDAT", b"IEND"]
    if where == "after":  # OpenCV applies it there too
        chunks = [chunks[0], chunks[2], chunks[1], chunks[3]]
    elif where == "none":  # most PNGs: no EXIF at all
        chunks = [chunks[0], chunks[2], chunks[3]]
    path = tmp_path / "turned.png"
    path.write_bytes(data[:8] + b"".join(chunks))
    decoded = cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_COLOR)
    loads = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda im: loads.append(im))
    assert image_size(path) == (decoded.shape[1], decoded.shape[0]) == ((100, 40) if where == "none" else (40, 100))
    assert loads == []


def test_image_size_of_an_image_pillow_calls_a_decompression_bomb(tmp_path, monkeypatch, recwarn):
    """Pillow refuses to open an image over 2 x ``MAX_IMAGE_PIXELS`` (179 M pixels: aerial and satellite pictures) and
    warns over 1 x: image_size only reads the header, and OpenCV decodes such images, so neither may escape (the
    error was a traceback out of eval and quantize, the warning a line on stderr naming Pillow's source file)."""
    from PIL import Image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # the limit scaled down, so the images can be small
    warned = _image(tmp_path / "warned.png", 40, 30)  # 1,200 pixels: over the limit
    refused = _image(tmp_path / "refused.jpg", 100, 50)  # 5,000 pixels: over twice the limit
    assert image_size(warned) == (40, 30) and image_size(refused) == (100, 50)
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


def test_shared_coco128_in_place(assets):
    val = load_dataset(assets / "coco128", split="val", names=COCO80)
    assert val.split == "val2017" and len(val) == 128 and val.boxes == 898 and val.names == COCO80
    train = load_dataset(assets / "coco128", split="train2017", names=COCO80)
    background = [s.image.name for s in train.samples if not len(s.class_id)]
    assert len(background) == 2  # two train images have no label file
    for s in val.samples[:5]:
        img = cv2.imread(str(s.image))
        assert (s.width, s.height) == (img.shape[1], img.shape[0])


def test_coco128_json_agrees_with_its_yolo_labels(assets):
    coco = load_dataset(assets / "coco128" / "annotations" / "instances_train2017.json")
    yolo = load_dataset(assets / "coco128", split="train2017", names=COCO80)
    assert coco.names == COCO80  # category ids 1..90 with gaps, sorted, are COCO-80 in order
    assert coco.root == assets / "coco128" / "images" / "train2017"
    by_name = {s.image.name: s for s in yolo.samples}
    assert sorted(by_name) == [s.image.name for s in coco.samples]
    for s in coco.samples:
        y = by_name[s.image.name]
        assert (s.width, s.height) == (y.width, y.height)
        assert sorted(s.class_id.tolist()) == sorted(y.class_id.tolist()), s.image.name
        # same boxes: every COCO box has its own YOLO box of the same class at IoU > 0.99 (6-digit rounding)
        iou = box_iou(s.xyxy, y.xyxy) * (s.class_id[:, None] == y.class_id[None, :])
        if len(iou):
            best = iou.argmax(axis=1)
            assert len(set(best.tolist())) == len(best), s.image.name
            assert (iou[np.arange(len(best)), best] > 0.99).all(), s.image.name


def test_coco_json_image_folder_can_be_named(tmp_path):
    path = _coco_json(tmp_path / "coco")
    alone = tmp_path / "elsewhere" / path.name
    alone.parent.mkdir()
    alone.write_text(path.read_text())
    with pytest.raises(DatasetError, match=r"cannot find its images .*pass the image folder"):
        load_dataset(alone)
    ds = load_dataset(alone, images=tmp_path / "coco" / "images" / "val2030")
    assert len(ds) == 2 and ds.boxes == 2


def test_coco_json_in_the_working_folder_names_each_folder_looked_in_once(tmp_path, monkeypatch):
    """'x.json: cannot find its images (looked in images/val, images/val, val, val)': each twice, and the two last
    folders it looked in (images, .) left out."""
    path = _coco_json(tmp_path / "coco")
    (tmp_path / "alone").mkdir()
    monkeypatch.chdir(tmp_path / "alone")
    Path(path.name).write_text(path.read_text())
    with pytest.raises(DatasetError) as err:
        load_dataset(path.name)
    assert str(err.value) == (f"{path.name}: cannot find its images (looked in images/val2030, val2030, images, .); "
                              "pass the image folder (--images, or images=)")
