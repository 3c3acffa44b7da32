"""Which family a model is, and what its classes are called: decided once, at conversion, from the model itself.

A family claims a model only when every output fits it (see each decoder's ``matches``); when none or several
claim it, conversion stops and asks for ``--family``. A forced family is checked the same way. Class names come
from ``--labels``, else from what the exporter wrote (:mod:`ovq.model.exporter`), else for an Open Model Zoo
one-class detector from its documented class (its IR keeps its model name); COCO's 80 names only when the
model names nothing and has exactly 80 classes, and the log says so.
"""

from __future__ import annotations

import logging
from typing import Any

from ovq.core.errors import ModelError
from ovq.core.labels import COCO80, OMZ_ONE_CLASS
from ovq.core.metadata import ModelInfo
from ovq.model.decoders import BUILTIN, Decoder, ModelFacts, get_decoder, infer_families
from ovq.model.decoders.signatures import BOXES_KEY, boxes_normalised
from ovq.model.exporter import ExporterMetadata

logger = logging.getLogger(__name__)

EXPORTER_KEY = "exporter"  # ModelInfo.extra key holding the exporter's short metadata
GRAPH_KEY = "graph"  # ModelInfo.extra key holding what the graph said at conversion, for a served model (no graph)


def facts_of(model: Any, input_size: tuple[int, int], metadata: dict[str, str]) -> ModelFacts:
    """The facts a family judges a model by: static output shapes, input size, metadata, the graph."""
    return ModelFacts(
        output_shapes=tuple(tuple(o.get_shape()) for o in model.outputs),
        input_size=input_size,
        metadata=dict(metadata),
        graph=model,
        output_names=tuple(o.get_any_name() if o.get_names() else "" for o in model.outputs),
    )


def graph_said(model: Any) -> dict[str, str]:
    """What the graph says that a server, which sends no graph, cannot: stored in the IR (``GRAPH_KEY``) and read
    back as a served model's metadata."""
    normalised = boxes_normalised(model, {})
    return {} if normalised is None else {BOXES_KEY: "normalised" if normalised else "pixels"}


def served_metadata(info: ModelInfo) -> dict[str, str]:
    """The metadata a served model's family judges it by: the exporter's, and what its graph said at conversion."""
    return {**info.extra.get(EXPORTER_KEY, {}), **info.extra.get(GRAPH_KEY, {})}


def _shapes(facts: ModelFacts) -> str:
    return ", ".join(str(list(s)) for s in facts.output_shapes)


def _fits(decoder: Decoder, family: str, facts: ModelFacts, where: str) -> bool:
    """``decoder.matches(facts)``; a plug-in's check that raises is a :class:`ModelError` naming the family."""
    try:
        return bool(decoder.matches(facts))
    except Exception as exc:  # noqa: BLE001 - a plug-in's check can raise anything
        raise ModelError(f"{where}: family '{family}' failed to check the outputs: {type(exc).__name__}: {exc}") from None


def _ambiguity(decoder: Decoder, facts: ModelFacts) -> str | None:
    """Why a family that may fit could not tell how the outputs are laid out (its ``ambiguity``), or ``None``."""
    ambiguity = getattr(decoder, "ambiguity", None)
    return ambiguity(facts) if callable(ambiguity) else None


def choose_family(facts: ModelFacts, forced: str | None, where: str) -> tuple[str, Decoder]:
    """The family of the model ``facts`` describe: ``forced`` if its outputs fit it, else the only claimant."""
    if forced:
        decoder = get_decoder(forced)
        if not _fits(decoder, forced, facts, where):
            if (why := _ambiguity(decoder, facts)) is not None:
                raise ModelError(f"{where}: {why}")
            raise ModelError(
                f"{where}: --family {forced} does not fit the model's outputs {_shapes(facts)}; "
                f"{forced} expects {decoder.expects}"
            )
        return forced, decoder
    claimed = infer_families(facts)
    if not claimed:
        for decoder in BUILTIN.values():  # a family that would fit but cannot tell the layout says why
            if (why := _ambiguity(decoder, facts)) is not None:
                raise ModelError(f"{where}: {why}")
        raise ModelError(
            f"{where}: no known family fits the outputs {_shapes(facts)}; pass --family, or install the plug-in "
            "package for this model (`ovq families` lists the families)"
        )
    if len(claimed) > 1:
        raise ModelError(
            f"{where}: the outputs {_shapes(facts)} fit several families ({', '.join(claimed)}); "
            "pass --family to say which"
        )
    logger.info("%s: decoder family '%s' (its outputs %s fit no other)", where, claimed[0], _shapes(facts))
    return claimed[0], get_decoder(claimed[0])


def choose_labels(
    decoder: Decoder, facts: ModelFacts, labels: list[str] | None, meta: ExporterMetadata, where: str
) -> list[str]:
    """``labels`` if given, else the exporter's names, else an Open Model Zoo one-class detector's documented class,
    else COCO's for 80 classes, else ``class0..``."""
    nc = decoder.num_classes(facts)
    origin = "--labels"
    if labels is None:
        found = meta.names()
        if found is not None:
            labels, origin = found
            logger.info("%s: %d class names from %s", where, len(labels), origin)
    omz = OMZ_ONE_CLASS.get(meta.values.get("model_name", ""))
    if labels is None and omz is not None and nc == 1:
        logger.info("%s: the model names no classes; Open Model Zoo's %s detects one, '%s' (--labels to rename it)",
                    where, meta.values["model_name"], omz)
        return [omz]
    if labels is not None:
        if nc is not None and len(labels) != nc:
            raise ModelError(
                f"{where}: {origin} names {len(labels)} classes but the outputs have {nc}; pass --labels with {nc}"
            )
        return list(labels)
    if nc == 80:
        logger.info("%s: the model names no classes; its 80 classes are taken for COCO's (--labels to name them)",
                    where)
        return list(COCO80)
    if nc:
        logger.info("%s: the model names no classes; calling its %d classes class0..class%d (--labels to name them)",
                    where, nc, nc - 1)
        return [f"class{i}" for i in range(nc)]
    hint = " (--labels coco91 names torchvision's COCO weights' classes)" if decoder.family == "torchvision" else ""
    logger.info("%s: the model names no classes and its outputs do not say how many; labels are class ids%s", where,
                hint)
    return []


def check_family(model: Any, info: ModelInfo, where: str) -> Decoder:
    """The decoder of a converted model, checked against the model's outputs (an IR's tag is not trusted)."""
    decoder = get_decoder(info.family)
    facts = facts_of(model, info.input_size, info.extra.get(EXPORTER_KEY, {}))
    if not _fits(decoder, info.family, facts, where):
        raise ModelError(
            f"{where}: its outputs {_shapes(facts)} do not fit the family '{info.family}' it is tagged with "
            f"({decoder.expects}); convert the source model again (`ovq families` lists the families)"
        )
    background = getattr(decoder, "background_id", None)
    if info.background_id is None and callable(background) and (label := background(facts)) is not None:
        logger.warning("%s: converted by an earlier ovq, whose class ids count the model's background (label %d), so "
                       "the first class is 1; convert the source model again for ids from 0 (and Open Model Zoo's "
                       "class names)", where, label)
    return decoder
