"""A served model's family, checked with what a server sends: output shapes, names and datatypes, and the metadata
(what the exporter wrote, and what the graph said at conversion). A server sends no graph, so the families told
apart by their graph (yolo_e2e, rtdetr, torchvision) were checked by their shapes alone: a [1, K, 6] model tagged
with the wrong one of them was taken, and a served RT-DETR without Ultralytics' metadata was refused."""

from __future__ import annotations

import importlib.util
import re

import heads
import numpy as np
import pytest

from ovq.cli import main
from ovq.core.errors import ModelError
from ovq.core.metadata import ModelInfo
from ovq.model.conversion import convert
from ovq.model.decoders import get_decoder
from ovq.model.detection_list import OUTPUT_NAME
from ovq.model.detector import Detector
from ovq.serving.remote import RemoteDetector
from ovq.serving.urls import parse_serving_url


def _served(family: str, graph: dict[str, str]) -> RemoteDetector:
    det = object.__new__(RemoteDetector)
    det.url = parse_serving_url("http://127.0.0.1:1/v2/models/det")
    det.info = ModelInfo(family=family, labels=["a", "b"], input_size=(64, 64), extra={"graph": graph})
    det.decoder = get_decoder(family)
    return det


K6 = [1, 300, 6]


@pytest.mark.parametrize(("family", "graph", "output", "refused"), [
    ("yolo_e2e", {}, (OUTPUT_NAME, "FP32", K6), "do not fit the family 'yolo_e2e'"),  # ovq's torchvision list
    ("torchvision", {}, ("output0", "FP32", K6), "do not fit the family 'torchvision'"),
    ("torchvision", {}, (OUTPUT_NAME, "FP32", K6), None),
    ("rtdetr", {"boxes": "pixels"}, ("output0", "FP32", K6), "do not fit the family 'rtdetr'"),
    ("rtdetr", {"boxes": "normalised"}, ("output0", "FP32", K6), None),
    ("rtdetr", {}, ("output0", "FP32", K6), None),  # an IR from before: nothing says, its family is its word
    ("yolo_e2e", {"boxes": "normalised"}, ("output0", "FP32", K6), "do not fit the family 'yolo_e2e'"),
    ("yolo_e2e", {"boxes": "pixels"}, ("output0", "FP32", K6), None),
    ("yolox", {}, ("output", "INT64", [1, 84, 85]), "are not all FP32, as an ovq IR's of family 'yolox' are"),
    ("ssd", {}, ("detection_out", "FP16", [1, 1, 200, 7]), "are not all FP32"),
])
def test_a_served_family_is_checked_by_names_datatypes_and_what_the_graph_said(family, graph, output, refused):
    name, datatype, shape = output
    det = _served(family, graph)
    meta = {"outputs": [{"name": name, "datatype": datatype, "shape": shape}]}
    if refused is None:
        det._check_family(meta)
        return
    with pytest.raises(ModelError, match=re.escape(refused)) as caught:
        det._check_family(meta)
    assert str(caught.value).startswith("http://127.0.0.1:1/v2/models/det: its outputs ")
    assert f"'{name}' {datatype} {shape}" in str(caught.value)


def test_conversion_stores_what_the_graph_said_of_the_boxes(tmp_path):
    for normalised, said in ((True, "normalised"), (False, "pixels")):
        xml = convert(heads.save(heads.end_to_end_head(normalised=normalised), tmp_path / f"{said}.xml"),
                      tmp_path / said)
        assert Detector(xml).info.extra["graph"] == {"boxes": said}
    assert Detector(convert(heads.save(heads.dfl_head(), tmp_path / "y.xml"), tmp_path / "y")).info.extra["graph"] == {}


@pytest.mark.parametrize(("made_as", "decoded_as", "says"), [
    (True, "yolo_e2e", "boxes over the threshold lie within 1 pixel of the corner (values 0..1): normalised boxes"),
    (False, "rtdetr", "are not in [0, 1], as RT-DETR's normalised boxes are"),
])
def test_boxes_of_the_other_family_are_refused_when_decoded(tmp_path, made_as, decoded_as, says):
    """What a served model tagged with the wrong one of the two would decode: refused at its first frame."""
    det = Detector(convert(heads.save(heads.end_to_end_head(normalised=made_as), tmp_path / "m.xml"), tmp_path / "m"),
                   conf=0.01)
    image = np.full((64, 64, 3), 90, np.uint8)
    tensor, rinfo = det.preprocess(image)
    outputs = [np.asarray(v) for v in det.compiled(tensor).values()]
    det(image)  # its own family decodes it
    with pytest.raises(ModelError, match=re.escape(says)):
        get_decoder(decoded_as).decode(outputs, rinfo, det.params)


@pytest.mark.skipif(importlib.util.find_spec("kserve") is None or importlib.util.find_spec("tritonclient") is None,
                    reason="serving needs the serve extra (pip install 'ovq[serve]')")
def test_a_served_rtdetr_without_ultralytics_metadata_is_taken(tmp_path, assets, capsys):
    """'ovq predict http://.../v2/models/rt' on an RT-DETR-like IR served by ovq serve was refused, 'its outputs
    [[1, 10, 6]] do not fit the family 'rtdetr' in its metadata': only Ultralytics' metadata could say so then."""
    from tests.test_serving import OvqServe

    ir = convert(heads.save(heads.end_to_end_head(normalised=True), tmp_path / "rt.xml"), tmp_path / "rt")
    server = OvqServe(ir.parent, name="rt")
    server.start()
    try:
        capsys.readouterr()
        out = tmp_path / "out"
        assert main(["predict", server.url(), str(assets / "images/bus.jpg"), "-o", str(out), "-q"]) == 0, \
            capsys.readouterr().err
        assert (out / "predictions.json").exists()
    finally:
        server.kill()
