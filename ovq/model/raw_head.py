"""An Ultralytics detection model exported straight from torch: its predictions, without the head's training maps.

``YOLO.export`` sets the Detect head's ``export`` flag, and the head then returns its predictions alone. A user who
calls ``torch.onnx.export(YOLO("yolov8n.yaml").model, ...)`` (the dynamo exporter, or the TorchScript one) exports
the head as it runs in eval mode: ``(predictions, raw)``, where ``raw`` is what its loss takes: box bins
``[1, 4 * reg_max, M]``, class logits ``[1, nc, M]`` and the feature maps ``[1, C, H, W]`` they came from, M the
maps' cells (twice over for YOLO26's two heads; Ultralytics 8.3 gave the maps alone). RT-DETR's decoder does the
same: its predictions ``[1, K, 6]``, then its decoder layers' boxes ``[1, L, K, 4]`` and logits ``[1, L, K, nc]`` and
its encoder's ``[1, Ke, 4]`` and ``[1, Ke, nc]``. The predictions are the first output, as in ``YOLO.export``'s graph;
:func:`drop_raw_head_outputs` keeps that one, so the families see the model they know.
"""

from __future__ import annotations

import logging
from pathlib import Path

import openvino as ov

logger = logging.getLogger(__name__)


def _raw_outputs_of_detr(shapes: list[tuple[int, ...]]) -> bool:
    """Whether ``shapes`` are RT-DETR's predictions [1, K, 6] and its decoder's and encoder's raw outputs."""
    if len(shapes) != 5 or [len(s) for s in shapes] != [3, 4, 4, 3, 3]:
        return False
    (_, k, _), (_, layers, k1, four), (_, layers2, k2, nc), (_, ke, four2), (_, ke2, nc2) = shapes
    return (four, four2, layers, k1, k2, ke2, nc2) == (4, 4, layers2, k, k, ke, nc) and all(s[0] == 1 for s in shapes)


def _raw_outputs_of_head(shapes: list[tuple[int, ...]]) -> bool:
    """Whether ``shapes[1:]`` are the raw maps described above, ``shapes[0]`` the predictions."""
    if len(shapes) < 2 or len(shapes[0]) != 3 or shapes[0][0] != 1:
        return False
    if _raw_outputs_of_detr(shapes):
        return True
    maps = {s[2:] for s in shapes[1:] if len(s) == 4 and s[0] == 1}
    flat = [s for s in shapes[1:] if len(s) == 3 and s[0] == 1]
    if not maps or len(flat) + sum(len(s) == 4 and s[0] == 1 for s in shapes[1:]) != len(shapes) - 1:
        return False
    cells = sum(h * w for h, w in maps)  # each level once: YOLO26's two heads return the same maps
    if flat:
        return all(s[2] == cells for s in flat)
    return cells in shapes[0][1:]


def drop_raw_head_outputs(model: ov.Model, path: Path) -> ov.Model | None:
    """``model`` with only its first output when the others are the raw maps of Ultralytics' Detect head (see the
    module doc), else ``None``. The input's shape must be static (the outputs' shapes are compared)."""
    if not all(o.get_partial_shape().is_static for o in model.outputs):
        return None
    shapes = [tuple(o.get_shape()) for o in model.outputs]
    if not _raw_outputs_of_head(shapes):
        return None
    first = model.outputs[0]
    logger.info(
        "%s: keeps output 0%s %s, the predictions; drops %d more outputs (%s), the raw outputs Ultralytics' head "
        "returns beside them outside export mode (YOLO.export, or head.export = True before torch.onnx.export, "
        "leaves them out)", path, f" '{first.get_any_name()}'" if first.get_names() else "", list(shapes[0]),
        len(shapes) - 1, ", ".join(str(list(s)) for s in shapes[1:]),
    )
    kept = first.get_node().input_value(0)  # what feeds the Result
    return ov.Model([kept], model.get_parameters(), model.get_friendly_name())
