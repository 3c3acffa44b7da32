"""Decoder families, registered explicitly: every family ovq knows is listed here, in match order."""

from __future__ import annotations

from ovq.core.errors import ModelError
from ovq.model.decoders.base import DecodeParams, Decoder, SourcePreprocessing
from ovq.model.decoders.fastestdet import FastestDetDecoder
from ovq.model.decoders.ssd import SsdDecoder
from ovq.model.decoders.yolo import YoloDecoder
from ovq.model.decoders.yolo_e2e import YoloEndToEndDecoder
from ovq.model.decoders.yolox import YoloxDecoder

# Order matters for inference from output shapes: the most specific shapes first.
REGISTRY: dict[str, Decoder] = {
    "yolo_e2e": YoloEndToEndDecoder(),
    "ssd": SsdDecoder(),
    "yolox": YoloxDecoder(),
    "yolo": YoloDecoder(),
    "fastestdet": FastestDetDecoder(),
}


def get_decoder(family: str) -> Decoder:
    try:
        return REGISTRY[family]
    except KeyError:
        raise ModelError(f"unknown decoder family '{family}'; known: {', '.join(REGISTRY)}") from None


def infer_family(output_shapes: list[tuple[int, ...]], input_size: tuple[int, int]) -> str | None:
    """The first registered family whose output shapes match, or ``None``."""
    for name, decoder in REGISTRY.items():
        if decoder.matches(output_shapes, input_size):
            return name
    return None


__all__ = ["REGISTRY", "DecodeParams", "Decoder", "SourcePreprocessing", "get_decoder", "infer_family"]
