"""Decoder families: the built-in ones, registered explicitly below, and plug-ins from installed packages.

``get_decoder(name)`` finds either; ``infer_families(facts)`` lists every family whose ``matches`` claims a
model (exactly one must, or ovq asks for ``--family``); ``families()`` lists them all with their origin.
"""

from __future__ import annotations

import logging

from ovq.core.errors import ModelError
from ovq.model.decoders.base import (
    DecodeParams,
    Decoder,
    ModelFacts,
    SourcePreprocessing,
    check_confidences,
    finish,
)
from ovq.model.decoders.fastestdet import FastestDetDecoder
from ovq.model.decoders.plugins import GROUP, Family, plugin_families
from ovq.model.decoders.rtdetr import RtdetrDecoder
from ovq.model.decoders.ssd import SsdDecoder
from ovq.model.decoders.torchvision import TorchvisionDecoder
from ovq.model.decoders.yolo import YoloDecoder
from ovq.model.decoders.yolo_e2e import YoloEndToEndDecoder
from ovq.model.decoders.yolov5 import Yolov5Decoder
from ovq.model.decoders.yolox import YoloxDecodedDecoder, YoloxDecoder

logger = logging.getLogger(__name__)

BUILTIN: dict[str, Decoder] = {
    "yolo": YoloDecoder(),
    "yolo_e2e": YoloEndToEndDecoder(),
    "rtdetr": RtdetrDecoder(),
    "yolov5": Yolov5Decoder(),
    "yolox": YoloxDecoder(),
    "yolox_decoded": YoloxDecodedDecoder(),
    "ssd": SsdDecoder(),
    "fastestdet": FastestDetDecoder(),
    "torchvision": TorchvisionDecoder(),
}


def plugins() -> dict[str, Family]:
    """The plug-in families of the installed packages (loaded once per process)."""
    return plugin_families(frozenset(BUILTIN))


def families() -> list[Family]:
    """Every family: built-in first, then plug-ins (with ``error`` set on those that cannot be used)."""
    return [Family(name, dec, "built-in") for name, dec in BUILTIN.items()] + list(plugins().values())


def get_decoder(family: str) -> Decoder:
    """The decoder of a built-in or plug-in family; :class:`ModelError` saying why when there is none."""
    if family in BUILTIN:
        return BUILTIN[family]
    found = plugins().get(family)
    if found is not None and found.decoder is not None:
        return found.decoder
    if found is not None:
        raise ModelError(f"decoder family '{family}' comes from {found.where} but cannot be used: {found.error}")
    usable = [f.name for f in families() if f.decoder is not None]
    raise ModelError(
        f"unknown decoder family '{family}': not built in and no installed package provides it (entry point "
        f"group '{GROUP}'); install its plug-in, or use one of: {', '.join(usable)}"
    )


def family_distribution(family: str) -> tuple[str, str] | None:
    """(package, version) of the installed package providing a plug-in family; ``None`` for a built-in one."""
    get_decoder(family)
    if family in BUILTIN:
        return None
    found = plugins()[family]
    return found.distribution or "", found.version or ""


def infer_families(facts: ModelFacts) -> list[str]:
    """Every usable family whose ``matches`` claims the model described by ``facts``."""
    claimed = [name for name, decoder in BUILTIN.items() if decoder.matches(facts)]
    for fam in plugins().values():
        if fam.decoder is None:
            continue
        try:
            if fam.decoder.matches(facts):
                claimed.append(fam.name)
        except Exception as exc:  # noqa: BLE001 - a plug-in's check can raise anything; then it does not claim
            logger.warning("family '%s' (%s): matches() failed: %s: %s", fam.name, fam.where, type(exc).__name__, exc)
    return claimed


__all__ = [
    "BUILTIN",
    "GROUP",
    "DecodeParams",
    "Decoder",
    "Family",
    "ModelFacts",
    "SourcePreprocessing",
    "check_confidences",
    "families",
    "family_distribution",
    "finish",
    "get_decoder",
    "infer_families",
    "plugins",
]
