"""Where a model is: a folder, an ``.xml``, ``.onnx`` or ``.pt`` file."""

from __future__ import annotations

from pathlib import Path

from ovq.core.errors import ModelError
from ovq.core.fileio import unreadable

MODEL_XML = "model.xml"
SOURCE_SUFFIXES = (".xml", ".onnx", ".pt")


def resolve_model_path(src: str | Path) -> Path:
    """A model folder (with ``model.xml`` or one ``*.xml``), an ``.xml``, ``.onnx`` or ``.pt`` file."""
    path = Path(src)
    if not path.exists():
        raise ModelError(f"{path}: no such file or folder")
    if path.is_dir():
        if (path / MODEL_XML).exists():
            return path / MODEL_XML
        xmls = sorted(path.glob("*.xml"))
        if len(xmls) == 1:
            return xmls[0]
        if not xmls:
            raise ModelError(f"{path}: folder holds no model (.xml) file")
        raise ModelError(f"{path}: folder holds several .xml files; name one of {', '.join(x.name for x in xmls)}")
    if path.suffix.lower() not in SOURCE_SUFFIXES:
        raise ModelError(f"{path}: unsupported model file type '{path.suffix}'; expected .xml, .onnx or .pt")
    if path.stat().st_size == 0:
        raise ModelError(f"{path}: file is empty")
    if why := unreadable(path):  # OpenVINO would say "not an ONNX model" or "cannot read" of it
        raise ModelError(f"{path}: {why}")
    return path
