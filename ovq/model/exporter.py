"""What the exporter wrote about a model: class names, input size, task, head, whoever exported it.

Three places, read in this order (the first that has a key wins):

- ``metadata.yaml`` beside an IR (Ultralytics' OpenVINO export folders);
- ONNX ``metadata_props``, which OpenVINO's ONNX front end keeps in the model's ``rt_info["framework"]``
  (Ultralytics: ``names``, ``imgsz``, ``stride``, ``task``, ``head``, ``end2end``; YOLOv5: ``stride``, ``names``);
- the IR's ``rt_info["model_info"]`` (OpenVINO Model API and Open Model Zoo: ``labels``, ``model_type``...);
- the ``model_name`` a Model Optimizer IR keeps in ``rt_info["conversion_parameters"]`` (Open Model Zoo's IRs:
  ``person-detection-retail-0013``), which names the classes of the models :data:`ovq.core.labels.OMZ_ONE_CLASS`
  lists.

Values are kept as the strings the exporter wrote (``"{0: 'bolt', 1: 'nut'}"``); the parsers below read them
without evaluating code.
"""

from __future__ import annotations

import ast
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ovq.core.errors import ModelError
from ovq.core.yamlio import read_yaml

logger = logging.getLogger(__name__)

NAME_KEYS = ("names", "labels", "classes", "class_names")
SIZE_KEYS = ("imgsz", "img_size", "input_size")
# Kept in the converted IR (ovq's rt_info), so a family sees the same metadata at load time as at conversion.
NOT_KEPT = (*NAME_KEYS, "args", "date", "license", "docs", "author", "version", "description")
MAX_KEPT_LENGTH = 200


@dataclass
class ExporterMetadata:
    """Flat ``key -> string`` metadata and, per key, where it was read (for messages and logs)."""

    values: dict[str, str] = field(default_factory=dict)
    where: dict[str, str] = field(default_factory=dict)
    source: str = ""  # the model file, for messages

    def add(self, values: dict[str, Any], where: str) -> None:
        """Add the keys not seen yet (earlier places win)."""
        for key, value in values.items():
            if key not in self.values and value is not None:
                self.values[str(key)] = value if isinstance(value, str) else repr(value)
                self.where[str(key)] = where

    def names(self) -> tuple[list[str], str] | None:
        """Class names and where they came from, or ``None`` when the exporter wrote none."""
        for key in NAME_KEYS:
            if key in self.values:
                names = parse_names(self.values[key])
                if names is None:
                    raise ModelError(
                        f"{self.source}: {self.where[key]} '{key}' is not a list of class names "
                        f"({self.values[key][:60]!r}); pass --labels"
                    )
                return names, f"{self.where[key]} '{key}'"
        return None

    def imgsz(self) -> tuple[int, int] | None:
        """(height, width) the model was exported for, or ``None``."""
        for key in SIZE_KEYS:
            if key in self.values:
                size = parse_size(self.values[key])
                if size is None:
                    raise ModelError(f"{self.source}: {self.where[key]} '{key}' is not an input size: "
                                     f"{self.values[key][:60]!r}; pass --imgsz")
                return size
        return None

    def exported_with_nms(self) -> bool:
        """Whether Ultralytics exported the model with ``nms=True`` (its ``args``), NMS inside the graph."""
        args = _literal(self.values.get("args", "").strip())
        return isinstance(args, dict) and args.get("nms") is True

    def kept(self) -> dict[str, str]:
        """The short keys worth storing in the converted IR (task, head, end2end, stride, model_type...)."""
        return {k: v for k, v in self.values.items() if k not in NOT_KEPT and len(v) <= MAX_KEPT_LENGTH}


def read_exporter_metadata(model: Any, path: Path) -> ExporterMetadata:
    """Everything the exporter wrote about ``model`` (read from ``path``): metadata.yaml, ONNX, Model API."""
    meta = ExporterMetadata(source=str(path))
    beside = path.parent / "metadata.yaml"
    if path.suffix.lower() == ".xml" and beside.is_file():
        data = read_yaml(beside)
        if isinstance(data, dict):
            meta.add(data, beside.name)
    meta.add(_rt_section(model, "framework"), "ONNX metadata")
    meta.add(_rt_section(model, "model_info"), "rt_info model_info")
    meta.add({k: v for k, v in _rt_section(model, "conversion_parameters").items() if k == "model_name"},
             "IR conversion parameters")
    if meta.values:
        logger.debug("%s: exporter metadata %s", path, {k: meta.values[k][:40] for k in meta.values})
    return meta


def _rt_section(model: Any, section: str) -> dict[str, str]:
    """The string values of one rt_info section (nested sections left out)."""
    if not model.has_rt_info(section):
        return {}
    section_map = model.get_rt_info()[section]
    if not isinstance(section_map, dict):
        return {}
    return {
        str(key): model.get_rt_info([section, str(key)]).astype(str)
        for key, value in section_map.items()
        if not isinstance(value, dict)
    }


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


def parse_names(text: str) -> list[str] | None:
    """Class names from ``{0: 'a', 1: 'b'}``, ``['a', 'b']``, ``a,b`` or ``a b`` (Model API); ``None`` if not."""
    text = text.strip()
    if not text:
        return None
    if text[0] not in "{[(":
        parts = text.split(",") if "," in text else text.split()
        names = [p.strip() for p in parts]
        return names if all(names) else None
    value = _literal(text)
    if isinstance(value, (list, tuple)) and value:
        return [str(v) for v in value]
    if isinstance(value, dict) and value:
        try:
            by_id = {int(k): str(v) for k, v in value.items()}
        except (TypeError, ValueError):
            return None
        if min(by_id) < 0:
            return None
        return [by_id.get(i, str(i)) for i in range(max(by_id) + 1)]
    return None


def parse_size(text: str) -> tuple[int, int] | None:
    """(height, width) from ``640``, ``[640, 480]`` or ``(640, 480)``; ``None`` if not a size."""
    value = _literal(text.strip())
    if isinstance(value, int):
        value = [value]
    if not isinstance(value, (list, tuple)) or len(value) not in (1, 2):
        return None
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        return None
    return (value[0], value[-1])
