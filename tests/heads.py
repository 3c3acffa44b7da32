"""Detection heads built with ``openvino.opset``, shaped as each exporter writes them (fixed seeds).

Each builder returns an ``ov.Model`` with one ``images`` input [1, 3, H, W]. They are small but real graphs,
so the families' graph checks see what they would see in an exported model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openvino as ov
import openvino.opset13 as ops


def _const(a) -> ov.Node:
    return ops.constant(np.asarray(a))


def _conv(x, c_in: int, c_out: int, stride: int, rng, std: float = 0.05) -> ov.Node:
    w = rng.normal(0, std, (c_out, c_in, stride, stride)).astype(np.float32)
    return ops.convolution(x, _const(w), [stride, stride], [0, 0], [0, 0], [1, 1])


def _input(size: tuple[int, int]) -> ov.Node:
    return ops.parameter([1, 3, *size], ov.Type.f32, name="images")


def yolox_raw_head(size=(64, 64), nc: int = 2, strides=(8, 16, 32), seed: int = 0, decoded: bool = False,
                   std: float | None = None) -> ov.Model:
    """YOLOX's export: per stride [reg(4), sigmoid(obj), sigmoid(cls)] on channels, flattened, [1, N, 5 + nc].
    ``decoded``: as exported with the head's ``decode_in_inference`` (YOLOX's ``--decode_in_inference``), the boxes
    decoded in the graph, xy = (raw + grid) * stride, wh = exp(raw) * stride: the same weights give the same boxes.
    ``std``: the weights' spread at stride 8, less at the larger strides' larger kernels (boxes of a few cells on an
    image of 0..255, as YOLOX takes it); default 0.05 at every stride."""
    rng = np.random.default_rng(seed)
    x = _input(size)
    levels, grids, cell_strides = [], [], []
    for s in strides:
        spread = 0.05 if std is None else std * 8 / s
        reg = _conv(x, 3, 4, s, rng, spread)
        obj_cls = ops.sigmoid(_conv(x, 3, 1 + nc, s, rng, spread))
        level = ops.concat([reg, obj_cls], axis=1)
        levels.append(ops.reshape(level, _const(np.array([1, 5 + nc, -1], np.int64)), special_zero=False))
        ys, xs = np.meshgrid(np.arange(size[0] // s), np.arange(size[1] // s), indexing="ij")
        grids.append(np.stack([xs, ys], -1).reshape(-1, 2))
        cell_strides.append(np.full((xs.size, 1), s))
    out = ops.transpose(ops.concat(levels, axis=2), _const(np.array([0, 2, 1], np.int64)))
    if decoded:
        xy, wh, rest = ops.variadic_split(out, _const(np.int64(2)), _const(np.array([2, 2, 1 + nc], np.int64))).outputs()
        stride = _const(np.concatenate(cell_strides)[None].astype(np.float32))
        xy = ops.multiply(ops.add(xy, _const(np.concatenate(grids)[None].astype(np.float32))), stride)
        out = ops.concat([xy, ops.multiply(ops.exp(wh), stride), rest], axis=2)
    return ov.Model([out], [x], "yolox_like")


def dfl_head(size=(64, 64), nc: int = 2, strides=(8, 16, 32), seed: int = 0, transposed: bool = False) -> ov.Model:
    """YOLOv8's Detect as exported: per stride 4 x 16 box bins and nc class logits, each box side the bins' softmax
    (DFL) weighted by 0..15, times the stride; [1, 4 + nc, N], or [1, N, 4 + nc] ``transposed`` as some deployment
    exports write it."""
    rng = np.random.default_rng(seed)
    x = _input(size)
    levels = []
    for s in strides:
        y = ops.reshape(_conv(x, 3, 64 + nc, s, rng), _const(np.array([1, 64 + nc, -1], np.int64)), special_zero=False)
        bins, cls = ops.variadic_split(y, _const(np.int64(1)), _const(np.array([64, nc], np.int64))).outputs()
        cells = (size[0] // s) * (size[1] // s)
        prob = ops.softmax(ops.reshape(bins, _const(np.array([1, 4, 16, cells], np.int64)), special_zero=False), 2)
        weights = _const(np.arange(16, dtype=np.float32).reshape(1, 1, 16, 1))
        dist = ops.reduce_sum(ops.multiply(prob, weights), _const(np.int64(2)), keep_dims=False)
        levels.append(ops.concat([ops.multiply(dist, _const(np.float32(s))), ops.sigmoid(cls)], axis=1))
    out = ops.concat(levels, axis=2)
    if transposed:
        out = ops.transpose(out, _const(np.array([0, 2, 1], np.int64)))
    return ov.Model([out], [x], "dfl_like")


def distance_head(size=(64, 64), nc: int = 2, strides=(8, 16, 32), seed: int = 0) -> ov.Model:
    """YOLOv6's Detect as exported (no DFL): per stride 4 box distances and sigmoided class scores, the distances made
    boxes with the anchor points and times the stride, then [boxes, ones, scores] on the last axis: [1, N, 5 + nc],
    YOLOX's shape with the boxes already in pixels and no Exp."""
    rng = np.random.default_rng(seed)
    x = _input(size)
    dists, scores, anchors, cell_strides = [], [], [], []
    for s in strides:
        flat = _const(np.array([1, -1, (size[0] // s) * (size[1] // s)], np.int64))
        dists.append(ops.reshape(_conv(x, 3, 4, s, rng), flat, special_zero=False))
        scores.append(ops.reshape(ops.sigmoid(_conv(x, 3, nc, s, rng)), flat, special_zero=False))
        ys, xs = np.meshgrid(np.arange(size[0] // s), np.arange(size[1] // s), indexing="ij")
        anchors.append(np.stack([xs, ys], -1).reshape(-1, 2) + 0.5)
        cell_strides.append(np.full((xs.size, 1), s))
    order = _const(np.array([0, 2, 1], np.int64))
    dist = ops.transpose(ops.concat(dists, axis=2), order)  # [1, N, 4]: left, top, right, bottom
    lt, rb = ops.variadic_split(dist, _const(np.int64(2)), _const(np.array([2, 2], np.int64))).outputs()
    points = _const(np.concatenate(anchors)[None].astype(np.float32))
    x1y1, x2y2 = ops.subtract(points, lt), ops.add(points, rb)
    centre = ops.divide(ops.add(x1y1, x2y2), _const(np.float32(2)))
    boxes = ops.multiply(ops.concat([centre, ops.subtract(x2y2, x1y1)], axis=2),
                         _const(np.concatenate(cell_strides)[None].astype(np.float32)))
    n = sum((size[0] // s) * (size[1] // s) for s in strides)
    ones = _const(np.ones((1, n, 1), np.float32))
    out = ops.concat([boxes, ones, ops.transpose(ops.concat(scores, axis=2), order)], axis=2)
    return ov.Model([out], [x], "yolov6_like")


def anchor_head(size=(64, 64), nc: int = 2, anchors: int = 1, strides=(8, 16, 32), seed: int = 0) -> ov.Model:
    """YOLOv5's Detect as exported: per stride view [1, A, 5 + nc, H, W], sigmoid, boxes decoded with grid and
    anchors in the graph, [1, A * H * W, 5 + nc] per stride, concatenated: [1, N, 5 + nc]."""
    rng = np.random.default_rng(seed)
    x = _input(size)
    no = 5 + nc
    levels = []
    for s in strides:
        gh, gw = size[0] // s, size[1] // s
        y = _conv(x, 3, anchors * no, s, rng)
        y = ops.reshape(y, _const(np.array([1, anchors, no, gh, gw], np.int64)), special_zero=False)
        y = ops.sigmoid(ops.transpose(y, _const(np.array([0, 1, 3, 4, 2], np.int64))))  # [1, A, H, W, no]
        xy, wh, rest = ops.variadic_split(y, _const(np.int64(4)), _const(np.array([2, 2, no - 4], np.int64))).outputs()
        gy, gx = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
        grid = np.stack([gx, gy], -1)[None, None].astype(np.float32) - 0.5
        anchor = np.full((1, anchors, 1, 1, 2), 2.0 * s, np.float32)
        xy = ops.multiply(ops.add(ops.multiply(xy, _const(np.float32(2))), _const(grid)), _const(np.float32(s)))
        wh = ops.multiply(ops.power(ops.multiply(wh, _const(np.float32(2))), _const(np.float32(2))), _const(anchor))
        y = ops.concat([xy, wh, rest], axis=4)
        levels.append(ops.reshape(y, _const(np.array([1, -1, no], np.int64)), special_zero=False))
    return ov.Model([ops.concat(levels, axis=1)], [x], "yolov5_like")


def end_to_end_head(size=(64, 64), k: int = 10, normalised: bool = False, seed: int = 0) -> ov.Model:
    """[1, K, 6] = [boxes, score, class]: boxes out of a Sigmoid (RT-DETR) or of pixel arithmetic (YOLO26)."""
    rng = np.random.default_rng(seed)
    x = _input(size)
    pooled = ops.reshape(_conv(x, 3, 6 * k, size[0], rng, std=0.01), _const(np.array([1, k, 6], np.int64)),
                         special_zero=False)
    parts = ops.variadic_split(pooled, _const(np.int64(2)), _const(np.array([4, 1, 1], np.int64))).outputs()
    boxes = ops.sigmoid(parts[0]) if normalised else ops.multiply(ops.abs(parts[0]), _const(np.float32(size[1])))
    score = ops.sigmoid(parts[1])
    cls = ops.floor(ops.abs(parts[2]))
    return ov.Model([ops.concat([boxes, score, cls], axis=2)], [x], "e2e_like")


def two_scale_anchor_yolo(size=(352, 352), seed: int = 0) -> ov.Model:
    """The issue's model: a two-scale anchor-based YOLO variant with raw outputs (1, 80, 11, 11), (1, 80, 22, 22)."""
    rng = np.random.default_rng(seed)
    x = _input(size)
    return ov.Model([_conv(x, 3, 80, 32, rng, std=0.5), _conv(x, 3, 80, 16, rng, std=0.5)], [x], "two_scale")


def raw_grid(size=(352, 352), channels: int = 8, stride: int = 16, seed: int = 0) -> ov.Model:
    """One raw convolution output [1, channels, H/stride, W/stride]: shaped like FastestDet, values unbounded."""
    rng = np.random.default_rng(seed)
    x = _input(size)
    return ov.Model([_conv(x, 3, channels, stride, rng, std=0.5)], [x], "raw_grid")


def onnx_yolo(path: Path, nc: int = 3, metadata: dict[str, str] | None = None, size: int = 64,
              dynamic: bool = False, batch: int = 1, fixed: bool = False) -> Path:
    """A tiny ONNX with an Ultralytics-shaped output [batch, 4 + nc, (size/8)^2] and the given metadata_props:
    boxes (pixels, spread over the image) and sigmoided class scores concatenated, as Ultralytics' head ends.
    A ``batch`` over 1 is written into the Reshape's constant, as Ultralytics' ``export(batch=N)`` does; ``fixed``
    writes the cell count there too, as a static Ultralytics export's DFL Reshape holds it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.3, (4 + nc, 3, 8, 8)).astype(np.float32), "w"),
        numpy_helper.from_array(np.array([batch, 4 + nc, -1 if batch == 1 and not fixed else (size // 8) ** 2],
                                         np.int64), "shape"),
        numpy_helper.from_array(np.array([4, nc], np.int64), "split"),
        numpy_helper.from_array(np.array([size, size, size / 4, size / 4], np.float32).reshape(1, 4, 1), "scale"),
    ]
    nodes = [
        helper.make_node("Conv", ["images", "w"], ["conv"], kernel_shape=[8, 8], strides=[8, 8]),
        helper.make_node("Reshape", ["conv", "shape"], ["raw"]),
        helper.make_node("Split", ["raw", "split"], ["box_raw", "cls_raw"], axis=1),
        helper.make_node("Sigmoid", ["box_raw"], ["box_unit"]),
        helper.make_node("Mul", ["box_unit", "scale"], ["boxes"]),
        helper.make_node("Sigmoid", ["cls_raw"], ["scores"]),
        helper.make_node("Concat", ["boxes", "scores"], ["output0"], axis=1),
    ]
    dims = ["batch", 3, "h", "w"] if dynamic else [batch, 3, size, size]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("images", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, None)], inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    for key, value in (metadata or {}).items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.save(model, str(path))
    return path


def ssd_head(size=(64, 64), classes: int = 3, background: int = 0, opset: int = 1) -> ov.Model:
    """SSD's ``DetectionOutput`` ([1, 1, 200, 7]) over four fixed priors (boxes are the priors, no offsets):
    prior 0 scores 0.9 for label 1, prior 1 scores 0.8 for label ``classes - 1``, prior 2 scores 0.95 for the
    background label when it is not -1, prior 3 nothing. ``classes`` counts the background, as DetectionOutput's
    ``num_classes`` does (opset 8 leaves it out of its attributes: the shapes say it)."""
    x = _input(size)
    zero = ops.multiply(ops.reduce_mean(x, _const(np.array([0, 1, 2, 3], np.int64)), keep_dims=False),
                        _const(np.float32(0)))  # the outputs depend on the input, as a network's do
    priors = np.array([[0.1, 0.1, 0.4, 0.6], [0.5, 0.5, 0.9, 0.8], [0.2, 0.6, 0.3, 0.9], [0.6, 0.1, 0.7, 0.2]],
                      np.float32)
    proposals = np.stack([priors.reshape(-1), np.full(16, 0.1, np.float32)])[None]  # [1, 2, P * 4]
    scores = np.zeros((4, classes), np.float32)
    scores[0, 1], scores[1, classes - 1] = 0.9, 0.8
    if background >= 0:
        scores[2, background] = 0.95
    box_logits = ops.add(_const(np.zeros((1, 16), np.float32)), zero)
    class_preds = ops.add(_const(scores.reshape(1, -1)), zero)
    attrs = {"background_label_id": background, "top_k": 200, "keep_top_k": [200], "nms_threshold": 0.45,
             "code_type": "caffe.PriorBoxParameter.CENTER_SIZE", "share_location": True,
             "confidence_threshold": 0.01, "normalized": True, "variance_encoded_in_target": False}
    if opset == 1:
        import openvino.opset1 as ssd_ops

        attrs["num_classes"] = classes
    else:
        import openvino.opset8 as ssd_ops
    out = ssd_ops.detection_output(box_logits, class_preds, _const(proposals), attrs)
    return ov.Model([out], [x], "ssd_like")


def save(model: ov.Model, path) -> str:
    ov.save_model(model, str(path), compress_to_fp16=False)
    return str(path)
