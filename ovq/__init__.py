"""ovq: take an object detector to production on Intel hardware with OpenVINO and NNCF."""

from __future__ import annotations

from ovq.annotate import annotate
from ovq.bench import BenchResult, benchmark, format_table
from ovq.bundle import BundleResult, build_bundle
from ovq.config import PipelineConfig, load_pipeline_config, run_pipeline_config
from ovq.convert import convert, prepare
from ovq.datasets import Dataset, Sample, load_dataset
from ovq.decoders import REGISTRY as DECODERS
from ovq.detections import Detections
from ovq.devices import DeviceInfo, DevicesReport, DeviceSpec, parse_device, query_devices
from ovq.errors import (
    ConfigError,
    DatasetError,
    DependencyError,
    DeviceError,
    ModelError,
    OvqError,
    SourceError,
)
from ovq.evaluate import EvalResult, MapResult, coco_map, evaluate, predict_samples
from ovq.metadata import ModelInfo
from ovq.model import Detector
from ovq.pipeline import FrameResult, Pipeline, Sink
from ovq.predict import predict
from ovq.quantize import AdvancedQuantizeOptions, QuantizeResult, RankBy, quantize
from ovq.readers import ReconnectPolicy
from ovq.sinks import JsonlSink, MqttSink, VideoSink, WindowSink
from ovq.stats import RunSummary, StreamStats

__version__ = "0.1.0"

__all__ = [
    "AdvancedQuantizeOptions",
    "BenchResult",
    "BundleResult",
    "DECODERS",
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
    "EvalResult",
    "FrameResult",
    "JsonlSink",
    "MapResult",
    "ModelError",
    "ModelInfo",
    "MqttSink",
    "OvqError",
    "PipelineConfig",
    "QuantizeResult",
    "RankBy",
    "Pipeline",
    "ReconnectPolicy",
    "RunSummary",
    "Sample",
    "Sink",
    "SourceError",
    "StreamStats",
    "VideoSink",
    "WindowSink",
    "__version__",
    "annotate",
    "benchmark",
    "build_bundle",
    "coco_map",
    "convert",
    "evaluate",
    "format_table",
    "load_dataset",
    "load_pipeline_config",
    "parse_device",
    "predict",
    "predict_samples",
    "prepare",
    "quantize",
    "query_devices",
    "run_pipeline_config",
]
