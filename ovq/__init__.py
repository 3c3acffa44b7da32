"""ovq: take an object detector to production on Intel hardware with OpenVINO and NNCF."""

from __future__ import annotations

from ovq.core.detections import Detections
from ovq.core.drawing import annotate
from ovq.core.errors import (
    ConfigError,
    DatasetError,
    DependencyError,
    DeviceError,
    ModelError,
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
from ovq.serving.client import ServerUnavailable, ServingError
from ovq.serving.remote import RemoteDetector, open_detector
from ovq.serving.repository import ExportOptions, export_serving
from ovq.streaming.capacity import CapacityReport, Trial, capacity
from ovq.streaming.pipeline import FrameResult, Pipeline, Sink
from ovq.streaming.readers import ReconnectPolicy
from ovq.streaming.sinks import JsonlSink, MqttSink, VideoSink, WindowSink
from ovq.streaming.stats import RunSummary, StreamStats
from ovq.streaming.web import LiveServer

__version__ = "0.1.0"

__all__ = [
    "DECODERS",
    "AdvancedQuantizeOptions",
    "BenchResult",
    "BiasCorrection",
    "BundleResult",
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
    "JsonlSink",
    "LiveServer",
    "MapResult",
    "MatchTable",
    "ModelError",
    "ModelInfo",
    "MqttSink",
    "OperatingPoint",
    "OperatingPoints",
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
