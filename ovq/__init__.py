"""ovq: take an object detector to production on Intel hardware with OpenVINO and NNCF.

Every public name is listed in ``_EXPORTS`` with the module that defines it, and imported from there on first
use: ``import ovq`` (and so every ``ovq`` command) starts without loading OpenVINO, NNCF or OpenCV, so a
command that fails early fails fast, and a Ctrl-C in the first moments of a command is the command's to
handle (one line, exit 130), not a traceback out of an import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> (defining module, name there)
_EXPORTS: dict[str, tuple[str, str]] = {
    "Detections": ("ovq.core.detections", "Detections"),
    "annotate": ("ovq.core.drawing", "annotate"),
    "ConfigError": ("ovq.core.errors", "ConfigError"),
    "DatasetError": ("ovq.core.errors", "DatasetError"),
    "DependencyError": ("ovq.core.errors", "DependencyError"),
    "DeviceError": ("ovq.core.errors", "DeviceError"),
    "ModelError": ("ovq.core.errors", "ModelError"),
    "OutputError": ("ovq.core.errors", "OutputError"),
    "OvqError": ("ovq.core.errors", "OvqError"),
    "SourceError": ("ovq.core.errors", "SourceError"),
    "ModelInfo": ("ovq.core.metadata", "ModelInfo"),
    "Dataset": ("ovq.data.datasets", "Dataset"),
    "Sample": ("ovq.data.datasets", "Sample"),
    "load_dataset": ("ovq.data.datasets", "load_dataset"),
    "run_pipeline_config": ("ovq.deployment.build", "run_pipeline_config"),
    "BundleResult": ("ovq.deployment.bundle", "BundleResult"),
    "build_bundle": ("ovq.deployment.bundle", "build_bundle"),
    "load_pipeline_config": ("ovq.deployment.loader", "load_pipeline_config"),
    "PipelineConfig": ("ovq.deployment.schema", "PipelineConfig"),
    "ServeConfig": ("ovq.deployment.schema", "ServeConfig"),
    "EvalResult": ("ovq.evaluation.accuracy", "EvalResult"),
    "MapResult": ("ovq.evaluation.accuracy", "MapResult"),
    "coco_map": ("ovq.evaluation.accuracy", "coco_map"),
    "evaluate": ("ovq.evaluation.accuracy", "evaluate"),
    "predict_samples": ("ovq.evaluation.accuracy", "predict_samples"),
    "DropInterval": ("ovq.evaluation.metrics", "DropInterval"),
    "MatchTable": ("ovq.evaluation.metrics", "MatchTable"),
    "OperatingPoint": ("ovq.evaluation.metrics", "OperatingPoint"),
    "bootstrap_drop": ("ovq.evaluation.metrics", "bootstrap_drop"),
    "predict": ("ovq.evaluation.prediction", "predict"),
    "BenchResult": ("ovq.evaluation.speed", "BenchResult"),
    "benchmark": ("ovq.evaluation.speed", "benchmark"),
    "format_table": ("ovq.evaluation.speed", "format_table"),
    "convert": ("ovq.model.conversion", "convert"),
    "prepare": ("ovq.model.conversion", "prepare"),
    "DECODERS": ("ovq.model.decoders", "BUILTIN"),
    "Family": ("ovq.model.decoders", "Family"),
    "families": ("ovq.model.decoders", "families"),
    "Detector": ("ovq.model.detector", "Detector"),
    "CollapseCheck": ("ovq.quantization.collapse", "CollapseCheck"),
    "ClassAP": ("ovq.quantization.findings", "ClassAP"),
    "HoldoutResult": ("ovq.quantization.findings", "HoldoutResult"),
    "OperatingPoints": ("ovq.quantization.findings", "OperatingPoints"),
    "SpeedVerdict": ("ovq.quantization.findings", "SpeedVerdict"),
    "AdvancedQuantizeOptions": ("ovq.quantization.options", "AdvancedQuantizeOptions"),
    "BiasCorrection": ("ovq.quantization.options", "BiasCorrection"),
    "DropType": ("ovq.quantization.options", "DropType"),
    "OverflowFix": ("ovq.quantization.options", "OverflowFix"),
    "Precision": ("ovq.quantization.options", "Precision"),
    "Preset": ("ovq.quantization.options", "Preset"),
    "QuantizeOptions": ("ovq.quantization.options", "QuantizeOptions"),
    "RankBy": ("ovq.quantization.options", "RankBy"),
    "QuantizeReport": ("ovq.quantization.report", "QuantizeReport"),
    "QuantizeResult": ("ovq.quantization.workflow", "QuantizeResult"),
    "quantize": ("ovq.quantization.workflow", "quantize"),
    "DeviceInfo": ("ovq.runtime.capabilities", "DeviceInfo"),
    "DevicesReport": ("ovq.runtime.capabilities", "DevicesReport"),
    "query_devices": ("ovq.runtime.capabilities", "query_devices"),
    "DeviceSpec": ("ovq.runtime.devices", "DeviceSpec"),
    "parse_device": ("ovq.runtime.devices", "parse_device"),
    "InferQueue": ("ovq.runtime.inference", "InferQueue"),
    "ServerUnavailable": ("ovq.serving.client", "ServerUnavailable"),
    "ServingError": ("ovq.serving.client", "ServingError"),
    "RemoteDetector": ("ovq.serving.remote", "RemoteDetector"),
    "open_detector": ("ovq.serving.remote", "open_detector"),
    "ExportOptions": ("ovq.serving.repository", "ExportOptions"),
    "export_serving": ("ovq.serving.repository", "export_serving"),
    "CapacityInterrupted": ("ovq.streaming.capacity", "CapacityInterrupted"),
    "CapacityReport": ("ovq.streaming.capacity", "CapacityReport"),
    "Trial": ("ovq.streaming.capacity", "Trial"),
    "capacity": ("ovq.streaming.capacity", "capacity"),
    "FrameResult": ("ovq.streaming.pipeline", "FrameResult"),
    "Pipeline": ("ovq.streaming.pipeline", "Pipeline"),
    "Sink": ("ovq.streaming.pipeline", "Sink"),
    "ReconnectPolicy": ("ovq.streaming.readers", "ReconnectPolicy"),
    "JsonlSink": ("ovq.streaming.sinks", "JsonlSink"),
    "MqttSink": ("ovq.streaming.mqtt", "MqttSink"),
    "VideoSink": ("ovq.streaming.sinks", "VideoSink"),
    "WindowSink": ("ovq.streaming.sinks", "WindowSink"),
    "RunSummary": ("ovq.streaming.stats", "RunSummary"),
    "StreamStats": ("ovq.streaming.stats", "StreamStats"),
    "LiveServer": ("ovq.streaming.web", "LiveServer"),
}

__all__ = [
    "DECODERS",
    "AdvancedQuantizeOptions",
    "BenchResult",
    "BiasCorrection",
    "BundleResult",
    "CapacityInterrupted",
    "CapacityReport",
    "ClassAP",
    "CollapseCheck",
    "ConfigError",
    "Dataset",
    "DatasetError",
    "DependencyError",
    "Detections",
    "Detector",
    "DeviceError",
    "DeviceInfo",
    "DeviceSpec",
    "DevicesReport",
    "DropInterval",
    "DropType",
    "EvalResult",
    "ExportOptions",
    "Family",
    "FrameResult",
    "HoldoutResult",
    "InferQueue",
    "JsonlSink",
    "LiveServer",
    "MapResult",
    "MatchTable",
    "ModelError",
    "ModelInfo",
    "MqttSink",
    "OperatingPoint",
    "OperatingPoints",
    "OutputError",
    "OverflowFix",
    "OvqError",
    "Pipeline",
    "PipelineConfig",
    "Precision",
    "Preset",
    "QuantizeOptions",
    "QuantizeReport",
    "QuantizeResult",
    "RankBy",
    "ReconnectPolicy",
    "RemoteDetector",
    "RunSummary",
    "Sample",
    "ServeConfig",
    "ServerUnavailable",
    "ServingError",
    "Sink",
    "SourceError",
    "SpeedVerdict",
    "StreamStats",
    "Trial",
    "VideoSink",
    "WindowSink",
    "__version__",
    "annotate",
    "benchmark",
    "bootstrap_drop",
    "build_bundle",
    "capacity",
    "coco_map",
    "convert",
    "evaluate",
    "export_serving",
    "families",
    "format_table",
    "load_dataset",
    "load_pipeline_config",
    "open_detector",
    "parse_device",
    "predict",
    "predict_samples",
    "prepare",
    "quantize",
    "query_devices",
    "run_pipeline_config",
]


def __getattr__(name: str) -> Any:
    try:
        module, attr = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'ovq' has no attribute '{name}'") from None
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value  # once imported, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:  # what the names are, for type checkers and editors
    from ovq.core.detections import Detections
    from ovq.core.drawing import annotate
    from ovq.core.errors import (
        ConfigError,
        DatasetError,
        DependencyError,
        DeviceError,
        ModelError,
        OutputError,
        OvqError,
        SourceError,
    )
    from ovq.core.metadata import ModelInfo
    from ovq.data.datasets import Dataset, Sample, load_dataset
    from ovq.deployment.build import run_pipeline_config
    from ovq.deployment.bundle import BundleResult, build_bundle
    from ovq.deployment.loader import load_pipeline_config
    from ovq.deployment.schema import PipelineConfig, ServeConfig
    from ovq.evaluation.accuracy import EvalResult, MapResult, coco_map, evaluate, predict_samples
    from ovq.evaluation.metrics import DropInterval, MatchTable, OperatingPoint, bootstrap_drop
    from ovq.evaluation.prediction import predict
    from ovq.evaluation.speed import BenchResult, benchmark, format_table
    from ovq.model.conversion import convert, prepare
    from ovq.model.decoders import BUILTIN as DECODERS
    from ovq.model.decoders import Family, families
    from ovq.model.detector import Detector
    from ovq.quantization.collapse import CollapseCheck
    from ovq.quantization.findings import ClassAP, HoldoutResult, OperatingPoints, SpeedVerdict
    from ovq.quantization.options import (
        AdvancedQuantizeOptions,
        BiasCorrection,
        DropType,
        OverflowFix,
        Precision,
        Preset,
        QuantizeOptions,
        RankBy,
    )
    from ovq.quantization.report import QuantizeReport
    from ovq.quantization.workflow import QuantizeResult, quantize
    from ovq.runtime.capabilities import DeviceInfo, DevicesReport, query_devices
    from ovq.runtime.devices import DeviceSpec, parse_device
    from ovq.runtime.inference import InferQueue
    from ovq.serving.client import ServerUnavailable, ServingError
    from ovq.serving.remote import RemoteDetector, open_detector
    from ovq.serving.repository import ExportOptions, export_serving
    from ovq.streaming.capacity import CapacityInterrupted, CapacityReport, Trial, capacity
    from ovq.streaming.mqtt import MqttSink
    from ovq.streaming.pipeline import FrameResult, Pipeline, Sink
    from ovq.streaming.readers import ReconnectPolicy
    from ovq.streaming.sinks import JsonlSink, VideoSink, WindowSink
    from ovq.streaming.stats import RunSummary, StreamStats
    from ovq.streaming.web import LiveServer
