"""Serving: ``ovq export-serving`` layouts, ``ovq serve`` (a real kserve v2 server in a subprocess on 127.0.0.1)
and the remote detector behind ``run``/``predict``/``eval``/``bench`` agreeing with the local model, over REST
and gRPC, through a server killed and restarted mid-run."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from ovq.core.errors import ConfigError, ModelError
from ovq.core.metadata import ModelInfo
from ovq.core.urls import is_serving_url
from ovq.model.decoders import get_decoder
from ovq.serving.client import parse_infer_response
from ovq.serving.remote import RemoteDetector, open_detector
from ovq.serving.urls import parse_serving_url
from tests.services import free_port

ROOT = Path(__file__).resolve().parents[1]
# found, not imported: kserve's gRPC protos and tritonclient's share names, one process can load only one set
if importlib.util.find_spec("kserve") is None or importlib.util.find_spec("tritonclient") is None:
    pytest.skip("serving needs the serve extra (pip install 'ovq[serve]')", allow_module_level=True)


def ovq(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ovq", *args], check=False, capture_output=True, text=True,
                          timeout=timeout,
                          cwd=ROOT)


class OvqServe:
    """``ovq serve MODEL`` in a subprocess on free loopback ports; ``kill``/``start`` make a real outage."""

    def __init__(self, model: Path, name: str = "det", log: Path | None = None, args: tuple[str, ...] = ()) -> None:
        self.model, self.name, self.log, self.args = model, name, log, args
        self.http, self.grpc = free_port(), free_port()
        self.proc: subprocess.Popen | None = None

    def url(self, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.http if scheme == 'http' else self.grpc}/v2/models/{self.name}"

    def start(self, timeout: float = 120.0) -> None:
        stderr = self.log.open("ab") if self.log is not None else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ovq", "serve", str(self.model), "--name", self.name, "--http-port",
             str(self.http), "--grpc-port", str(self.grpc), "-q", *self.args],
            stdout=subprocess.DEVNULL, stderr=stderr, cwd=ROOT)
        if self.log is not None:
            stderr.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ovq serve exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/v2/models/{self.name}/ready", timeout=2):
                    return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError("ovq serve did not become ready")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture(scope="module")
def yolox(assets: Path) -> Path:
    return assets / "models" / "yolox_nano" / "yolox_nano.onnx"


@pytest.fixture(scope="module")
def server(yolox: Path):
    srv = OvqServe(yolox)
    srv.start()
    yield srv
    srv.kill()


# -- fast: URLs, the REST wire format, options ---------------------------------------------------------------
@pytest.mark.parametrize(("url", "parts"), [
    ("http://127.0.0.1:8000/v2/models/det", ("http", "127.0.0.1", 8000, "det", "")),
    ("https://edge.example:8443/v2/models/det/versions/3", ("https", "edge.example", 8443, "det", "3")),
    ("grpc://[::1]:9000/v2/models/yolo.int8/", ("grpc", "::1", 9000, "yolo.int8", "")),
    ("http://server/v2/models/det", ("http", "server", 80, "det", "")),
])
def test_serving_url_parts(url: str, parts: tuple) -> None:
    u = parse_serving_url(url)
    assert (u.scheme, u.host, u.port, u.model, u.version) == parts
    assert is_serving_url(url)


@pytest.mark.parametrize(("url", "message"), [
    ("http://127.0.0.1:8000/models/det", "the path must be /v2/models/NAME"),
    ("grpc://127.0.0.1/v2/models/det", "a grpc URL needs a port"),
    ("http://u:secret@host:1/v2/models/det", "credentials in a serving URL are not supported"),
    ("http://host:99999/v2/models/det", "bad port"),
    ("http://host:1/v2/models/det?x=1", "the path must be"),
    ("http://[fe80::1/v2/models/det", "malformed IPv6 host"),  # was urllib's ValueError, a traceback
    ("htpp://host:1/v2/models/det", "unknown serving URL scheme 'htpp://'"),
])
def test_bad_serving_urls_say_what_is_expected(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        parse_serving_url(url)
    assert "secret" not in str(err.value)


def test_remote_options_are_checked_before_connecting() -> None:
    """The same decoding options as a local Detector, refused the same way, before any server is asked (port 1:
    nothing listens there, so reaching the network would be a connection error, not this one)."""
    url = "grpc://127.0.0.1:1/v2/models/det"
    with pytest.raises(ConfigError, match="max_det 0: expected at least 1"):
        RemoteDetector(url, max_det=0, retry=False)
    with pytest.raises(ConfigError, match="jobs 0"):
        RemoteDetector(url, jobs=0, retry=False)


def test_rest_binary_response_is_split_by_the_header_length() -> None:
    a = np.arange(12, dtype=np.float32).reshape(1, 3, 4)
    b = np.array([[7, 8]], dtype=np.int64)
    header = json.dumps({"outputs": [
        {"name": "a", "datatype": "FP32", "shape": [1, 3, 4], "parameters": {"binary_data_size": a.nbytes}},
        {"name": "b", "datatype": "INT64", "shape": [1, 2], "parameters": {"binary_data_size": b.nbytes}},
        {"name": "c", "datatype": "BYTES", "shape": [1], "data": ["{}"]},
    ]}).encode()
    out = parse_infer_response(header + a.tobytes() + b.tobytes(), str(len(header)))
    np.testing.assert_array_equal(out["a"], a)
    np.testing.assert_array_equal(out["b"], b)
    assert out["c"].tolist() == ["{}"]


def test_served_input_must_fit_the_metadata() -> None:
    det = object.__new__(RemoteDetector)
    det.url = parse_serving_url("http://127.0.0.1:1/v2/models/det")
    det.info = ModelInfo(family="yolox", labels=["a"], input_size=(416, 416))
    good = {"inputs": [{"name": "images", "datatype": "UINT8", "shape": [1, 416, 416, 3]}],
            "outputs": [{"name": "output", "datatype": "FP32", "shape": [1, 3549, 85]}]}
    assert det._check_metadata(good) == ("images", ("output",))
    wrong = {**good, "inputs": [{"name": "images", "datatype": "FP32", "shape": [1, 3, 640, 640]}]}
    with pytest.raises(ModelError, match=r"input 'images' is FP32 \[1, 3, 640, 640\].*UINT8 \[1, 416, 416, 3\]"):
        det._check_metadata(wrong)


@pytest.mark.parametrize(("family", "fits", "other"), [
    ("yolov5", [1, 6300, 8], [1, 1, 200, 7]),
    ("torchvision", [1, 300, 6], [1, 300, 7]),
    ("yolox_decoded", [1, 2100, 85], [1, 2000, 85]),
])
def test_a_served_model_of_a_family_told_apart_by_its_graph_is_taken(family: str, fits: list, other: list) -> None:
    """A server sends output shapes, not the graph: 'ovq predict http://.../v2/models/v5' on a YOLOv5 (or torchvision)
    IR that ovq serve served was refused, 'its outputs [[1, 6300, 8]] do not fit the family 'yolov5' in its
    metadata', as the family does not claim a model whose graph it cannot see. Its shapes are still checked."""
    det = object.__new__(RemoteDetector)
    det.url = parse_serving_url("http://127.0.0.1:1/v2/models/det")
    det.info = ModelInfo(family=family, labels=["a", "b", "c"], input_size=(320, 320))
    det.decoder = get_decoder(family)
    name = "ovq_detection_list" if family == "torchvision" else "output"  # the name ovq gives torchvision's list
    det._check_family({"outputs": [{"name": name, "datatype": "FP32", "shape": fits}]})
    with pytest.raises(ModelError, match=rf"its outputs '{name}' FP32 {re.escape(str(other))} do not fit the family "
                                         f"'{family}'"):
        det._check_family({"outputs": [{"name": name, "datatype": "FP32", "shape": other}]})


