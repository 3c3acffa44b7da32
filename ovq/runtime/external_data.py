"""An ONNX model's external data files: named when missing or short, before OpenVINO reads the model.

A model saved with ``onnx.save_model(..., save_as_external_data=True)`` keeps its weights in files beside it, named
(relative to the model's folder) in each tensor's ``external_data``. When one was not copied along, OpenVINO says
only "cannot read ONNX model: Loading input model". With the ``onnx`` package installed, the references are read
from the model itself; without it, the file's name comes from OpenVINO's error text. Both only once OpenVINO has
failed (:func:`external_data_message`): a model that reads is not parsed a second time.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ovq.core.fileio import unreadable

# OpenVINO 2026's ONNX front end, for a missing or short file alike:
# "Invalid usage of method for externally stored data in file (model.data, offset: 0, data_length: 5376)"
_OV_TEXT = re.compile(r"externally stored data in file \((?P<file>.+?), offset: (?P<offset>\d+), data_length: (?P<length>\d+)\)")


def external_data_message(path: Path, error: str) -> str | None:
    """The one-line message when OpenVINO failed reading the ONNX model at ``path`` (with ``error``) because an
    external data file is missing, unreadable or shorter than the model says, else ``None``."""
    if path.suffix.lower() != ".onnx":
        return None
    found = _OV_TEXT.search(error)
    from_text = _problem(path, found["file"].strip(), int(found["offset"]) + int(found["length"])) if found else None
    return _first_problem(path) or from_text


def _first_problem(path: Path) -> str | None:
    """The first external data file the model names that is missing, unreadable or short (needs ``onnx``)."""
    ends = _references(path) or {}
    return next((message for location, end in ends.items() if (message := _problem(path, location, end))), None)


def data_files(path: Path) -> list[Path]:
    """The external data files the ONNX model at ``path`` names that exist, in the order named: part of the model
    (torch's dynamo exporter writes its weights to ``NAME.onnx.data``). Without the ``onnx`` package, that file when
    it is there."""
    if path.suffix.lower() != ".onnx" or not path.is_file():
        return []
    ends = _references(path)
    named = [path.parent / location for location in ends] if ends is not None else [path.with_name(path.name + ".data")]
    return [f for f in named if f.is_file()]


def _references(path: Path) -> dict[str, int] | None:
    """Each external data file the ONNX model at ``path`` names -> the end of the last byte it reads there; ``None``
    without the ``onnx`` package, empty for a file that is no ONNX."""
    try:
        import onnx
    except ImportError:
        return None
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - a protobuf DecodeError and others: not ONNX, the front end says so
        return {}
    ends: dict[str, int] = {}
    for tensor in _tensors(proto.graph):
        info = {entry.key: entry.value for entry in tensor.external_data}
        if tensor.data_location != onnx.TensorProto.EXTERNAL or "location" not in info:
            continue
        offset, length = (int(info.get(key, "0")) if info.get(key, "0").isdigit() else 0 for key in ("offset", "length"))
        ends[info["location"]] = max(ends.get(info["location"], 0), offset + length)
    return ends


def _problem(model: Path, location: str, end: int) -> str | None:
    data = model.parent / location
    if not data.exists():
        return f"{model}: its external data file {data} is missing (ONNX keeps weights there; copy it next to the model)"
    if why := unreadable(data):
        return f"{model}: its external data file {data}: {why}"
    size = data.stat().st_size
    if data.is_file() and end > size:
        return (f"{model}: its external data file {data} is shorter than the model says ({size} bytes, the model "
                f"reads up to byte {end}); copy it again")
    return None


def _tensors(graph: Any) -> Iterator[Any]:
    """Every tensor of ``graph`` that may hold weights: initializers and node attributes, subgraphs included."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _tensors(attr.g)
            for sub in attr.graphs:
                yield from _tensors(sub)
