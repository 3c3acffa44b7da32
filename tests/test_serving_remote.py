"""The edge's side of serving on real servers: a run stopped during an outage, a URL at the other protocol's
port, what a server says reported as it said it, options that a served model cannot take (FastestDet)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ovq.core.errors import ConfigError
from ovq.serving.client import ServerUnavailable, ServingError, V2Client, printable
from ovq.serving.urls import parse_serving_url
from tests.test_serving import ROOT, OvqServe, ovq


@pytest.fixture(scope="module")
def fastestdet(assets: Path) -> Path:
    return assets / "models" / "fastestdet" / "FastestDet.onnx"


@pytest.fixture(scope="module")
def fd_server(fastestdet: Path):
    srv = OvqServe(fastestdet, name="fd")
    srv.start()
    yield srv
    srv.kill()


@pytest.mark.slow
@pytest.mark.parametrize(("scheme", "sig"), [("http", signal.SIGINT), ("grpc", signal.SIGTERM)],
                         ids=["http-sigint", "grpc-sigterm"])
def test_stopping_a_run_during_an_outage_keeps_its_results(fastestdet: Path, assets: Path, tmp_path: Path,
                                                            scheme: str, sig: int) -> None:
    """Ctrl-C (or SIGTERM) while the server was away was 'inference failed on frame 240: ... Connection refused',
    exit 2, the JSONL left partial and no summary; now it stops as a local run's Ctrl-C does."""
    srv = OvqServe(fastestdet, name="fd")
    srv.start()
    jsonl, summary = tmp_path / "r.jsonl", tmp_path / "r.json"
    run = subprocess.Popen([sys.executable, "-m", "ovq", "run", srv.url(scheme), "--source",
                            str(assets / "videos" / "one-by-one-person-detection.mp4"), "--jsonl", str(jsonl),
                            "--summary-json", str(summary), "--no-progress", "--realtime"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(run.stderr), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any("served at" in ln for ln in lines):
            time.sleep(0.1)
        time.sleep(3)  # a hundred frames or so (--realtime: the video's 25 fps)
        srv.kill()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any("retrying until it is back" in ln for ln in lines):
            time.sleep(0.1)
        time.sleep(1)
        started = time.monotonic()
        run.send_signal(sig)
        out, _ = run.communicate(timeout=60)
        stopped_in = time.monotonic() - started
    finally:
        run.kill()
        srv.kill()
    reader.join(5)
    stderr = "".join(lines)
    assert run.returncode == 0, stderr
    assert "inference failed" not in stderr and "Traceback" not in stderr
    assert stopped_in < 10, stopped_in  # the retry loop hears the stop, not after its sleep
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(records) > 20 and [r["frame_index"] for r in records] == list(range(len(records)))
    result = json.loads(summary.read_text())
    assert result["stopped"] is True
    assert f"wrote {jsonl}" in out


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_a_url_at_the_other_protocols_port_is_one_readable_line(fd_server: OvqServe, assets: Path,
                                                                 tmp_path: Path, scheme: str) -> None:
    """http:// at the gRPC port logged raw HTTP/2 frame bytes and waited for ever in `ovq run`; grpc:// at the
    REST port waited for ever too."""
    port = fd_server.grpc if scheme == "http" else fd_server.http
    url = f"{scheme}://127.0.0.1:{port}/v2/models/fd"
    r = ovq("run", url, "--source", str(assets / "videos" / "one-by-one-person-detection.mp4"), "--max-frames",
            "3", "--no-progress", "-q", timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    other = "HTTP/2 (a gRPC port?)" if scheme == "http" else "HTTP/1.1 (a REST port?)"
    assert f"127.0.0.1:{port} answers in {other}" in r.stderr
    assert r.stderr.isprintable() or r.stderr[:-1].isprintable()
    p = ovq("predict", url, str(assets / "images" / "bus.jpg"), "-o", str(tmp_path / "p"), "-q", timeout=60)
    assert p.returncode == 2 and f"answers in {other}" in p.stderr and p.stderr[:-1].isprintable(), p.stderr


@pytest.fixture
def untrusted_tls(tmp_path: Path):
    """A TLS server on loopback with a self-signed certificate (one a client does not trust): its port."""
    import http.server
    import ssl

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    made = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                           str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"], capture_output=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"openssl cannot make a certificate here: {made.stderr.decode(errors='replace')[:200]}")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.mark.slow
@pytest.mark.parametrize("case", ["plain-http-port", "untrusted-certificate"])
def test_a_tls_failure_is_one_line_not_an_outage_to_wait_for(fd_server: OvqServe, untrusted_tls: int, assets: Path,
                                                               case: str) -> None:
    """https:// at a plain HTTP port ('[SSL: WRONG_VERSION_NUMBER]') or at a server whose certificate is not trusted
    was taken for a server that is down: `ovq run` logged 'waiting for the server' and waited for ever."""
    port = fd_server.http if case == "plain-http-port" else untrusted_tls
    url = f"https://127.0.0.1:{port}/v2/models/fd"
    r = ovq("run", url, "--source", str(assets / "videos" / "one-by-one-person-detection.mp4"), "--max-frames",
            "3", "--no-progress", "-q", timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    if case == "plain-http-port":
        assert f"127.0.0.1:{port} does not answer in TLS (a plain HTTP port?); use http://127.0.0.1:{port}/v2/" \
               "models/fd" in r.stderr
    else:
        assert "the server's TLS certificate is not trusted here: " in r.stderr and "self-signed" in r.stderr


@pytest.mark.slow
def test_what_the_server_said_is_reported(fd_server: OvqServe, assets: Path, tmp_path: Path) -> None:
    """A versioned URL was 'the server has model 'fd' but it is not ready'; the server had said 501."""
    r = ovq("predict", fd_server.url("http") + "/versions/1", str(assets / "images" / "bus.jpg"), "-o",
            str(tmp_path / "p"), "-q", timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "HTTP 501: Model versioning not supported yet. (this server serves no versioned URL" in r.stderr


@pytest.mark.slow
def test_bench_refuses_a_device_for_a_served_model(fd_server: OvqServe) -> None:
    """`ovq bench URL --device GPU` exited 0 with GPU in the table."""
    r = ovq("bench", fd_server.url("http"), "--device", "GPU", "--rounds", "1", "--time", "1", timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert f"--device GPU: {fd_server.url('http')} runs on its server's device" in r.stderr


@pytest.mark.slow
def test_bench_reports_a_served_model_as_its_server_runs_it(fastestdet: Path, tmp_path: Path) -> None:
    """`ovq bench LOCAL URL` labelled the served model 'CPU, throughput', precision 'server', as if it were a local
    compile with bench's defaults (the server ran it with the latency hint), and gave it '0.44x' against the local
    model; now the row and the JSON say what the server reports and that it was served, and a served model is
    compared only with the first served one."""
    srv = OvqServe(fastestdet, name="fd", args=("--hint", "latency", "--nireq", "1"))
    srv.start()
    try:
        out = tmp_path / "b.json"
        r = ovq("bench", str(fastestdet), srv.url("http"), "--time", "1", "--rounds", "1", "--json", str(out), "-q",
                timeout=120)
    finally:
        srv.kill()
    assert r.returncode == 0, r.stderr
    local, served = json.loads(out.read_text())["results"]
    assert (local["served"], local["device"], local["hint"]) == (False, "CPU", "throughput")
    assert (served["served"], served["device"], served["hint"]) == (True, "CPU", "latency")
    assert served["precision_used"] == local["precision_used"] and served["precision_requested"] == "server"
    rows = {ln.split()[0]: ln.split() for ln in r.stdout.splitlines() if ln.startswith(("FastestDet", "http:"))}
    assert rows["FastestDet"][1:3] == ["CPU", "throughput"] and rows["FastestDet"][-1] == "1.00x"
    assert rows[srv.url("http")][1:4] == ["CPU", "(served)", "latency"] and rows[srv.url("http")][-1] == "1.00x"
    assert "served models are compared with the first served one" in r.stdout


def test_credentials_in_a_serving_url_query_are_masked() -> None:
    with pytest.raises(ConfigError) as err:
        parse_serving_url("http://127.0.0.1:18100/v2/models/fd?token=SECRETX&x=1&api_key=K2")
    assert "SECRETX" not in str(err.value) and "K2" not in str(err.value)
    assert "?token=***&x=1&api_key=***: the path must be" in str(err.value)


def test_server_text_is_printable() -> None:
    assert printable("\x00\x00\x18\x04ok") == "\\x00\\x00\\x18\\x04ok"


def test_grpc_statuses_are_classified_for_retry() -> None:
    """UNAVAILABLE (a model not ready, now that ovq serve sends it) is retried; INVALID_ARGUMENT, NOT_FOUND
    are answers."""
    triton = pytest.importorskip("tritonclient.grpc")
    client = object.__new__(V2Client)
    client.url = parse_serving_url("grpc://127.0.0.1:1/v2/models/fd")
    for status, kind in (("StatusCode.UNAVAILABLE", ServerUnavailable), ("StatusCode.NOT_FOUND", ServingError),
                         ("StatusCode.INVALID_ARGUMENT", ServingError)):
        failure = client._failure(triton.InferenceServerException("Model with name fd is not ready.", status), "x")
        assert type(failure) is kind, status


# --- options only a local model honours, refused for a served one before any connection (no server needed) ----

NOBODY = "http://127.0.0.1:9/v2/models/fd"  # nothing listens on the discard port: a connection is refused at once


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``tmp_path`` as the working directory, with an image ``img.png`` in it."""
    import cv2
    import numpy as np

    monkeypatch.chdir(tmp_path)
    cv2.imwrite("img.png", np.zeros((32, 32, 3), np.uint8))
    return tmp_path


def _local_only_cases(image: str) -> list[tuple[list[str], str]]:
    run = ["run", NOBODY, "--source", image, "--no-retry"]
    return [
        (["eval", NOBODY, "--data", "nowhere", "--device", "CPU"], "--device CPU"),
        (["eval", NOBODY.replace("http", "grpc"), "--data", "nowhere", "--precision", "f32"], "--precision f32"),
        (["predict", NOBODY, image, "-o", "out", "--device", "GPU"], "--device GPU"),
        (["predict", NOBODY, image, "-o", "out", "--precision", "bf16"], "--precision bf16"),
        ([*run, "--device", "AUTO"], "--device AUTO"),
        ([*run, "--precision", "f32"], "--precision f32"),
        ([*run, "--hint", "latency"], "--hint latency"),
        ([*run, "--resize", "graph"], "--resize graph"),
        ([*run, "--nms", "graph"], "--nms graph"),
        (["bench", NOBODY, "--precision", "f32", "--time", "1"], "--precision f32"),
        (["bench", NOBODY, "--hint", "latency", "--time", "1"], "--hint latency"),
        (["bench", NOBODY, "--device", "GPU", "--time", "1"], "--device GPU"),
    ]


@pytest.mark.parametrize("case", range(12))
def test_an_option_only_a_local_model_honours_is_refused_for_a_served_one(case, in_tmp, capsys):
    """They were dropped without a word: eval --device GPU reported GPU, run --precision f32 ran as the server ran."""
    from ovq.cli import main

    argv, option = _local_only_cases("img.png")[case]
    assert main([*argv, "-q"]) == 2
    url = argv[1]
    assert capsys.readouterr().err.splitlines() == [
        f"ovq {argv[0]}: error: {option}: {url} " + _what(option, argv[0])]
    assert not (in_tmp / "out").exists()


def _what(option: str, command: str) -> str:
    flag = option.split()[0]
    return {
        "--device": "runs on its server's device, not one chosen here; drop --device ",
        "--precision": "runs at the precision its server compiled it with; drop --precision ",
        "--hint": "runs with the performance hint its server compiled it with; drop --hint ",
        "--resize": "has its graph on the server: its frames are resized here, in Python; drop --resize ",
        "--nms": "has its graph on the server: its boxes are decoded and NMS'd here, in Python; drop --nms ",
    }[flag] + ("(or bench served and local models separately)" if command == "bench"
               else f"(or give {flag} python)" if flag in ("--resize", "--nms")
               else "(choose it where the model is served)")


@pytest.mark.parametrize("argv", [
    ["eval", NOBODY, "--data", "nowhere"],
    ["predict", NOBODY, "img.png", "-o", "out", "--conf", "0.3"],
    ["run", NOBODY, "--source", "img.png", "--no-retry", "--nireq", "2", "--resize", "python", "--nms", "auto"],
    ["bench", NOBODY, "--requests", "2", "--time", "1"],
], ids=["eval", "predict", "run", "bench"])
def test_defaults_and_options_a_served_model_honours_are_not_refused(argv, in_tmp, capsys):
    """Only options the user gave are refused: without them the command goes on to ask the server."""
    from ovq.cli import main

    assert main([*argv, "-q"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"ovq {argv[0]}: error: {NOBODY}: model readiness: [Errno 111] Connection refused"]


def test_capacity_says_it_needs_a_local_model(tmp_path, capsys):
    """It said 'http:/127.0.0.1:9/v2/models/fd: no such file or folder'."""
    from ovq.cli import main

    assert main(["capacity", NOBODY, "--source", str(tmp_path / "clip.mp4"), "--fps", "10", "-q"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        (f"ovq capacity: error: {NOBODY}: capacity measures this machine running a local model; give a model "
         "folder, .xml, .onnx or .pt (a served model's throughput: ovq bench URL)")]


def test_pipeline_refuses_a_device_for_its_served_model(in_tmp, capsys):
    """`ovq pipeline FILE --device GPU` ran a served model as its server runs it."""
    from ovq.cli import main

    (in_tmp / "p.yaml").write_text(f"model: {NOBODY}\nsources: [img.png]\n")
    assert main(["pipeline", "p.yaml", "--device", "GPU", "--check", "-q"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"ovq pipeline: error: --device GPU: {NOBODY} " + _what("--device", "pipeline")]


@pytest.mark.slow
def test_eval_and_run_report_a_served_model_as_its_server_runs_it(fd_server: OvqServe, fastestdet: Path, assets: Path,
                                                                   tmp_path: Path) -> None:
    """`ovq eval URL` printed 'device     http://.../v2/models/fd, inference precision server' and `ovq run URL`
    '... on http://.../v2/models/fd, inference precision server' (their JSON the same), though the server says how it
    runs the model (6519b7c); now both say its device and precision, and where it is served."""
    from ovq.model.detector import Detector

    url = fd_server.url("http")
    precision = Detector(fastestdet, device="CPU").inference_precision  # as the server compiled it (bf16 on AMX, AVX-512 BF16)
    shown = f"CPU (served at {url})"
    ev = tmp_path / "eval.json"
    r = ovq("eval", url, "--data", str(assets / "coco128"), "--no-progress", "--json", str(ev), "-q", timeout=180)
    assert r.returncode == 0, r.stderr
    assert f"device     {shown}, inference precision {precision}," in r.stdout
    assert [json.loads(ev.read_text())[k] for k in ("device", "precision")] == [shown, precision]
    summary = tmp_path / "run.json"
    r = ovq("run", url, "--source", str(assets / "videos" / "car-detection.mp4"), "--max-frames", "5",
            "--no-progress", "--summary-json", str(summary), "-q", timeout=120)
    assert r.returncode == 0, r.stderr
    assert f"on {shown}, inference precision {precision}," in r.stdout
    assert [json.loads(summary.read_text())[k] for k in ("device", "inference_precision")] == [shown, precision]