def test_pipeline_file_keeps_a_serving_url_and_refuses_to_quantize_it(tmp_path: Path) -> None:
    from ovq.deployment.loader import load_pipeline_config

    good = tmp_path / "p.yaml"
    good.write_text("model: grpc://10.0.0.5:8001/v2/models/det\nsources: [video.mp4]\n")
    assert load_pipeline_config(good).model == "grpc://10.0.0.5:8001/v2/models/det"
    bad = tmp_path / "q.yaml"
    bad.write_text("model: http://10.0.0.5:8000/v2/models/det\nquantize: {data: coco}\nsources: [video.mp4]\n")
    with pytest.raises(ConfigError, match="quantize a local model"):
        load_pipeline_config(bad)


def test_bundle_of_a_pipeline_with_a_served_model_is_one_line(tmp_path: Path) -> None:
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text("model: grpc://10.0.0.5:8001/v2/models/det\nsources: [video.mp4]\n")
    r = ovq("bundle", "--pipeline", str(pipeline), "-o", str(tmp_path / "out"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "the model is served at grpc://10.0.0.5:8001/v2/models/det" in r.stderr
    assert not (tmp_path / "out").exists()


# -- export-serving ------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_export_serving_layouts_keep_versions_and_other_models(yolox: Path, assets: Path, tmp_path: Path) -> None:
    fastest = assets / "models" / "fastestdet" / "FastestDet.onnx"
    repo = tmp_path / "repo"
    first = ovq("export-serving", str(yolox), str(fastest), "-o", str(repo), "--nireq", "4", "-q")
    assert first.returncode == 0, first.stderr
    again = ovq("export-serving", str(yolox), "-o", str(repo), "--name", "yolox_nano", "--hint", "latency", "-q")
    assert again.returncode == 0, again.stderr
    assert "yolox_nano: version 2" in again.stdout
    assert sorted(p.name for p in (repo / "yolox_nano").iterdir()) == ["1", "2"]
    config = json.loads((repo / "config.json").read_text())
    entries = {e["config"]["name"]: e["config"] for e in config["model_config_list"]}
    assert set(entries) == {"yolox_nano", "FastestDet"}  # the second export kept FastestDet's entry
    assert entries["yolox_nano"]["plugin_config"]["PERFORMANCE_HINT"] == "LATENCY"
    assert entries["FastestDet"] == {"name": "FastestDet", "base_path": "FastestDet", "target_device": "CPU",
                                     "nireq": 4, "plugin_config": {"PERFORMANCE_HINT": "THROUGHPUT"}}
    import openvino as ov

    from ovq.core.metadata import read_info

    info = read_info(ov.Core().read_model(repo / "yolox_nano" / "2" / "model.xml"))
    assert info is not None and info.family == "yolox" and info.input_size == (416, 416)

    triton = ovq("export-serving", str(yolox), "-o", str(tmp_path / "triton"), "--format", "triton", "-q")
    assert triton.returncode == 0, triton.stderr
    pbtxt = (tmp_path / "triton" / "yolox_nano" / "config.pbtxt").read_text()
    assert 'backend: "openvino"' in pbtxt and "TYPE_UINT8" in pbtxt and "dims: [ 1, 416, 416, 3 ]" in pbtxt
    assert "dims: [ 1, 3549, 85 ]" in pbtxt
    assert (tmp_path / "triton" / "yolox_nano" / "1" / "model.bin").stat().st_size > 1_000_000

    k = ovq("export-serving", str(yolox), "-o", str(tmp_path / "k"), "--format", "kserve", "--storage-uri",
            "s3://plant/models", "-q")
    assert k.returncode == 0, k.stderr
    import yaml

    isvc = yaml.safe_load((tmp_path / "k" / "yolox_nano.inferenceservice.yaml").read_text())
    assert isvc["kind"] == "InferenceService" and isvc["metadata"]["name"] == "yolox-nano"
    model = isvc["spec"]["predictor"]["model"]
    assert model["protocolVersion"] == "v2" and model["storageUri"] == "s3://plant/models/yolox_nano"


def test_export_serving_rejects_a_broken_config_json_and_leaves_it(yolox: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "config.json").write_text("{not json")
    r = ovq("export-serving", str(yolox), "-o", str(repo), "-q")
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "config.json: not an OVMS config.json" in r.stderr
    assert (repo / "config.json").read_text() == "{not json"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("ovms") is None,
                    reason="no ovms binary on PATH (OpenVINO Model Server ships as docker or a release tarball)")
def test_ovms_serves_the_exported_repository(yolox: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    assert ovq("export-serving", str(yolox), "-o", str(repo), "--name", "det", "-q").returncode == 0
    port = free_port()
    proc = subprocess.Popen(["ovms", "--config_path", str(repo / "config.json"), "--rest_port", str(port),
                             "--port", str(free_port())])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/models/det/ready", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        r = ovq("predict", f"http://127.0.0.1:{port}/v2/models/det", str(assets_images(yolox) / "bus.jpg"),
                "-o", str(tmp_path / "pred"))
        assert r.returncode == 0, r.stderr
        assert "bus" in r.stdout
    finally:
        proc.kill()


def assets_images(model: Path) -> Path:
    return model.parents[2] / "images"


# -- ovq serve and the remote detector ----------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_served_model_detects_what_the_local_one_does(server: OvqServe, yolox: Path, assets: Path,
                                                      scheme: str) -> None:
    from ovq.data.images import read_image

    remote = open_detector(server.url(scheme))
    local = open_detector(yolox, device="CPU")
    assert remote.labels == local.labels and remote.info.family == "yolox"
    for name in ("street.jpg", "bus.jpg"):
        image = read_image(assets / "images" / name)
        a, b = local(image), remote(image)
        assert len(a) > 3
        assert a.class_id.tolist() == b.class_id.tolist()
        np.testing.assert_allclose(a.xyxy, b.xyxy, atol=2.0)  # same CPU, same IR: identical here
    # a file read flat out gets a second request waiting per device stream; live, paced and served runs one more
    # than the device's (or the server's) own number, so a slow sink leaves fewer stale frames in flight
    from ovq.streaming.pipeline import Pipeline

    video = str(assets / "videos" / "one-by-one-person-detection.mp4")
    optimal = int(local.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    assert Pipeline(local, [video]).nireq == 2 * optimal + 1 and Pipeline(remote, [video]).nireq == remote.jobs + 1
    for live in ({"sources": ["synth://conveyor"]}, {"sources": [video], "pace_fps": 10.0},
                 {"sources": [video, "synth://conveyor"]}):
        assert Pipeline(local, **live).nireq == optimal + 1, live
    assert Pipeline(local, [video], nireq=2).nireq == 2


@pytest.mark.slow
def test_run_remote_over_grpc_matches_local_and_rest(server: OvqServe, yolox: Path, assets: Path,
                                                     tmp_path: Path) -> None:
    video = assets / "videos" / "one-by-one-person-detection.mp4"
    out = {}
    for label, model, frames in (("local", str(yolox), 40), ("grpc", server.url("grpc"), 40),
                                 ("http", server.url("http"), 40)):
        jsonl = tmp_path / f"{label}.jsonl"
        device = ["--device", "CPU"] if label == "local" else []  # a served model runs on its server's device
        r = ovq("run", model, "--source", str(video), "--jsonl", str(jsonl), "--max-frames", str(frames),
                *device, "--no-progress", "-q")
        assert r.returncode == 0, r.stderr
        out[label] = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [rec["frame_index"] for rec in out["grpc"]] == list(range(40)) == [r["frame_index"] for r in out["http"]]
    assert sum(len(rec["detections"]) for rec in out["local"]) > 10  # 17 on the Zen 3 (f32)
    for label in ("grpc", "http"):
        for mine, ref in zip(out[label], out["local"], strict=False):
            assert [d["label"] for d in mine["detections"]] == [d["label"] for d in ref["detections"]]
            for d, e in zip(mine["detections"], ref["detections"], strict=True):
                assert np.abs(np.subtract(d["xyxy"], e["xyxy"])).max() <= 2.0


@pytest.mark.slow
def test_bad_model_urls_are_one_line_and_exit_2(server: OvqServe, assets: Path, tmp_path: Path) -> None:
    image = str(assets / "images" / "bus.jpg")
    unknown = ovq("predict", server.url("grpc").replace("/det", "/nope"), image, "-o", str(tmp_path / "p"))
    assert unknown.returncode == 2 and unknown.stderr.count("\n") == 1, unknown.stderr
    assert "nope" in unknown.stderr and not (tmp_path / "p").exists()
    down = ovq("predict", f"http://127.0.0.1:{free_port()}/v2/models/det", image, "-o", str(tmp_path / "p"))
    assert down.returncode == 2 and down.stderr.count("\n") == 1 and "Connection refused" in down.stderr
    # a binary REST request whose input does not fit: HTTP 400 naming what fits, the server keeps serving
    header = json.dumps({"inputs": [{"name": "images", "shape": [1, 320, 320, 3], "datatype": "UINT8",
                                     "parameters": {"binary_data_size": 320 * 320 * 3}}]}).encode()
    request = urllib.request.Request(server.url("http") + "/infer", data=header + bytes(320 * 320 * 3), headers={
        "Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=30)
    assert err.value.code == 400
    assert "the model takes input 'images' UINT8 [1, 416, 416, 3]" in json.loads(err.value.read())["error"]
    bench = ovq("bench", server.url("grpc"), "--time", "2", "--requests", "2")
    assert bench.returncode == 0, bench.stderr
    assert "grpc://127.0.0.1" in bench.stdout


@pytest.mark.slow
@pytest.mark.parametrize("retry", [True, False], ids=["retried", "no-retry"])
def test_server_killed_and_restarted_mid_run(yolox: Path, assets: Path, tmp_path: Path, retry: bool) -> None:
    srv = OvqServe(yolox)
    srv.start()
    jsonl = tmp_path / "out.jsonl"
    video = assets / "videos" / "one-by-one-person-detection.mp4"
    frames = 60
    # --jsonl-append writes the target as it goes (plain --jsonl replaces it at the end), so the test sees progress
    args = [sys.executable, "-m", "ovq", "run", srv.url("grpc"), "--source", str(video), "--jsonl", str(jsonl),
            "--jsonl-append", "--max-frames", str(frames), "--no-progress", *([] if retry else ["--no-retry"])]
    run = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                           env={**os.environ, "OVQ_NO_COLOR": "1"})
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and (not jsonl.exists() or len(jsonl.read_text().splitlines()) < 10):
            time.sleep(0.1)
        srv.kill()  # a real outage: the process is gone, connections refused
        before = len(jsonl.read_text().splitlines())
        assert before < frames, "the run ended before the outage; nothing was tested"
        if retry:
            time.sleep(3)
            srv.start()
        _, stderr = run.communicate(timeout=600)
    finally:
        run.kill()
        srv.kill()
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    if retry:
        assert run.returncode == 0, stderr
        assert [r["frame_index"] for r in records] == list(range(frames))  # every frame once, in order
        assert "retrying until it is back" in stderr and "server back after" in stderr
    else:
        assert run.returncode == 2, stderr
        assert "inference failed on frame" in stderr and "Traceback" not in stderr
        assert [r["frame_index"] for r in records] == list(range(len(records)))  # what was written stays whole


@pytest.mark.slow
def test_run_started_before_its_server_waits_for_it(yolox: Path, assets: Path, tmp_path: Path) -> None:
    srv = OvqServe(yolox)
    jsonl = tmp_path / "out.jsonl"
    video = assets / "videos" / "car-detection.mp4"
    run = subprocess.Popen([sys.executable, "-m", "ovq", "run", srv.url("http"), "--source", str(video), "--jsonl",
                            str(jsonl), "--max-frames", "3", "--no-progress"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        time.sleep(3)
        assert run.poll() is None, run.communicate()[1]  # still waiting, not failed
        srv.start()
        _, stderr = run.communicate(timeout=600)
    finally:
        run.kill()
        srv.kill()
    assert run.returncode == 0, stderr
    assert "waiting for the server" in stderr and "server reached" in stderr
    assert [json.loads(line)["frame_index"] for line in jsonl.read_text().splitlines()] == [0, 1, 2]
