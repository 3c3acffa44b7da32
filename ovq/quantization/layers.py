"""Which layers NNCF may quantize, which ones a device really runs in INT8, and which ones stay float.

Names are the layer names a user recognises from the source model: OpenVINO's ONNX front end names a
convolution ``X/WithoutBiases`` and its bias Add ``X``, and the CPU plugin fuses bias and activations into its
convolutions, so runtime names are mapped back to the model's own.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import openvino as ov

from ovq.core.errors import ConfigError

QUANTIZABLE_TYPES = ("Convolution", "GroupConvolution", "MatMul", "ConvolutionBackpropData")
_INT8 = ("i8", "u8")
_RUNTIME_MATMULS = ("Convolution", "FullyConnected", "Deconvolution", "MatMul")


def layer_name(name: str) -> str:
    return name.removesuffix("/WithoutBiases")


def quantizable_layers(model: ov.Model) -> set[str]:
    """Names of the layers NNCF can quantize (convolutions and matmuls)."""
    return {layer_name(op.get_friendly_name()) for op in model.get_ops() if op.get_type_name() in QUANTIZABLE_TYPES}


def int8_layers(compiled: ov.CompiledModel, known: set[str] | None = None) -> set[str]:
    """Names of the original layers that the device runs in INT8.

    The device fuses ops (bias, batch-norm scale) into its convolutions; ``known`` (the model's
    quantizable layer names, see :func:`quantizable_layers`) keeps the names a user recognises.
    """
    names: set[str] = set()
    for op in compiled.get_runtime_model().get_ops():
        rt = op.get_rt_info()
        if "runtimePrecision" not in rt or rt["runtimePrecision"].astype(str).lower() not in _INT8:
            continue
        if rt["layerType"].astype(str) not in _RUNTIME_MATMULS:
            continue
        layer = set()
        for name in rt["originalLayersNames"].astype(str).split(","):
            name = layer_name(name)
            if name and (known is None or name in known):
                layer.add(name)
        # a fused layer none of whose names is known still counts, under its own name
        names.update(layer or {layer_name(op.get_friendly_name())})
    return names


def count_fake_quantize(model: ov.Model) -> int:
    return sum(1 for op in model.get_ops() if op.get_type_name() == "FakeQuantize")


def decode_tail(model: ov.Model) -> list[str]:
    """Names of the ops between the last convolutions / matmuls and the outputs (the decoding tail).

    Box decoding (DFL softmax, grid offsets, stride multiplies, sigmoid scores) is arithmetic on exact
    coordinates: quantizing it costs accuracy and buys nothing measurable.
    """
    return _walk_from_outputs(model)[0]


def output_layers(model: ov.Model) -> list[str]:
    """Names of the convolutions / matmuls nearest the outputs (the first ones met walking back from each output):
    the layers whose outputs are the raw boxes and scores."""
    return _walk_from_outputs(model)[1]


def _walk_from_outputs(model: ov.Model) -> tuple[list[str], list[str]]:
    """Walking back from the outputs until convolutions / matmuls: the ops passed, and the layers reached.

    The walk does not cross ``ShapeOf``: what it reads is a tensor's shape, not its values (anchor grids and SSD
    prior boxes are sized from feature maps that way).
    """
    passed: list[str] = []
    reached: list[str] = []
    seen: set[int] = set()  # OpenVINO's node ids: id() of the Python wrappers is reused once one is freed
    stack = [r.input_value(0).get_node() for r in model.get_results()]
    while stack:
        node = stack.pop()
        if node.get_instance_id() in seen:
            continue
        seen.add(node.get_instance_id())
        kind = node.get_type_name()
        if kind in QUANTIZABLE_TYPES:
            reached.append(node.get_friendly_name())
            continue
        if kind in ("Parameter", "Constant"):
            continue
        passed.append(node.get_friendly_name())
        if kind != "ShapeOf":
            stack.extend(inp.get_source_output().get_node() for inp in node.inputs())
    return passed, reached


def ignored_scope(model: ov.Model, ignore: Sequence[str], *, keep_tail: bool, also: Sequence[str] = ()):
    """NNCF's ignored scope: the decode tail (``keep_tail``), the layers matching ``ignore`` (regexes) and the
    ops named in ``also``.

    ``None`` when nothing is ignored. Patterns that match no layer are an error naming the option, before any work.
    """
    import nncf

    names = (decode_tail(model) if keep_tail else []) + [n for n in also]
    patterns = list(ignore)
    if patterns:
        all_names = [op.get_friendly_name() for op in model.get_ops()]
        if not any(re.fullmatch(p, n) for p in patterns for n in all_names):
            raise ConfigError(f"ignore: {' '.join(patterns)}: matches no layer of the model")
    if not names and not patterns:
        return None
    return nncf.IgnoredScope(names=names, patterns=patterns, validate=False)
