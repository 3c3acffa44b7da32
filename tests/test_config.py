"""Pipeline YAML: loading, every kind of error with file and key path, env references, the examples, running."""

from __future__ import annotations

import inspect
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import openvino as ov
import pytest
import yaml
from conftest import ctrl_c_when, popen_as_terminal

from ovq.cli import main
from ovq.core.errors import ConfigError
from ovq.core.urls import env_references, has_literal_password, mask_url
from ovq.data.layout import dataset_root
from ovq.deployment.build import build_sinks, check_paths, ensure_quantized, quantized_is_fresh, run_pipeline_config
from ovq.deployment.loader import load_pipeline_config, parse_pipeline_config
from ovq.deployment.schema import PipelineConfig
from ovq.model.conversion import convert
from ovq.quantization import workflow
from ovq.quantization.options import QuantizeOptions

ROOT = Path(__file__).resolve().parents[1]
PIPELINES = ROOT / "pipelines"
VIDEO = "videos/car-detection.mp4"
GIF = "videos/people-detection.gif"


@pytest.fixture(scope="module")
def fastestdet(assets, tmp_path_factory) -> Path:
    """The shared FastestDet (the smallest real detector: quick to quantize) as an ovq IR."""
    return convert(assets / "models/fastestdet/FastestDet.onnx", tmp_path_factory.mktemp("fastestdet") / "ir")


FULL = """
model: models/det
quantize:
  data: data/line1.yaml
  max_drop: 0.01
  calib_split: calib
  ignore: [head.*]
device: auto:gpu,cpu
precision: f32
hint: latency
nireq: 4
cache: false
sources:
  - {name: cam1, url: "rtsp://${CAM_USER:-viewer}:${CAM_PASSWORD}@10.0.0.11/stream1"}
  - 0
  - synth://conveyor?fps=30
  - videos/a.mp4
track: true
conf: 0.4
sinks:
  video: {path: out/line1.mp4, fps: 10}
  jsonl: out/line1.jsonl
  mqtt: {url_env: MY_BROKER, topic_prefix: factory/line1}
  show: false
max_frames: null
stats_interval: 5
reconnect: {initial_delay: 1, max_delay: 20, stall_timeout: 3, retry: true}
"""


def write(tmp_path: Path, text: str, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_full_file_loads_with_paths_relative_to_it(tmp_path):
    cfg = load_pipeline_config(write(tmp_path, FULL), environ={"CAM_PASSWORD": "s3cret"})
    assert cfg.model == tmp_path / "models/det"
    q = cfg.quantize
    assert q is not None and q.data == tmp_path / "data/line1.yaml" and q.options.max_drop == 0.01
    assert q.options.calib_split == "calib" and q.options.val_split == "val" and q.options.ignore == ("head.*",)
    assert q.options.advanced.bench_seconds == 0  # a pipeline's quantization skips the throughput benchmark
    assert q.output == tmp_path / "det-int8"  # default: beside the pipeline file
    assert (cfg.device, cfg.precision, cfg.hint, cfg.nireq, cfg.cache) == ("AUTO:GPU,CPU", "f32", "latency", 4, False)
    assert [s.url for s in cfg.sources] == [
        "rtsp://viewer:s3cret@10.0.0.11/stream1", "0", "synth://conveyor?fps=30", str(tmp_path / "videos/a.mp4")]
    assert cfg.source_names == ["cam1", "source1", "source2", "source3"]
    assert cfg.track and cfg.conf == 0.4 and cfg.max_frames is None and cfg.stats_interval == 5
    assert cfg.sinks.video == tmp_path / "out/line1.mp4" and cfg.sinks.video_fps == 10
    assert cfg.sinks.jsonl == tmp_path / "out/line1.jsonl"
    assert cfg.sinks.mqtt is not None and cfg.sinks.mqtt.url_env == "MY_BROKER"
    assert cfg.sinks.mqtt.topic_prefix == "factory/line1" and cfg.sinks.mqtt.url is None
    assert (cfg.reconnect.initial_delay, cfg.reconnect.max_delay, cfg.reconnect.stall_timeout) == (1, 20, 3)
    shown = cfg.to_dict()
    assert shown["sources"][0]["url"] == "rtsp://viewer:***@10.0.0.11/stream1"
    assert "s3cret" not in json.dumps(shown)
    assert "s3cret" in json.dumps(cfg.to_dict(mask_secrets=False))


def test_minimal_file_defaults(tmp_path):
    cfg = load_pipeline_config(write(tmp_path, "model: m.xml\nsources: 0\n"))
    assert cfg == PipelineConfig(path=tmp_path / "p.yaml", model=tmp_path / "m.xml", sources=cfg.sources,
                                 raw={"model": "m.xml", "sources": 0})
    assert [s.url for s in cfg.sources] == ["0"] and cfg.source_names is None
    assert cfg.device == "AUTO" and cfg.cache is True and cfg.quantize is None and cfg.sinks.mqtt is None


BASE = {"model": "m.xml", "sources": ["synth://conveyor"]}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"sinks": {"mqtt": {"topic_prefix": 3}}}, "p.yaml: sinks.mqtt.topic_prefix: expected a string, got 3"),
        ({"devise": "CPU"}, "p.yaml: unknown key 'devise'; did you mean 'device'?"),
        ({"sinks": {"jsnl": "x"}}, "p.yaml: sinks: unknown key 'jsnl'; did you mean 'jsonl'?"),
        ({"quantize": {"data": "d", "max_dorp": 0.1}}, "p.yaml: quantize: unknown key 'max_dorp'; did you mean 'max_drop'?"),
        ({"reconnect": {"zzz": 1}}, "p.yaml: reconnect: unknown key 'zzz'; expected one of: initial_delay, max_delay"),
        ({"sources": [{"nmae": "a", "url": "0"}]}, "p.yaml: sources[0]: unknown key 'nmae'; did you mean 'name'?"),
        ({"conf": True}, "p.yaml: conf: expected a number, got true"),
        ({"conf": 1.5}, "p.yaml: conf: expected a number <= 1, got 1.5"),
        ({"conf": "high"}, "p.yaml: conf: expected a number, got 'high'"),
        ({"nireq": -1}, "p.yaml: nireq: expected an integer >= 0, got -1"),
        ({"nireq": 2.5}, "p.yaml: nireq: expected an integer, got 2.5"),
        ({"max_frames": 0}, "p.yaml: max_frames: expected an integer >= 1, got 0"),
        ({"track": "yes"}, "p.yaml: track: expected true or false, got 'yes'"),
        ({"hint": "fast"}, "p.yaml: hint: expected one of throughput, latency, cumulative_throughput, got 'fast'"),
        ({"precision": "int4"}, "p.yaml: precision: expected one of default, f32, bf16, f16, got 'int4'"),
        ({"device": "XPU:CPU"}, "p.yaml: device: device 'XPU:CPU': only AUTO, MULTI, HETERO, BATCH take"),
        ({"device": "HETERO"}, "p.yaml: device: device 'HETERO': HETERO needs a device list"),
        ({"sources": []}, "p.yaml: sources: expected a non-empty list of sources, got an empty list"),
        ({"sources": None}, "p.yaml: sources: required"),
        ({"model": None}, "p.yaml: model: required"),
        ({"model": ""}, "p.yaml: model: expected a non-empty string"),
        ({"sources": ["rstp://cam/1"]}, "p.yaml: sources[0]: rstp://cam/1: unknown stream scheme 'rstp://'; did you mean 'rtsp://'?"),
        ({"sources": [-1]}, "p.yaml: sources[0]: a camera index must be >= 0, got -1"),
        ({"sources": [{"name": "a"}]}, "p.yaml: sources[0].url: required"),
        ({"sources": [{"name": "a", "url": "0"}, {"name": "a", "url": "1"}]},
         "p.yaml: sources[1].name: source name 'a' is used twice"),
        # passed --check, then the run failed: "stream names must be unique, got ['source0', 'source0']"
        ({"sources": [{"url": "0"}, {"name": "source0", "url": "1"}]},
         "p.yaml: sources[1].name: source name 'source0' is the name the unnamed sources[0] gets (name that one too)"),
        ({"sinks": {"mqtt": "ws://b"}}, "p.yaml: sinks.mqtt: ws://b: unknown MQTT broker scheme 'ws://'"),
        ({"sinks": {"mqtt": {"topic_prefix": "a/#"}}}, "p.yaml: sinks.mqtt.topic_prefix: MQTT wildcards"),
        ({"sinks": {"mqtt": {"url_env": "not a name"}}}, "p.yaml: sinks.mqtt.url_env: 'not a name' is not an env"),
        ({"sinks": {"video": {"fps": 5}}}, "p.yaml: sinks.video.path: required"),
        ({"sinks": {"video": {"path": "a.mp4", "fps": 0}}}, "p.yaml: sinks.video.fps: expected a number > 0"),
        ({"sinks": {"show": 1}}, "p.yaml: sinks.show: expected true or false, got 1"),
        ({"sinks": ["video"]}, "p.yaml: sinks: expected a mapping, got a list"),
        ({"reconnect": {"initial_delay": 5, "max_delay": 1}}, "p.yaml: reconnect.max_delay: must be >= initial_delay"),
        ({"reconnect": {"stall_timeout": 0}}, "p.yaml: reconnect.stall_timeout: expected a number > 0, got 0"),
        ({"quantize": {"max_drop": 0.1}}, "p.yaml: quantize.data: required"),
        ({"quantize": {"data": "d", "max_drop": 2}}, "p.yaml: quantize.max_drop: expected a number >= 0 and <= 1, got 2"),
        ({"quantize": {"data": "d", "preset": "fast"}}, "p.yaml: quantize.preset: expected one of performance, mixed, got 'fast'"),
        ({"quantize": {"data": "d", "ignore": "head"}}, "p.yaml: quantize.ignore: expected a list of layer-name patterns"),
        ({"quantize": {"data": "d", "ignore": ["("]}}, "p.yaml: quantize.ignore[0]: '(' is not a valid regular expression"),
        ({"quantize": {"data": "d", "precision": "f16"}}, "p.yaml: quantize.precision: expected one of default, f32, bf16"),
        ({"quantize": {"data": "d", "subset_size": 0}}, "p.yaml: quantize.subset_size: expected an integer >= 1"),
        ({"quantize": {"data": "d", "rank_by": "speed"}}, "p.yaml: quantize.rank_by: expected one of accuracy, accuracy-per-latency"),
        ({"quantize": {"data": "d", "bias_correction": "none"}}, "p.yaml: quantize.bias_correction: expected one of auto, fast, full"),
        ({"quantize": {"data": "d", "rank_by": "accuracy-per-latency"}}, "p.yaml: quantize.rank_by: accuracy-per-latency orders the reverts of accuracy control: it needs max_drop"),
        ({"quantize": {"data": "d", "outptu": "x"}}, "p.yaml: quantize: unknown key 'outptu'; did you mean 'output'?"),
        ({"quantize": {"data": "d", "latency_runs": -1}}, "p.yaml: quantize.latency_runs: expected an integer >= 0, got -1"),
        ({"quantize": {"data": "d", "device": "XPU:CPU"}}, "p.yaml: quantize.device: device 'XPU:CPU': only AUTO"),
        ({"quantize": ["d"]}, "p.yaml: quantize: expected a mapping, got a list"),
        ({"realtime": "no"}, "p.yaml: realtime: expected true or false, got 'no'"),
        ({"cache": 3}, "p.yaml: cache: expected true or false, got 3"),
        ({"stats_interval": -1}, "p.yaml: stats_interval: expected a number >= 0, got -1"),
    ],
)
def test_bad_values_name_file_and_key(tmp_path, change, message):
    data = {**BASE, **change}
    with pytest.raises(ConfigError) as err:
        parse_pipeline_config(data, tmp_path / "p.yaml", environ={})
    assert message in str(err.value)
    assert str(err.value).startswith(str(tmp_path / "p.yaml"))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "the file is empty"),
        ("- a\n- b\n", "expected a mapping, got a list"),
        ("model: m\nsources: [0\n", "line 3: invalid YAML"),
        ("model: m\ndevice: CPU\nsources: [0]\ndevice: GPU\n", "line 4: invalid YAML: duplicate key 'device'"),
        ("model: m\nsinks:\n  jsonl: a\n  jsonl: b\nsources: [0]\n", "line 4: invalid YAML: duplicate key 'jsonl'"),
        ("model: m\n\tsources: [0]\n", "invalid YAML"),
    ],
)
def test_bad_files(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_pipeline_config(write(tmp_path, text))


def test_merge_keys_share_settings_and_own_keys_override_them(tmp_path):
    # YAML's merge key (<<: *anchor) is part of safe loading; own keys win over merged ones, and a key written
    # twice by hand is still an error
    text = ("model: m\nsources:\n  - &cam {name: a, url: 'synth://conveyor?fps=5'}\n  - {<<: *cam, name: b}\n"
            "reconnect:\n  <<: [{max_delay: 9}, {initial_delay: 2}]\n  stall_timeout: 3\n")
    cfg = load_pipeline_config(write(tmp_path, text))
    assert [(s.name, s.url) for s in cfg.sources] == [("a", "synth://conveyor?fps=5"), ("b", "synth://conveyor?fps=5")]
    assert (cfg.reconnect.max_delay, cfg.reconnect.initial_delay, cfg.reconnect.stall_timeout) == (9, 2, 3)
    twice = "model: m\nsources:\n  - &cam {name: a, url: x}\n  - {<<: *cam, name: b, name: c}\n"
    with pytest.raises(ConfigError, match=r"line 4: invalid YAML: duplicate key 'name'"):
        load_pipeline_config(write(tmp_path, twice))


@pytest.mark.parametrize("resolve", [True, False])
def test_a_reference_as_a_default_is_named_not_misread(tmp_path, resolve):
    # shell-style ${A:-${B:-x}} ended at the first '}': "${B_CAM:-synth:/conveyor}: no such file or folder"
    text = "model: m\nsources: ['${A_CAM:-${B_CAM:-synth://conveyor}}']\n"
    with pytest.raises(ConfigError) as err:
        load_pipeline_config(write(tmp_path, text), resolve_env=resolve, environ={})
    assert str(err.value) == (f"{tmp_path / 'p.yaml'}: sources[0]: ${{A_CAM:-${{...}}}}: a default that is itself a "
                              "reference is not supported; write a plain one: ${A_CAM:-VALUE}")


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"nope.yaml: no such file"):
        load_pipeline_config(tmp_path / "nope.yaml")


