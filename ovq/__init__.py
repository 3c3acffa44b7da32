"""ovq: take an object detector to production on Intel hardware with OpenVINO and NNCF."""

from __future__ import annotations

from ovq.annotate import annotate
from ovq.convert import convert, prepare
from ovq.decoders import REGISTRY as DECODERS
from ovq.detections import Detections
from ovq.errors import (
    ConfigError,
    DatasetError,
    DependencyError,
    DeviceError,
    ModelError,
    OvqError,
    SourceError,
)
from ovq.metadata import ModelInfo
from ovq.model import Detector
from ovq.predict import predict

__version__ = "0.1.0"

__all__ = [
    "DECODERS",
    "ConfigError",
    "DatasetError",
    "DependencyError",
    "Detections",
    "Detector",
    "DeviceError",
    "ModelError",
    "ModelInfo",
    "OvqError",
    "SourceError",
    "__version__",
    "annotate",
    "convert",
    "predict",
    "prepare",
]
