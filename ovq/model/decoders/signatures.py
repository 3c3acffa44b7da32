"""What a graph shows about its head, for families whose output shapes alone could be another family's.

Two questions, both answered from the OpenVINO graph (the source model's or the converted IR's; NNCF's
FakeQuantize nodes are looked through):

- ``anchor_grids``: the per-scale ``[1, A, 5 + nc, H, W]`` views of an anchor-based YOLO head (YOLOv5/v7 reshape
  every scale's convolution that way before decoding boxes in the graph). YOLOX's raw ``[1, N, 5 + nc]`` has no
  such view, so the two are told apart by structure rather than by the count N.
- ``computed_with``: whether an op type is among those an output is computed from. YOLOX exported with its
  head's own decoding has boxes from an ``Exp`` (w, h = exp(raw) * stride); the raw export has none, and no
  ``Softmax`` either, which YOLOv8's DFL box bins have (a YOLOv8 output transposed to [1, N, 4 + nc] has YOLOX's
  shape).
- ``joined_on``: the axis of the Concat an output is, and its parts' widths. Ultralytics' one-to-many head joins its
  4 box rows and nc class rows on axis 1 ([1, 4 + nc, N]), other exports its levels' cells on axis 2; the same
  values transposed to [1, N, 4 + nc] are joined on neither.
- ``output_parts``: when an output is a concatenation on its last axis (``[boxes, score, class]``), the op that
  computes each part. RT-DETR's boxes come out of a Sigmoid (normalised 0..1); YOLO26's end-to-end boxes out of
  arithmetic in pixels.
"""

from __future__ import annotations

from typing import Any

# Ops that move, select or re-type values without computing new ones.
PASS_THROUGH = frozenset({
    "Convert", "FakeQuantize", "Gather", "GatherElements", "GatherND", "Reshape", "Squeeze", "Unsqueeze",
    "Transpose", "Slice", "StridedSlice", "Broadcast", "Tile",
})


def producer(output: Any) -> Any:
    """The first op behind ``output`` (an ``openvino.Output``) that computes values, following data inputs."""
    node = output.get_node()
    while node.get_type_name() in PASS_THROUGH and node.get_input_size() > 0:
        node = node.input_value(0).get_node()
    return node


def computed_with(graph: Any, *op_types: str, index: int = 0) -> bool:
    """Whether an op of one of ``op_types`` is among the ops output ``index`` is computed from."""
    todo, seen = [graph.outputs[index].get_node()], set()
    while todo:
        node = todo.pop()
        if node.get_type_name() in op_types:
            return True
        for i in range(node.get_input_size()):
            up = node.input_value(i).get_node()
            if up.get_name() not in seen:
                seen.add(up.get_name())
                todo.append(up)
    return False


def output_parts(graph: Any, index: int = 0) -> list[tuple[int, str]] | None:
    """(width, producing op type) of each part of output ``index`` when it is a Concat on its last axis."""
    result = graph.outputs[index].get_node()
    concat = producer(result.input_value(0))
    if concat.get_type_name() != "Concat":
        return None
    rank = concat.get_output_partial_shape(0).rank
    if rank.is_dynamic or concat.get_axis() not in (-1, rank.get_length() - 1):
        return None
    parts = []
    for i in range(concat.get_input_size()):
        value = concat.input_value(i)
        shape = value.get_partial_shape()
        if shape.rank.is_dynamic or shape[-1].is_dynamic:
            return None
        parts.append((shape[-1].get_length(), producer(value).get_type_name()))
    return parts


def joined_on(graph: Any, index: int = 0) -> tuple[int, list[int]] | None:
    """(axis counted from 0, each part's width along it) of the Concat that output ``index`` is, with nothing
    between them but type changes; ``None`` when it is no Concat, or an op that moves axes (Transpose, Reshape)
    stands between them."""
    node = graph.outputs[index].get_node().input_value(0).get_node()
    while node.get_type_name() in ("Convert", "FakeQuantize"):
        node = node.input_value(0).get_node()
    rank = node.get_output_partial_shape(0).rank if node.get_type_name() == "Concat" else None
    if rank is None or rank.is_dynamic:
        return None
    axis = node.get_axis() % rank.get_length()
    widths = [node.get_input_partial_shape(i)[axis] for i in range(node.get_input_size())]
    return (axis, [d.get_length() for d in widths]) if all(d.is_static for d in widths) else None


def anchor_grids(graph: Any, width: int) -> set[tuple[int, int, int]]:
    """(anchors, H, W) of every ``[1, A, width, H, W]`` or ``[1, A, H, W, width]`` view a Reshape makes."""
    grids: set[tuple[int, int, int]] = set()
    for op in graph.get_ops():
        if op.get_type_name() != "Reshape":
            continue
        shape = op.get_output_partial_shape(0)
        if shape.is_dynamic or len(shape) != 5:
            continue
        dims = [d.get_length() for d in shape]
        if dims[0] != 1:
            continue
        if dims[2] == width and dims[4] != width:
            grids.add((dims[1], dims[3], dims[4]))
        elif dims[4] == width:
            grids.add((dims[1], dims[2], dims[3]))
    return grids


# The key of what the graph said of the boxes at conversion, stored in the IR and read back from a served model's
# metadata (a server sends no graph): "normalised" or "pixels".
BOXES_KEY = "boxes"


def boxes_normalised(graph: Any | None, metadata: dict[str, str] | Any) -> bool | None:
    """Whether a ``[1, K, 4 + ...]`` output's boxes are normalised (Sigmoid) rather than in pixels; ``None``
    when neither the graph nor the metadata says (without the graph: the exporter's, or what the graph said at
    conversion, under :data:`BOXES_KEY`)."""
    head = metadata.get("head") if metadata else None
    if head == "RTDETRDecoder":
        return True
    if metadata and metadata.get("end2end") == "True" and head is not None:
        return False
    if graph is None:
        told = metadata.get(BOXES_KEY) if metadata else None
        return {"normalised": True, "pixels": False}.get(told) if isinstance(told, str) else None
    parts = output_parts(graph)
    if not parts or parts[0][0] != 4:
        return None
    return parts[0][1] == "Sigmoid"