def test_environment_references(tmp_path):
    text = 'model: "${MODELS}/det.xml"\nsources: ["${CAM:-synth://conveyor}", "${CAM2}"]\n'
    path = write(tmp_path, text)
    cfg = load_pipeline_config(path, environ={"MODELS": "/srv/models", "CAM2": "rtsp://h/2"})
    assert cfg.model == Path("/srv/models/det.xml")
    assert [s.url for s in cfg.sources] == ["synth://conveyor", "rtsp://h/2"]
    with pytest.raises(ConfigError, match=r"p.yaml: sources\[1\]: environment variable CAM2 is not set \(referenced as \$\{CAM2\}\)"):
        load_pipeline_config(path, environ={"MODELS": "/m"})
    raw = load_pipeline_config(path, resolve_env=False, environ={})
    assert [s.url for s in raw.sources] == ["${CAM:-synth://conveyor}", "${CAM2}"]
    assert env_references(raw.raw) == ["CAM", "CAM2", "MODELS"]


@pytest.mark.parametrize(
    "url, literal",
    [
        ("rtsp://admin:secret@10.0.0.1/s", True),
        ("rtsp://${U}:${P}@10.0.0.1/s", False),
        ("rtsp://${U:-viewer}:${P}@10.0.0.1/s", False),
        ("rtsp://admin:x${P}@10.0.0.1/s", True),
        ("rtsp://10.0.0.1:554/s", False),
        ("rtsp://admin@10.0.0.1/s", False),
        ("mqtt://u:pw@broker:1883", True),
        ("videos/a:b@c.mp4", False),
        ("http://cam/videostream.cgi?user=admin&pwd=hunter2", True),  # Foscam's form
        ("http://cam/videostream.cgi?user=admin&pwd=${CAM_PASSWORD}", False),
        ("rtsp://cam/live?token=${T:-}", False),
        ("rtsp://cam/live?X-Amz-Signature=abc", True),
        ("rtsp://cam/live?camPassword=abc", True),
        ("rtsp://cam/live?pwd=", False),  # nothing written
        ("synth://conveyor?fps=5&seed=1", False),
        ("videos/clip.mp4?password=x", False),  # not a URL
    ],
)
def test_literal_passwords(url, literal):
    assert has_literal_password(url) is literal


def test_password_in_the_file_is_rejected(tmp_path):
    for key, value in (("sources", ["rtsp://admin:hunter2@cam/1"]), ("sinks", {"mqtt": "mqtt://u:hunter2@b:1883"})):
        with pytest.raises(ConfigError, match="holds a password written in the file; reference the environment"):
            parse_pipeline_config({**BASE, key: value}, tmp_path / "p.yaml", environ={})
    with pytest.raises(ConfigError, match=r"sources\[0\]\.url: holds a password written in the file; .*pwd=\$\{CAM_PASS"):
        parse_pipeline_config({**BASE, "sources": [{"url": "http://cam/videostream.cgi?user=admin&pwd=hunter2"}]},
                              tmp_path / "p.yaml", environ={})
    ok = parse_pipeline_config({**BASE, "sources": [{"url": "http://cam/v.cgi?user=admin&pwd=${PW}"}]},
                               tmp_path / "p.yaml", environ={"PW": "hunter2"})
    assert ok.sources[0].url == "http://cam/v.cgi?user=admin&pwd=hunter2"
    assert "hunter2" not in str(ok.to_dict(mask_secrets=True))
    assert mask_url("rtsp://admin:hunter2@cam:554/1") == "rtsp://admin:***@cam:554/1"
    assert mask_url("rtsp://cam/1") == "rtsp://cam/1"


