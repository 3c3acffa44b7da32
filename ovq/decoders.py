"""The decoder protocol, for packages that add a model family to ovq: the one stable place to import it from.

A family is a class implementing :class:`Decoder` (ovq instantiates it with no arguments), declared as an entry
point in the group ``ovq.decoders`` whose name is the family::

    # pyproject.toml of your package
    [project.entry-points."ovq.decoders"]
    centernet = "ovq_centernet:CenterNetDecoder"

Every ovq command then finds it (``ovq families`` lists it). ``matches(facts)`` must check every output's count
and shape; ``decode(outputs, resize, params)`` returns :class:`Detections` with confidences in [0, 1], usually
through :func:`finish`. See the README's "Bring your own detector" for a worked example.
"""

from ovq.core.detections import Detections
from ovq.core.geometry import ResizeInfo, cxcywh_to_xyxy
from ovq.model.decoders.base import (
    DecodeParams,
    Decoder,
    ModelFacts,
    SourcePreprocessing,
    check_confidences,
    finish,
)
from ovq.model.decoders.plugins import GROUP

__all__ = [
    "GROUP",
    "DecodeParams",
    "Decoder",
    "Detections",
    "ModelFacts",
    "ResizeInfo",
    "SourcePreprocessing",
    "check_confidences",
    "cxcywh_to_xyxy",
    "finish",
]