def test_check_paths(tmp_path, tiny):
    good = {"model": str(tiny), "sources": ["synth://conveyor?fps=5", "0"]}
    check_paths(parse_pipeline_config(good, tmp_path / "p.yaml"))
    cases = [
        ({"model": "missing.xml"}, r"p.yaml: model: .*missing.xml: no such file or folder"),
        ({"sources": ["clip.mp4"]}, r"p.yaml: sources\[0\]: .*clip.mp4: no such file or folder"),
        ({"sources": ["synth://conveyor?fsp=5"]}, r"p.yaml: sources\[0\]: .*unknown key 'fsp'; did you mean 'fps'"),
        ({"sources": ["synth://belt"]}, r"p.yaml: sources\[0\]: .*unknown synthetic scene 'belt'"),
        ({"sources": ["rtsp:///nohost"]}, r"p.yaml: sources\[0\]: rtsp:///nohost: no host"),
        ({"quantize": {"data": "nodata"}}, r"p.yaml: quantize.data: .*nodata: no such file or folder"),
    ]
    for change, message in cases:
        with pytest.raises(ConfigError, match=message):
            check_paths(parse_pipeline_config({**good, **change}, tmp_path / "p.yaml"))


def _touch(path: Path, mtime: float, root: Path) -> None:
    """Create or update ``path`` as if at ``mtime``: the folders it was added to change too."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text("x")
        parent = path.parent
        while parent != root:
            os.utime(parent, (mtime, mtime))
            parent = parent.parent
    os.utime(path, (mtime, mtime))


def test_quantized_output_is_reused_only_when_newer_than_model_and_data(tmp_path):
    cfg = parse_pipeline_config(
        {"model": "fp", "quantize": {"data": "data", "output": "int8"}, "sources": [0]}, tmp_path / "p.yaml")
    q = cfg.quantize
    t = time.time() - 1000

    def touch(rel: str, dt: float) -> None:
        _touch(tmp_path / rel, t + dt, tmp_path)

    touch("fp/model.xml", 0)
    touch("fp/model.bin", 0)
    touch("data/images/a.jpg", 0)
    touch("data/images/b.jpg", 0)
    assert not quantized_is_fresh(q, cfg.model)  # nothing made yet
    touch("int8/model.xml", 10)
    assert not quantized_is_fresh(q, cfg.model)  # .bin missing
    touch("int8/model.bin", 10)
    assert quantized_is_fresh(q, cfg.model)
    touch("data/images/new.jpg", 20)  # an image added to the data, deep in the folder
    assert not quantized_is_fresh(q, cfg.model)
    touch("int8/model.xml", 30)
    touch("int8/model.bin", 30)
    assert quantized_is_fresh(q, cfg.model)
    (tmp_path / "data/images/a.jpg").unlink()  # an image removed: only its folder's time tells
    assert not quantized_is_fresh(q, cfg.model)
    touch("int8/model.xml", time.time() - t + 10)
    touch("int8/model.bin", time.time() - t + 10)
    assert quantized_is_fresh(q, cfg.model)
    touch("fp/model.bin", time.time() - t + 20)  # the model was re-converted
    assert not quantized_is_fresh(q, cfg.model)


def test_failing_sink_closes_the_ones_already_made(tmp_path):
    cfg = parse_pipeline_config(
        {**BASE, "sinks": {"jsonl": "out/a.jsonl", "mqtt": {"url_env": "NOT_SET_ANYWHERE"}}}, tmp_path / "p.yaml")
    with pytest.raises(ConfigError, match="sinks.mqtt: no broker URL: set the environment variable NOT_SET_ANYWHERE"):
        build_sinks(cfg, environ={})
    assert not (tmp_path / "out").exists()  # sinks open nothing until the pipeline starts them


def test_ensure_quantized_hands_the_options_object_to_quantize(tmp_path, monkeypatch):
    cfg = parse_pipeline_config(
        {"model": "fp", "quantize": {"data": "data", "output": "int8", "max_drop": 0.02, "subset_size": 8,
                                     "latency_runs": 5}, "sources": [0]}, tmp_path / "p.yaml")
    (tmp_path / "fp").mkdir()
    (tmp_path / "data").mkdir()
    calls = []

    def fake_quantize(*args, **kwargs):
        calls.append((args, kwargs))
        return SimpleNamespace(model_xml=str(tmp_path / "int8/model.xml"))

    monkeypatch.setattr(workflow, "quantize", fake_quantize)
    assert ensure_quantized(cfg.quantize, cfg.model) == tmp_path / "int8/model.xml"
    [(args, kwargs)] = calls
    q = cfg.quantize
    assert args == (cfg.model, q.data, q.output, q.options) and kwargs == {}
    assert isinstance(args[3], QuantizeOptions) and args[3].max_drop == 0.02 and args[3].subset_size == 8
    assert args[3].advanced.latency_runs == 5 and args[3].advanced.bench_seconds == 0
    # once the output is newer than the model and the data, it is reused without quantizing
    for name in ("model.xml", "model.bin"):
        _touch(tmp_path / "int8" / name, time.time() + 10, tmp_path)
    assert ensure_quantized(q, cfg.model) == tmp_path / "int8/model.xml" and len(calls) == 1


def test_a_quantized_model_made_with_other_settings_is_not_reused(tmp_path, tiny):
    # max_drop 0.05 -> 0.005 in the pipeline: the model made for 0.05 was newer than model and data, so ovq pipeline
    # and ovq bundle kept running and shipping it without a word
    from dataclasses import replace

    from ovq.core.metadata import read_info, write_info
    from ovq.model.conversion import save
    from ovq.runtime.compilation import read_model

    model = read_model(tiny)
    made = {"tool": "ovq", "mode": "accuracy_control", "max_drop": 0.05, "drop_type": "absolute",
            "preset": "performance", "calib_split": "calib", "val_split": "val", "rank_by": "accuracy", "ignored": []}
    write_info(model, replace(read_info(model), quantization=made))
    (tmp_path / "data").mkdir()
    save(model, tmp_path / "int8")
    for name in ("model.xml", "model.bin"):
        _touch(tmp_path / "int8" / name, time.time() + 10, tmp_path)

    def fresh(**section):
        cfg = parse_pipeline_config({"model": str(tiny), "sources": [0], "quantize": {
            "data": "data", "output": "int8", "calib_split": "calib", **section}}, tmp_path / "p.yaml")
        return quantized_is_fresh(cfg.quantize, cfg.model)

    assert fresh(max_drop=0.05) and fresh(max_drop=0.05, subset_size=8, preset="performance", val_split="val")
    assert not fresh(max_drop=0.005)
    assert not fresh()  # no budget: plain INT8, not accuracy control
    assert not fresh(max_drop=0.05, preset="mixed")
    assert not fresh(max_drop=0.05, ignore=["head.*"])
    assert not fresh(max_drop=0.05, drop_type="relative")
    assert not fresh(max_drop=0.05, rank_by="accuracy-per-latency")


def test_a_quantized_model_of_another_float_model_is_not_reused(tmp_path, tiny):
    # the pipeline's model: changed to another model whose files are older than quantize.output (a model copied
    # with its times, or one downloaded long ago): the INT8 model of the old one was 'newer than' it, so ovq pipeline
    # ran the old model (its labels in every record) and ovq bundle shipped it
    import shutil
    from dataclasses import replace

    from ovq.core.metadata import read_info, write_info
    from ovq.model.conversion import save
    from ovq.model.paths import model_digest
    from ovq.runtime.compilation import read_model

    shutil.copytree(tiny.parent, tmp_path / "other")
    weights = bytearray((tmp_path / "other/model.bin").read_bytes())
    weights[-1] ^= 1  # the same graph, other weights
    (tmp_path / "other/model.bin").write_bytes(bytes(weights))
    model = read_model(tiny)
    made = {"tool": "ovq", "mode": "plain", "preset": "performance", "source_sha256": model_digest(tiny)}
    write_info(model, replace(read_info(model), quantization=made))
    (tmp_path / "data").mkdir()
    save(model, tmp_path / "int8")
    t = time.time()
    for rel in ("other/model.xml", "other/model.bin"):
        _touch(tmp_path / rel, t - 100, tmp_path)
    for rel in ("int8/model.xml", "int8/model.bin"):
        _touch(tmp_path / rel, t + 10, tmp_path)

    def fresh(model):
        cfg = parse_pipeline_config({"model": str(model), "sources": [0], "quantize": {
            "data": "data", "output": "int8"}}, tmp_path / "p.yaml")
        return quantized_is_fresh(cfg.quantize, cfg.model)

    assert fresh(tiny) and fresh(tiny.parent)
    assert not fresh(tmp_path / "other")


def test_a_quantized_model_of_other_data_is_not_reused(tmp_path, tiny, caplog):
    """quantize.data changed to another dataset whose files were older than quantize.output (copied with their
    times), or calib_split / subset_size changed: the INT8 model calibrated on the first data was reused without a
    word (only the float model's SHA-256 and the accuracy settings were compared). The output now records the data
    it was made with (path, a fingerprint of its files, the splits and subset) and is made again when that differs."""
    import logging
    import shutil

    import cv2
    import numpy as np

    rng = np.random.default_rng(1)
    for name in ("a", "b"):
        for split, n in (("train", 4), ("val", 2)):
            (tmp_path / name / "images" / split).mkdir(parents=True)
            for k in range(n):
                cv2.imwrite(str(tmp_path / name / f"images/{split}/{k}.png"),
                            rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
        (tmp_path / name / "labels/val").mkdir(parents=True)
        (tmp_path / name / "labels/val/0.txt").write_text("0 0.5 0.5 0.4 0.4\n")
    t = time.time() - 1000
    for name, when in (("a", t), ("b", t - 500)):  # both older than the INT8 model: file times alone say reuse
        for path in [tmp_path / name, *(tmp_path / name).rglob("*")]:
            os.utime(path, (when, when))
    shutil.copytree(tmp_path / "a", tmp_path / "a_copy")  # copy2: the same names, sizes and times

    def config(**section):
        return parse_pipeline_config({"model": str(tiny), "sources": [0], "quantize": {
            "data": "a", "output": "int8", "calib_split": "train", "subset_size": 4, "bench_seconds": 0,
            **section}}, tmp_path / "p.yaml")

    ensure_quantized(config().quantize, tiny)  # a real quantization of the tiny model on 'a'

    def fresh(**section):
        cfg = config(**section)
        return quantized_is_fresh(cfg.quantize, cfg.model)

    assert fresh() and fresh(data="a_copy")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ovq"):
        assert not fresh(data="b")
    assert f"{tmp_path / 'int8'} was made with other settings (data {tmp_path / 'b'}, made with {tmp_path / 'a'})" in (
        caplog.text)
    assert not fresh(calib_split="val")
    assert not fresh(subset_size=3)
    assert not fresh(val_split="train", calib_split="val")
    assert not fresh(holdout=0.5)
    label = tmp_path / "a/labels/val/0.txt"
    label.write_text("1 0.5 0.5 0.4 0.4\n")  # another class, the same size, dated as before
    os.utime(label, (t + 1, t + 1))
    with caplog.at_level(logging.INFO, logger="ovq"):
        assert not fresh()
    assert f"data {tmp_path / 'a'}: its files changed since" in caplog.text


def test_data_fingerprint_follows_linked_folders_once_and_leaves_the_output_out(tmp_path):
    from ovq.data.layout import data_fingerprint

    ds = tmp_path / "ds"
    (ds / "images").mkdir(parents=True)
    (ds / "images/a.jpg").write_bytes(b"x")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere/b.jpg").write_bytes(b"y")
    (ds / "linked").symlink_to(tmp_path / "elsewhere")  # a dataset's images -> /mnt/... is read, so it counts
    (ds / "images/loop").symlink_to(ds)  # a loop is walked once, not forever
    first = data_fingerprint(ds, skip=ds / "int8")
    assert first.startswith("2 files, sha256:")
    (ds / "int8").mkdir()
    (ds / "int8/model.xml").write_text("made later, inside the dataset's folder")
    assert data_fingerprint(ds, skip=ds / "int8") == first
    (tmp_path / "elsewhere/b.jpg").write_bytes(b"yy")
    assert data_fingerprint(ds, skip=ds / "int8") != first


def test_data_fingerprint_counts_the_datasets_files_not_a_pipelines_outputs_beside_it(tmp_path):
    """A data.yaml with no path: beside the pipeline file: its folder is the dataset's root, and the run's JSON Lines
    and video (out/det.jsonl) changed at every run, so every start found the data changed and quantized again."""
    from ovq.data.layout import data_fingerprint

    (tmp_path / "images/train").mkdir(parents=True)
    (tmp_path / "images/train/a.jpg").write_bytes(b"x")
    (tmp_path / "data.yaml").write_text("train: images/train\nnames: [a]\n")
    first = data_fingerprint(tmp_path / "data.yaml")
    (tmp_path / "out").mkdir()
    for name in ("det.jsonl", "cam.mp4", "p.yaml", "summary.json"):
        (tmp_path / "out" / name).write_text("a run's")
    assert data_fingerprint(tmp_path / "data.yaml") == first
    (tmp_path / "classes.txt").write_text("a\n")
    assert data_fingerprint(tmp_path / "data.yaml") != first
    second = data_fingerprint(tmp_path / "data.yaml")
    (tmp_path / "images/train/b.PNG").write_bytes(b"y")
    assert data_fingerprint(tmp_path / "data.yaml") != second


def test_data_fingerprint_counts_what_the_splits_name_outside_the_yamls_folder(tmp_path):
    """A data.yaml whose splits name a folder elsewhere by absolute path, or a .txt list of images kept elsewhere:
    only the files below the YAML's folder (its root) counted, so a changed image there reused the INT8 model."""
    from ovq.data.layout import data_fingerprint

    far = tmp_path / "far"
    (far / "images/train").mkdir(parents=True)
    (far / "labels/train").mkdir(parents=True)
    (far / "images/train/a.jpg").write_bytes(b"x")
    (far / "labels/train/a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (far / "list_imgs").mkdir()
    (far / "list_imgs/b.jpg").write_bytes(b"y")
    ds = tmp_path / "ds"
    ds.mkdir()
    (ds / "val.txt").write_text(f"{far / 'list_imgs/b.jpg'}\n")
    (ds / "data.yaml").write_text(f"train: {far / 'images/train'}\nval: val.txt\nnames: [a]\n")
    prints = [data_fingerprint(ds / "data.yaml")]
    (far / "images/train/a.jpg").write_bytes(b"xx")  # an image of the folder named by absolute path
    prints.append(data_fingerprint(ds / "data.yaml"))
    (far / "labels/train/a.txt").write_text("0 0.5 0.5 0.3 0.3\n")  # its label, in the labels/ twin
    prints.append(data_fingerprint(ds / "data.yaml"))
    (far / "list_imgs/b.jpg").write_bytes(b"yy")  # an image the .txt list names
    prints.append(data_fingerprint(ds / "data.yaml"))
    (far / "list_imgs/b.txt").write_text("0 0.5 0.5 0.3 0.3\n")  # its label appears beside it
    prints.append(data_fingerprint(ds / "data.yaml"))
    assert len(set(prints)) == len(prints), prints
    assert prints[-1].startswith("6 files")  # the yaml, val.txt, a.jpg, a.txt, b.jpg, b.txt
    assert data_fingerprint(ds / "data.yaml") == prints[-1]


def test_quantize_takes_the_options_object_where_ensure_quantized_passes_it():
    params = list(inspect.signature(workflow.quantize).parameters)
    inspect.signature(workflow.quantize).bind("model", "data", "out", QuantizeOptions())
    assert params[3] == "options"


# --- the shipped examples ------------------------------------------------------------------------------------

EXAMPLES = sorted(PIPELINES.glob("*.yaml"))


def test_examples_exist():
    assert {p.name for p in EXAMPLES} >= {"single_camera_int8.yaml", "rtsp_mqtt.yaml", "conveyor_demo.yaml"}
    readme = (PIPELINES / "README.md").read_text()
    for p in EXAMPLES + [PIPELINES / "compress_with_accuracy_control.py"]:
        assert p.name in readme, f"{p.name} has no section in pipelines/README.md"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_load(path, tiny, tmp_path):
    cfg = load_pipeline_config(path, environ={})
    assert cfg.model == ROOT / "data" / "demo_model"
    # with the model present, every path and source string in the example checks out (or is a camera)
    data = yaml.safe_load(path.read_text())
    data["model"] = str(tiny)
    data.pop("quantize", None)
    check_paths(parse_pipeline_config(data, path, environ={}))


def _example_on_assets(name: str, model: Path, tmp_path: Path, **changes) -> dict:
    data = yaml.safe_load((PIPELINES / name).read_text())
    data["model"] = str(model)
    data["sinks"] = {k: v for k, v in (data.get("sinks") or {}).items() if k == "mqtt"}
    data["sinks"]["jsonl"] = str(tmp_path / "out.jsonl")
    data.update(changes)
    return data


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_conveyor_demo_runs(tiny, tmp_path):
    data = _example_on_assets("conveyor_demo.yaml", tiny, tmp_path, quantize=None, max_frames=6, track=False)
    data["sources"][0]["url"] = data["sources"][0]["url"].replace("width=640&height=480", "width=160&height=120")
    cfg = parse_pipeline_config(data, PIPELINES / "conveyor_demo.yaml")
    summary = run_pipeline_config(cfg)
    assert summary.frames == 6 and list(summary.streams) == ["conveyor"]
    recs = _records(tmp_path / "out.jsonl")
    assert len(recs) == 6 and {r["stream"] for r in recs} == {"conveyor"}
    assert all(r["width"] == 160 and r["height"] == 120 for r in recs)


@pytest.mark.slow
def test_single_camera_int8_quantizes_once_then_reuses(fastestdet, assets, tmp_path, caplog):
    import logging

    out = tmp_path / "int8"
    data = _example_on_assets(
        "single_camera_int8.yaml", fastestdet, tmp_path,
        quantize={"data": str(assets / "coco128/images/train2017"), "subset_size": 8, "output": str(out),
                  "bias_correction": "fast"},
        sources=[{"name": "cam0", "url": str(assets / VIDEO)}], max_frames=4,
    )
    cfg = parse_pipeline_config(data, PIPELINES / "single_camera_int8.yaml")
    with caplog.at_level(logging.INFO, logger="ovq.deployment.build"):
        first = run_pipeline_config(cfg)
    made = (out / "model.xml").stat().st_mtime_ns
    assert first.frames == 4 and "quantizing" in caplog.text
    from ovq.core.metadata import read_info
    from ovq.runtime.compilation import read_model

    provenance = read_info(read_model(out / "model.xml")).quantization
    assert provenance["calib_images"] == 8 and provenance["bias_correction"] == "fast"  # FastestDet's default is full
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ovq.deployment.build"):
        second = run_pipeline_config(cfg, max_frames=3)
    assert second.frames == 3 and f"using {out}" in caplog.text and "quantizing" not in caplog.text
    assert (out / "model.xml").stat().st_mtime_ns == made
    assert len(_records(tmp_path / "out.jsonl")) == 3


@pytest.mark.services
def test_rtsp_mqtt_example_with_a_real_camera_server_and_broker(fastestdet, assets, tmp_path, monkeypatch):
    from services import Mosquitto, RtspServer

    for reason in (RtspServer.available(), Mosquitto.available()):
        if reason:
            pytest.skip(reason)
    from test_sinks import Subscriber

    data = _example_on_assets("rtsp_mqtt.yaml", fastestdet, tmp_path, max_frames=5)
    with RtspServer(assets / "videos/one-by-one-person-detection.mp4") as cam, Mosquitto(tmp_path) as broker:
        for i in (1, 2, 3):
            monkeypatch.setenv(f"OVQ_CAM{i}_URL", cam.url)
        monkeypatch.setenv("OVQ_MQTT_URL", broker.url)
        sub = Subscriber(broker.port, topic="factory/hall1/#")
        assert sub.subscribed.wait(10)
        cfg = parse_pipeline_config(data, PIPELINES / "rtsp_mqtt.yaml")
        assert [s.url for s in cfg.sources] == [cam.url] * 3
        summary = run_pipeline_config(cfg)
        assert sub.wait(15, 10)
        sub.close()
    assert summary.frames == 15 and set(summary.streams) == {"line1", "line2", "line3"}
    assert {t for t, _ in sub.messages} == {"factory/hall1/line1", "factory/hall1/line2", "factory/hall1/line3"}
    assert len(_records(tmp_path / "out.jsonl")) == 15


# --- the command ---------------------------------------------------------------------------------------------


def test_cli_check_prints_the_resolved_config(tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CAM_PASSWORD", "hunter2")
    path = write(tmp_path, f"model: {tiny}\ndevice: cpu\nsources:\n  - rtsp://viewer:${{CAM_PASSWORD}}@cam/1\n")
    assert main(["pipeline", str(path), "--check", "--max-frames", "7"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"# {path}: OK (device CPU is available")
    shown = yaml.safe_load(out)
    assert shown["device"] == "CPU" and shown["max_frames"] == 7 and shown["model"] == str(tiny)
    assert shown["sources"] == [{"name": None, "url": "rtsp://viewer:***@cam/1"}]
    assert "hunter2" not in out
    assert main(["pipeline", str(path), "--check", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["device"] == "CPU"


def test_cli_check_shows_a_non_ascii_path_as_written(tiny, tmp_path, capsys):
    # printed as "/tmp/.../Bänder \xE9/line1.jsonl": YAML escapes, not the path to copy
    path = write(tmp_path, f"model: {tiny}\nsources: [synth://conveyor]\nsinks: {{jsonl: Bänder é/line1.jsonl}}\n")
    assert main(["pipeline", str(path), "--check"]) == 0
    out = capsys.readouterr().out
    assert f"{tmp_path}/Bänder é/line1.jsonl" in out and "\\x" not in out and "\\u" not in out
    assert yaml.safe_load(out)["sinks"]["jsonl"]["path"] == f"{tmp_path}/Bänder é/line1.jsonl"


def test_the_config_check_prints_loads_again(tiny, tmp_path, capsys):
    # --check printed sinks.video_fps, sinks.jsonl_append and serve.host/port, keys the loader refuses: what it
    # printed (YAML and --json) could not be loaded back. Every key a file can hold, no secrets (masked, they
    # are refused as literal passwords and tokens by design).
    path = write(tmp_path, f"""model: {tiny}
device: CPU
precision: f32
hint: latency
nireq: 2
cache: cachedir
sources: [{{name: a, url: 'synth://conveyor?fps=5'}}, 'rtsp://127.0.0.1/live?channel=1']
track: true
conf: 0.3
sinks:
  video: {{path: out/v.mp4, fps: 12}}
  jsonl: {{path: out/r.jsonl, append: true}}
  mqtt: {{url: 'mqtt://127.0.0.1:1883', topic_prefix: f/l1, strict: true}}
max_frames: 5
stats_interval: 3
reconnect: {{initial_delay: 0.2, max_delay: 3, stall_timeout: 4}}
realtime: true
serve: {{listen: '[::1]:8099', fps: 5, stall_timeout: 7}}
strict: true
resize: python
decode: software
nms: python
""")
    original = load_pipeline_config(path).to_dict()
    for flags, read in ((["--check"], yaml.safe_load), (["--check", "--json"], json.loads)):
        assert main(["pipeline", str(path), *flags]) == 0
        printed = read(capsys.readouterr().out)
        again = write(tmp_path, yaml.safe_dump(printed), name="again.yaml")
        assert load_pipeline_config(again).to_dict() == original == printed
    assert printed["sinks"]["video"] == {"path": str(tmp_path / "out/v.mp4"), "fps": 12.0}
    assert printed["serve"]["listen"] == "[::1]:8099" and printed["sinks"]["jsonl"]["append"] is True


@pytest.mark.parametrize(
    "text, device, message",
    [
        ("conf: 7\n", None, "p.yaml: conf: expected a number <= 1, got 7"),
        ("conf: .nan\n", None, "p.yaml: conf: expected a finite number, got nan"),
        ("reconnect: {stall_timeout: .nan}\n", None, "p.yaml: reconnect.stall_timeout: expected a finite number, got nan"),
        ("sinks: {video: {path: v.mp4, fps: .nan}}\n", None, "p.yaml: sinks.video.fps: expected a finite number, got nan"),
        ("sinks: {video: {path: v.mp4, fps: .inf}}\n", None, "p.yaml: sinks.video.fps: expected a finite number, got inf"),
        ("serve: {listen: 8080, stall_timeout: .inf}\n", None, "serve.stall_timeout: expected a finite number, got inf"),
        ("conf: 1e308\n", None, "p.yaml: conf: expected a number <= 1, got 1e+308"),  # was "got '1e308'"
        ("", "NPU", "device 'NPU' is not available on this machine; available: "),
        ("devcie: CPU\n", None, "p.yaml: unknown key 'devcie'; did you mean 'device'?"),
        ("sinks: {mqtt: {url_env: OVQ_TEST_NO_BROKER}}\n", None, "sinks.mqtt: no broker URL: set the environment"),
        # --check said OK to outputs no run could make
        ("sinks: {video: out/line1.avi}\n", None, "out/line1.avi: video output must end in .mp4 or .webm"),
        ("sinks: {jsonl: .}\n", None, ": is a folder; expected a file name"),
    ],
)
def test_cli_errors_are_one_line_exit_2(tiny, tmp_path, capsys, text, device, message):
    if device and device in ov.Core().available_devices:
        pytest.skip(f"{device} is present here")
    path = write(tmp_path, f"model: {tiny}\nsources: [synth://conveyor]\n{text}")
    args = ["pipeline", str(path)] + (["--device", device] if device else [])
    assert main([*args, "--check"]) == 2 and message in capsys.readouterr().err
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and err[0].startswith("ovq pipeline: error: ")


@pytest.mark.parametrize(("url", "extra", "said"), [
    ("mqtt://u:secret@broker:99999", "", "OVQ_TEST_BROKER: mqtt://u:***@broker:99999: bad port '99999' (expected 1-65535)"),
    ("ws://broker", "", "OVQ_TEST_BROKER: ws://broker: unknown MQTT broker scheme 'ws://'"),
    ("mqtt://broker", ", ca_file: ca.pem", "OVQ_TEST_BROKER: a CA file or client certificate needs a TLS broker URL"),
], ids=["port", "scheme", "tls"])
def test_a_broker_url_from_the_environment_is_checked_as_one_in_the_file(tiny, tmp_path, capsys, monkeypatch, url,
                                                                         extra, said):
    """sinks.mqtt.url_env naming a variable that holds a bad broker URL: --check said OK (it only asked that the
    variable be set), and the run failed with a line naming neither the file, the key nor the variable."""
    monkeypatch.setenv("OVQ_TEST_BROKER", url)
    (tmp_path / "ca.pem").write_text("not read before the URL is checked\n")
    path = write(tmp_path, f"model: {tiny}\nsources: [synth://conveyor]\nsinks: {{mqtt: {{url_env: OVQ_TEST_BROKER{extra}}}}}\n")
    for check in (["--check"], []):
        assert main(["pipeline", str(path), *check, "-q"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"ovq pipeline: error: {path}: sinks.mqtt: {said}"), err
        assert "secret" not in err[0]


def test_a_quantize_output_that_holds_the_float_model_is_refused_naming_the_key(tiny, tmp_path, capsys):
    """quantize.output naming the model's own folder: --check said OK, and the run failed with quantize's line
    '...; give another output folder (-o)', a flag no pipeline file has."""
    path = write(tmp_path, f"model: {tiny.parent}\nsources: [synth://conveyor]\n"
                           f"quantize: {{data: {tmp_path}, output: {tiny.parent}}}\n")
    for check in (["--check"], []):
        assert main(["pipeline", str(path), *check, "-q"]) == 2
        assert capsys.readouterr().err.strip().splitlines() == [(
            f"ovq pipeline: error: {path}: quantize.output: {tiny.parent}: holds the float model being quantized "
            "(model.xml), which the INT8 model would replace; give another folder")]


def _tiny_dataset(root: Path) -> Path:
    """images/train (4) and images/val (2) with one label: enough to quantize the tiny model in seconds."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(2)
    for split, n in (("train", 4), ("val", 2)):
        (root / "images" / split).mkdir(parents=True)
        for k in range(n):
            cv2.imwrite(str(root / f"images/{split}/{k}.png"), rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    (root / "labels/val").mkdir(parents=True)
    (root / "labels/val/0.txt").write_text("0 0.5 0.5 0.4 0.4\n")
    return root


@pytest.mark.parametrize(("output", "said"), [
    ("'-'", "'-': the INT8 model is a folder, not standard output; give a folder (./- for one named '-')"),
    ("notes.txt", "{tmp}/notes.txt: is a file; give a folder for the INT8 model"),
    ("{model}", "{model}: is a file of the float model; give a folder for the INT8 model"),
    ("'.'", ("{tmp}: holds the dataset {tmp}/ds (quantize.data): the INT8 model and its report would go in among the "
            "data; give a folder outside it")),
    ("ds", ("{tmp}/ds: is the folder of the dataset {tmp}/ds (quantize.data): the INT8 model and its report would go "
           "in among the data; give a folder outside it")),
    ("ds/images/int8", ("{tmp}/ds/images/int8: is inside the dataset's images folder {tmp}/ds/images: its files would "
                       "be read as data; give a folder outside it")),
], ids=["dash", "a file", "the model", "dot", "the dataset", "in its images"])
@pytest.mark.parametrize("check", [["--check"], []], ids=["--check", "run"])
def test_odd_quantize_outputs_are_refused_naming_the_key(tiny, tmp_path, capsys, output, said, check):
    """quantize.output '-' quantized into a folder named '-' beside the file (where `ovq quantize -o -` is refused);
    a file, the float model's own .xml among them, passed --check and failed only after the model loaded; '.', the
    dataset's folder (or '/', which as root wrote model.xml at the top of the disk) put the INT8 model and its report
    among the data; a folder inside its images/ made its sensitivity plot a calibration image for the next run."""
    _tiny_dataset(tmp_path / "ds")
    (tmp_path / "notes.txt").write_text("mine")
    output = output.format(model=tiny)
    path = write(tmp_path, f"model: {tiny}\nsources: [synth://conveyor]\nmax_frames: 2\n"
                           f"quantize: {{data: ds, output: {output}, calib_split: train, subset_size: 4, "
                           "bench_seconds: 0}\n")
    before = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    assert main(["pipeline", str(path), *check, "-q"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"ovq pipeline: error: {path}: quantize.output: {said.format(tmp=tmp_path, model=tiny)}"]
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == before
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_root_as_quantize_output_is_refused_before_anything_is_written(tiny, tmp_path, capsys):
    _tiny_dataset(tmp_path / "ds")
    path = write(tmp_path, f"model: {tiny}\nsources: [synth://conveyor]\nquantize: {{data: ds, output: /}}\n")
    assert main(["pipeline", str(path), "--check", "-q"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        (f"ovq pipeline: error: {path}: quantize.output: /: holds the dataset {tmp_path}/ds (quantize.data): the INT8 "
        "model and its report would go in among the data; give a folder outside it")]


def test_an_unwritable_quantize_output_fails_check_naming_the_key(tiny, tmp_path, capsys):
    """'/proc/x' passed --check; the run failed on it after the model loaded."""
    _tiny_dataset(tmp_path / "ds")
    path = write(tmp_path, f"model: {tiny}\nsources: [synth://conveyor]\nquantize: {{data: ds, output: /proc/x}}\n")
    assert main(["pipeline", str(path), "--check", "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"ovq pipeline: error: {path}: quantize.output: /proc/x: cannot write"), err


def test_a_quantize_output_inside_the_datasets_folder_is_reused(tiny, tmp_path):
    """quantize.output: ds/int8 beside ds/images: its report, written after its model, and the folder's own time
    (moved by writing the output into it) were newer than the model, so every start quantized again."""
    _tiny_dataset(tmp_path / "ds")
    cfg = parse_pipeline_config({"model": str(tiny), "sources": [0], "quantize": {
        "data": "ds", "output": "ds/int8", "calib_split": "train", "subset_size": 4, "bench_seconds": 0}},
        tmp_path / "p.yaml")
    ensure_quantized(cfg.quantize, cfg.model)
    assert (tmp_path / "ds/int8/report.md").exists() and quantized_is_fresh(cfg.quantize, cfg.model)
    (tmp_path / "ds/images/train/4.png").write_bytes((tmp_path / "ds/images/train/0.png").read_bytes())
    assert not quantized_is_fresh(cfg.quantize, cfg.model)  # an image added: made again


@pytest.mark.parametrize("check", [["--check"], []], ids=["--check", "run"])
def test_an_empty_device_override_is_refused(tiny, tmp_path, capsys, check):
    """`ovq pipeline p.yaml --device ""` (--device "$DEV" with DEV unset) ran on the file's device, exit 0, and
    --check said OK, where `ovq run --device ""`, predict and bench refuse an empty device."""
    path = write(tmp_path, f"model: {tiny}\nsources: [synth://conveyor]\ndevice: CPU\nmax_frames: 2\n")
    assert main(["pipeline", str(path), "--device", "", *check]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [("ovq pipeline: error: --device '': an empty device name; give one (CPU, GPU, NPU, AUTO...) or "
                   "leave --device out for the file's")]


@pytest.mark.parametrize(("sinks", "key"), [('{jsonl: "-"}', "sinks.jsonl"), ('{jsonl: {path: "-"}}', "sinks.jsonl.path")])
def test_a_dash_as_a_pipelines_jsonl_points_at_dev_stdout(tiny, tmp_path, capsys, monkeypatch, sinks, key):
    """A pipeline file's `sinks: {jsonl: "-"}` wrote a file named '-' beside the file, exit 0, where standard output
    was meant: as `ovq run --jsonl -` now says (b4ae8a1), ovq's standard output is /dev/stdout."""
    path = write(tmp_path, f"model: {tiny}\nsources: [synth://conveyor]\nmax_frames: 2\nsinks: {sinks}\n")
    monkeypatch.chdir(tmp_path)
    for check in (["--check"], []):
        assert main(["pipeline", str(path), *check]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [(f"ovq pipeline: error: {path}: {key}: '-' is not standard output to ovq; write /dev/stdout (or "
                       "./- for a file named '-')")]
    assert not (tmp_path / "-").exists()


def test_check_into_a_pipe_whose_reader_has_gone_ends_quietly(tiny, tmp_path):
    # `ovq pipeline p.yaml --check | head -1` printed "ovq pipeline: error: Broken pipe" and exited 2
    path = write(tmp_path, f"model: {tiny}\nsources: [synth://conveyor]\n")
    read_end, write_end = os.pipe()
    os.close(read_end)  # head -1 has read its line and gone
    try:
        r = subprocess.run([sys.executable, "-m", "ovq", "pipeline", str(path), "--check"], stdout=write_end,
                           stderr=subprocess.PIPE, text=True, timeout=120, check=False)
    finally:
        os.close(write_end)
    assert (r.returncode, r.stderr) == (141, "")  # as a shell tool killed by SIGPIPE


# --- a served model (a serving URL as model) takes no key that only a local model honours ------------------------

SERVED = "grpc://127.0.0.1:9/v2/models/fd"  # nothing listens on the discard port; nothing here connects anyway
THERE = "(choose it where the model is served)"
NO_CACHE = "is compiled by its server: nothing is compiled here to cache; remove cache " + THERE
WHICH = {  # the key as written -> what the message says the served model does instead, and the advice
    "device: CPU": "runs on its server's device, not one chosen here; remove device " + THERE,
    "precision: f32": "runs at the precision its server compiled it with; remove precision " + THERE,
    "hint: latency": "runs with the performance hint its server compiled it with; remove hint " + THERE,
    "cache: false": NO_CACHE,
    "cache: compiled": NO_CACHE,  # a cache folder
    "resize: graph": "has its graph on the server: its frames are resized here, in Python; remove resize (or set it to python)",
    "nms: GRAPH": "has its graph on the server: its boxes are decoded and NMS'd here, in Python; remove nms (or set it to python)",
}


@pytest.mark.parametrize("line", WHICH)
def test_a_served_model_refuses_a_key_only_a_local_model_honours(tmp_path, capsys, line):
    """They were dropped without a word: `--check` printed `device: CPU` and said OK, and the run ran as the server
    runs the model (resize: graph resized in Python, as if it had never been written)."""
    path = write(tmp_path, f"model: {SERVED}\nsources: [synth://conveyor]\n{line}\n")
    key = line.split(":")[0]
    message = f"{path}: {key}: the model is served at {SERVED}, which {WHICH[line]}"
    with pytest.raises(ConfigError) as err:
        load_pipeline_config(path)
    assert str(err.value) == message
    for check in (["--check"], []):
        assert main(["pipeline", str(path), *check, "-q"]) == 2
        assert capsys.readouterr().err.splitlines() == [f"ovq pipeline: error: {message}"]


def test_a_served_model_in_a_pipeline_file_is_refused_as_one_line_exit_2(tmp_path):
    """The command as a shell runs it: one line on stderr, nothing on stdout, exit code 2, no traceback."""
    path = write(tmp_path, f"model: {SERVED}\nsources: [synth://conveyor]\nhint: latency\n")
    r = subprocess.run([sys.executable, "-m", "ovq", "pipeline", str(path), "--check"], capture_output=True, text=True,
                       timeout=120, check=False)
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr.splitlines() == [
        f"ovq pipeline: error: {path}: hint: the model is served at {SERVED}, which {WHICH['hint: latency']}"]


def test_a_served_model_takes_the_keys_it_honours(tmp_path):
    """nireq is the requests in flight to the server; resize and nms as python or auto are what it does anyway; a
    key set to null is a key not given."""
    path = write(tmp_path, f"model: {SERVED}\nsources: [synth://conveyor]\nnireq: 3\nresize: python\nnms: auto\n"
                           "device: null\nconf: 0.4\n")
    cfg = load_pipeline_config(path)
    assert (cfg.model, cfg.nireq, cfg.resize, cfg.nms, cfg.device, cfg.cache) == (SERVED, 3, "python", "auto", "AUTO", True)


def test_cli_runs_and_prints_the_summary(tiny, tmp_path, capsys):
    path = write(tmp_path, f"model: {tiny}\ndevice: CPU\nsources: [{{name: belt, url: 'synth://conveyor?width=96&height=64'}}]\n"
                           "sinks: {jsonl: o.jsonl}\n")
    assert main(["pipeline", str(path), "--max-frames", "5", "--json", "-q"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["frames"] == 5 and summary["streams"]["belt"]["frames"] == 5 and summary["device"] == "CPU"
    assert len(_records(tmp_path / "o.jsonl")) == 5


def test_a_pipeline_that_quantizes_keeps_nncf_out_of_its_standard_output(tiny, tmp_path):
    """--json with a quantize section to run: NNCF's log (its own handler on standard output, INFO even with -q) and
    its rich progress bars printed above the summary, which then was not JSON."""
    from conftest import random_images

    random_images(tmp_path / "calib")
    path = write(tmp_path, f"model: {tiny}\ndevice: CPU\nquantize: {{data: calib, output: int8, subset_size: 4}}\n"
                           "sources: [{name: belt, url: 'synth://conveyor?width=96&height=64'}]\n")
    r = subprocess.run([sys.executable, "-m", "ovq", "pipeline", str(path), "--max-frames", "3", "--json", "-q"],
                       capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["frames"] == 3 and (tmp_path / "int8/model.xml").exists()
    assert "INFO:nncf" not in r.stderr  # -q: warnings and errors only


@pytest.mark.slow
def test_sigterm_drains_and_exits_0(tiny, tmp_path):
    """What `systemctl stop` does: SIGTERM; the pipeline stops, closes its files and exits 0."""
    path = write(tmp_path, f"model: {tiny}\ndevice: CPU\nsources: ['synth://conveyor?width=96&height=64&fps=20']\n"
                           "sinks: {jsonl: o.jsonl}\n")
    proc = subprocess.Popen([sys.executable, "-m", "ovq", "pipeline", str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    out = tmp_path / "o.jsonl"
    deadline = time.monotonic() + 60
    records = 0  # counted in the temporary file that replaces o.jsonl when the run ends
    while time.monotonic() < deadline and proc.poll() is None and records < 5:
        partial = list(tmp_path.glob(".o.jsonl.partial-*"))
        records = len(partial[0].read_text().splitlines()) if partial else 0
        time.sleep(0.2)
    assert records >= 5, f"the run wrote {records} records in 60 s"
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "SIGTERM, stopping" in stderr
    recs = _records(out)  # every line is complete JSON
    assert len(recs) >= 5 and f"{len(recs)} frames from 1 stream(s)" in stdout


@pytest.mark.slow
def test_compress_with_accuracy_control_script(tmp_path):
    """The script as pipelines/README.md runs it: the shipped demo model on generated conveyor images (the real
    detectors' accuracy control is covered in test_quantize.py; on FastestDet this test took 139 s of CI)."""
    import importlib.util

    from ovq.data.synth import write_yolo_dataset

    spec = importlib.util.spec_from_file_location("compress_ac", PIPELINES / "compress_with_accuracy_control.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    data = write_yolo_dataset(tmp_path / "conveyor", n_train=0, n_val=48, n_calib=16, seed=1)
    out = tmp_path / "int8"
    metrics = module.main(data=data, out=out, max_drop=0.01, subset_size=16, bench_seconds=0, progress=False)
    report = json.loads((out / "report.json").read_text())
    assert metrics["model_xml"] == str(out / "model.xml") and (out / "model.bin").exists()
    assert metrics["val_images"] == 48 and metrics["precision"] == report["deployment_precision"]
    assert metrics["fp_map50_95"] == pytest.approx(report["accuracy"]["fp"], abs=1e-4)
    assert metrics["int8_map50_95"] == pytest.approx(report["accuracy"]["int8"], abs=1e-4)
    assert metrics["drop"] == pytest.approx(metrics["fp_map50_95"] - metrics["int8_map50_95"])
    assert metrics["within_budget"] is (metrics["drop"] <= 0.01)
    assert metrics["reverted_layers"] == sum(len(s["layers"]) for s in report["reverted"] if s["kept"])
    assert metrics["fp_map50_95"] > 0.5  # the demo model on its own kind of images (README: 0.78 on the demo's set)
    from ovq.core.metadata import read_info
    from ovq.runtime.compilation import read_model

    q = read_info(read_model(out / "model.xml")).quantization
    assert q["mode"] == "accuracy_control" and q["max_drop"] == 0.01 and q["calib_images"] == 16


def test_compress_with_accuracy_control_script_names_a_served_models_url_whole(tmp_path):
    """--model was a Path, which folds '//': the script said 'http:/127.0.0.1:9/...: no such file or folder'."""
    url = "http://127.0.0.1:9/v2/models/fd"
    run = subprocess.run([sys.executable, str(PIPELINES / "compress_with_accuracy_control.py"), "--model", url,
                          "--data", str(tmp_path / "none"), "--out", str(tmp_path / "out")],
                         check=False, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and run.stderr.strip().splitlines() == [run.stderr.strip()], run.stderr
    assert run.stderr.startswith(f"error: {url}: a served model's URL"), run.stderr
    assert not (tmp_path / "out").exists()


def test_compress_with_accuracy_control_script_ctrl_c_is_one_line(tmp_path):
    """Ctrl-C while the script quantized printed a KeyboardInterrupt traceback through NNCF and OpenVINO."""
    from ovq.data.synth import write_yolo_dataset

    data = write_yolo_dataset(tmp_path / "conveyor", n_train=0, n_val=48, n_calib=16, seed=1)
    out = tmp_path / "int8"
    # as a terminal's Ctrl-C finds it: the script has no handler of its own, so under a runner that ignores SIGINT
    # (started in the background) it kept ignoring it and quantized to the end (a new-user run: exit 0)
    proc = popen_as_terminal([sys.executable, str(PIPELINES / "compress_with_accuracy_control.py"), "--data",
                              str(data), "--out", str(out), "--subset-size", "16", "--bench-seconds", "0"])
    stdout, stderr = ctrl_c_when(proc, "calibration: reading", timeout=120)  # once the work is under way
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr
    assert stderr.strip().splitlines()[-1] == "interrupted" and stdout == "", stderr
    assert [p.name for p in tmp_path.iterdir()] == ["conveyor"]  # nothing half-written beside it either


@pytest.mark.parametrize(("out", "message"), [
    ("", "--out '': an empty path"), ("-", "--out -: the output is a folder, not standard output"),
])
def test_compress_with_accuracy_control_script_refuses_an_empty_or_dash_out(tmp_path, out, message):
    """--out "" (an unset variable) quantized into the working folder, --out - into a folder named '-', as
    ovq quantize -o no longer does."""
    run = subprocess.run([sys.executable, str(PIPELINES / "compress_with_accuracy_control.py"), "--out", out,
                          "--data", str(tmp_path / "none"), "--bench-seconds", "0"],
                         check=False, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 2 and run.stderr.startswith(f"error: {message}"), run.stderr
    assert run.stderr.strip().splitlines() == [run.stderr.strip()] and list(tmp_path.iterdir()) == []


def test_dataset_root(tmp_path):
    (tmp_path / "ds/images").mkdir(parents=True)
    (tmp_path / "ds/data.yaml").write_text("path: .\ntrain: images\n")
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg/elsewhere.yaml").write_text("path: ../ds\ntrain: images\n")
    (tmp_path / "cfg/nopath.yaml").write_text("train: /x\n")
    (tmp_path / "cfg/broken.yaml").write_text("path: [../ds\n")  # unreadable: its own folder is watched
    (tmp_path / "coco/annotations").mkdir(parents=True)
    (tmp_path / "coco/annotations/instances.json").write_text("{}")
    assert dataset_root(tmp_path / "ds") == tmp_path / "ds"
    assert dataset_root(tmp_path / "ds/data.yaml") == tmp_path / "ds"
    assert dataset_root(tmp_path / "cfg/elsewhere.yaml") == tmp_path / "ds"
    assert dataset_root(tmp_path / "cfg/nopath.yaml") == tmp_path / "cfg"
    assert dataset_root(tmp_path / "cfg/broken.yaml") == tmp_path / "cfg"
    assert dataset_root(tmp_path / "coco/annotations/instances.json") == tmp_path / "coco"
    # an image added beside a data.yaml makes an older quantized model stale
    cfg = parse_pipeline_config({"model": "fp", "quantize": {"data": "ds/data.yaml", "output": "int8"},
                                 "sources": [0]}, tmp_path / "p.yaml")
    t = time.time() - 1000
    for rel in ("fp/model.xml", "fp/model.bin", "ds/images/a.jpg"):
        _touch(tmp_path / rel, t, tmp_path)
    for rel in ("ds/data.yaml", "ds/images", "ds"):
        os.utime(tmp_path / rel, (t, t))
    for rel in ("int8/model.xml", "int8/model.bin"):
        _touch(tmp_path / rel, t + 10, tmp_path)
    assert quantized_is_fresh(cfg.quantize, cfg.model)
    _touch(tmp_path / "ds/images/b.jpg", t + 20, tmp_path)
    assert not quantized_is_fresh(cfg.quantize, cfg.model)


def test_numbers_and_true_false_can_come_from_the_environment(tmp_path, monkeypatch):
    """The README: "Values can come from the environment as ${VAR} or ${VAR:-default}". For a number, an integer or
    true/false they could not: `conf: ${CONF:-0.5}` said "conf: expected a number, got '0.5'", `track: ${TRACK}`
    "expected true or false, got 'true'". A whole reference's text is now read as the file would read it."""
    text = ("model: m.xml\nsources: [synth://conveyor]\nconf: ${CONF:-0.5}\nmax_frames: ${FRAMES}\n"
            "track: ${TRACK:-false}\nreconnect: {stall_timeout: '${STALL:-7}'}\n"
            "quantize: {data: d, max_drop: '${DROP:-0.01}', subset_size: '${SUBSET:-16}'}\n")
    path = write(tmp_path, text)
    monkeypatch.setenv("FRAMES", "300")
    monkeypatch.setenv("TRACK", "true")
    cfg = load_pipeline_config(path)
    assert (cfg.conf, cfg.max_frames, cfg.track, cfg.reconnect.stall_timeout) == (0.5, 300, True, 7.0)
    assert (cfg.quantize.options.max_drop, cfg.quantize.options.subset_size) == (0.01, 16)
    # ovq bundle leaves the references in the file it ships, and checks their defaults
    with pytest.raises(ConfigError, match=r"max_frames: \$\{FRAMES\}: a value read from the environment where the "
                                          r"pipeline runs needs a default to be checked here: write \$\{VAR:-VALUE\}"):
        load_pipeline_config(path, resolve_env=("model", "quantize"))
    bundled = load_pipeline_config(write(tmp_path, text.replace("${FRAMES}", "${FRAMES:-9}"), "b.yaml"),
                                   resolve_env=("model", "quantize"))
    assert (bundled.conf, bundled.max_frames, bundled.track) == (0.5, 9, False)
    for name, value, said in (("CONF", "abc", "conf: expected a number, got 'abc'"),
                              ("FRAMES", "1.5", "max_frames: expected an integer, got 1.5"),
                              ("TRACK", "yes", "track: expected true or false, got 'yes'"),
                              ("DROP", "nan", "quantize.max_drop: expected a number >= 0 and <= 1, got nan")):
        monkeypatch.setenv(name, value)
        with pytest.raises(ConfigError) as err:
            load_pipeline_config(path)
        assert str(err.value) == f"{path}: {said}"
        monkeypatch.setenv(name, {"CONF": "0.5", "FRAMES": "300", "TRACK": "true", "DROP": "0.01"}[name])
    # text the file wrote itself stays text: a quoted number is still refused
    with pytest.raises(ConfigError, match="conf: expected a number, got '0.5'"):
        load_pipeline_config(write(tmp_path, "model: m.xml\nsources: [synth://conveyor]\nconf: '0.5'\n", "q.yaml"))


def test_numbers_without_a_dot_read_as_numbers(tmp_path):
    # YAML 1.1 (PyYAML) read 1e3 as the string '1e3' ("expected a number, got '1e3'"); YAML 1.2 and JSON read it
    # as a number. Quoted, it stays text.
    path = write(tmp_path, "model: m.xml\nsources: [synth://conveyor]\nsinks: {video: {path: v.mp4, fps: 3e1}}\n"
                           "reconnect: {stall_timeout: 2E+1}\n")
    cfg = load_pipeline_config(path)
    assert (cfg.sinks.video_fps, cfg.reconnect.stall_timeout) == (30.0, 20.0)
    path = write(tmp_path, "model: m.xml\nsources: [synth://conveyor]\nconf: '1e-1'\n")
    with pytest.raises(ConfigError, match="conf: expected a number, got '1e-1'"):
        load_pipeline_config(path)


def test_a_quantized_model_made_with_other_options_is_not_reused(tmp_path, tiny, caplog):
    """Only the accuracy settings and the data were compared: quantize.precision, bias_correction, overflow_fix or
    recalibrate_threshold changed, and the INT8 model made (and validated) with the old ones was reused without a
    word. Every option that decides the model is recorded now; the ones that only shape the report do not count."""
    import logging

    import cv2
    import numpy as np

    rng = np.random.default_rng(2)
    (tmp_path / "ds/images/train").mkdir(parents=True)
    for k in range(4):
        cv2.imwrite(str(tmp_path / f"ds/images/train/{k}.png"), rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    t = time.time() - 1000
    for path in [tmp_path / "ds", *(tmp_path / "ds").rglob("*")]:
        os.utime(path, (t, t))

    def config(**section):
        return parse_pipeline_config({"model": str(tiny), "sources": [0], "quantize": {
            "data": "ds", "output": "int8", "calib_split": "train", "subset_size": 4, "bench_seconds": 0,
            **section}}, tmp_path / "p.yaml")

    def fresh(**section):
        cfg = config(**section)
        return quantized_is_fresh(cfg.quantize, cfg.model)

    ensure_quantized(config().quantize, tiny)
    assert fresh() and fresh(bench_seconds=3, bootstrap_rounds=10)  # the report's, not the model's
    for changed in ({"precision": "f32"}, {"bias_correction": "full"}, {"overflow_fix": "enable"},
                    {"recalibrate_threshold": True}, {"eval_conf": 0.01}):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="ovq"):
            assert not fresh(**changed), changed
        (key, value), = changed.items()
        assert f"was made with other settings ({key} {value}, made with" in caplog.text, caplog.text
