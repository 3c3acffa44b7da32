"""What ``ovq serve`` answers a v2 client beyond a well-formed inference: the model repository extension (load,
unload), model versions, bodies kserve cannot parse, JSON data that is not UINT8, a request cut by the server's stop;
on REST and gRPC alike (FastestDet as the model)."""

from __future__ import annotations

import http.client
import json
import logging
import signal
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from tests import test_serving_server as server_tests
from tests.test_serving import OvqServe, ovq

INPUT = server_tests.INPUT
fastestdet = server_tests.fastestdet  # the same fixtures as the server's tests (a server of this module's own)
fd_server = server_tests.fd_server


def rest(srv: OvqServe, method: str, path: str) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.http, timeout=30)
    try:
        conn.request(method, path)
        r = conn.getresponse()
        return r.status, json.loads(r.read())
    finally:
        conn.close()


@pytest.mark.slow
def test_a_client_cannot_unload_the_served_model(fd_server: OvqServe) -> None:
    """kserve's model repository extension unloaded a model for any client that asked, without credentials
    (``POST /v2/repository/models/fd/unload`` was 200 ``{"unload": true}``), and could not load it back: the server
    answered 404 for it until restarted. Now load and unload are refused, on both protocols, and the model stays."""
    import tritonclient.grpc as triton

    for what in ("unload", "load"):
        status, answer = rest(fd_server, "POST", f"/v2/repository/models/fd/{what}")
        assert status == 501 and "does not load or unload" in answer["error"], answer
    client = triton.InferenceServerClient(f"127.0.0.1:{fd_server.grpc}")
    try:
        with pytest.raises(triton.InferenceServerException) as err:
            client.unload_model("fd", client_timeout=30)
        assert str(err.value.status()) == "StatusCode.UNIMPLEMENTED"
        assert client.is_model_ready("fd", client_timeout=30)
    finally:
        client.close()
    assert rest(fd_server, "GET", "/v2/models/fd/ready") == (200, {"name": "fd", "ready": True})
    assert "Traceback" not in fd_server.log.read_text()


@pytest.mark.slow
def test_a_model_version_is_refused_on_grpc_as_on_rest(fd_server: OvqServe, assets: Path, tmp_path: Path) -> None:
    """REST refuses a versioned URL (501, "Model versioning not supported yet."), but gRPC answered any version
    asked for: `ovq predict grpc://.../v2/models/fd/versions/7` wrote predictions from a version that does not
    exist, and tritonclient's infer with model_version="7" was served."""
    import tritonclient.grpc as triton

    r = ovq("predict", fd_server.url("grpc") + "/versions/7", str(assets / "images" / "bus.jpg"), "-o",
            str(tmp_path / "p"), "-q", timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "Model versioning not supported yet. (this server serves no versioned URL; drop /versions/7)" in r.stderr
    assert not (tmp_path / "p").exists()
    client = triton.InferenceServerClient(f"127.0.0.1:{fd_server.grpc}")
    item = triton.InferInput("input.1", INPUT, "UINT8")
    item.set_data_from_numpy(np.zeros(INPUT, np.uint8))
    try:
        for call in (lambda: client.infer("fd", [item], model_version="7", client_timeout=30),
                     lambda: client.get_model_metadata("fd", "7", client_timeout=30),
                     lambda: client.is_model_ready("fd", "7", client_timeout=30)):
            with pytest.raises(triton.InferenceServerException) as err:
                call()
            assert str(err.value.status()) == "StatusCode.UNIMPLEMENTED", err.value
        assert client.infer("fd", [item], client_timeout=30).as_numpy("758").shape == (1, 85, 22, 22)
    finally:
        client.close()


@pytest.mark.slow
@pytest.mark.parametrize(("value", "kind"), [(0.5, "numbers with a fraction"), (True, "true/false"),
                                             ("7", "strings")], ids=["float", "bool", "string"])
def test_json_data_that_is_not_uint8_is_400(fd_server: OvqServe, value, kind: str) -> None:
    """A UINT8 input written as JSON floats (an image already scaled to 0..1), booleans or numeric strings was
    served (200): numpy cast it, 0.5 to 0, and the client got detections of a black frame."""
    n = int(np.prod(INPUT))
    body = json.dumps({"inputs": [{"name": "input.1", "shape": INPUT, "datatype": "UINT8", "data": [value] * n}]})
    conn = http.client.HTTPConnection("127.0.0.1", fd_server.http, timeout=60)
    try:
        conn.request("POST", "/v2/models/fd/infer", body=body, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        status, answer = r.status, json.loads(r.read())
    finally:
        conn.close()
    assert status == 400, answer
    assert answer["error"] == (f"input 'input.1': its data does not fit UINT8 [1, 352, 352, 3]: UINT8 data are "
                               f"integers from 0 to 255, got {kind}")


@pytest.mark.slow
@pytest.mark.parametrize(("body", "error"), [
    ({"inputs": [{"name": "input.1"}]}, "inputs[0].shape: Field required; inputs[0].datatype: Field required"),
    ({"inputs": [{"name": "input.1", "shape": [1.5, 352, 352, 3], "datatype": "UINT8", "data": [0] * 371712}]},
     "inputs[0].shape[0]: Input should be a valid integer, got a number with a fractional part"),
    ("{", "the body is not JSON: Expecting property name enclosed in double quotes"),
    ("", "the request has no body"),
    # FastAPI's own 400 {"detail": "There was an error parsing the body"} for these, nothing logged
    (b'{"id": "\xff"}', "the body is not JSON: 'utf-8' codec can't decode byte 0xff in position 8"),
    ("[" * 100_000 + "]" * 100_000, "the body is not JSON: maximum recursion depth exceeded"),
], ids=["fields-missing", "shape-fraction", "not-json", "empty", "not-utf8", "too-deep"])
def test_a_request_kserve_cannot_parse_is_a_v2_error(fd_server: OvqServe, body, error: str) -> None:
    """kserve answered these with FastAPI's 422 {"detail": [...]}, not the v2 protocol's {"error": "..."} (ovq's own
    client showed the raw detail), echoing the request's data back (743 KB for a 1.8 MB body) and logging nothing."""
    before = fd_server.log.read_text()
    conn = http.client.HTTPConnection("127.0.0.1", fd_server.http, timeout=60)
    try:
        conn.request("POST", "/v2/models/fd/infer", body=body if isinstance(body, (str, bytes)) else json.dumps(body),
                     headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        status, raw = r.status, r.read()
    finally:
        conn.close()
    assert status == 400 and len(raw) < 1000, raw[:300]
    assert json.loads(raw)["error"].startswith(error), raw
    time.sleep(0.2)
    logged = fd_server.log.read_text()[len(before):]
    assert logged.count("\n") == 1 and error in logged, logged


@pytest.mark.slow
def test_a_request_still_coming_when_the_server_stops_is_one_log_line(fastestdet: Path, tmp_path: Path) -> None:
    """SIGTERM while a client was still sending its body: after uvicorn's 5 s grace it cancelled the request and
    logged 'Exception in ASGI application' with a 60-line CancelledError traceback, at ERROR, also with -q."""
    srv = OvqServe(fastestdet, name="fd", log=tmp_path / "serve.log")
    srv.start()
    try:
        with socket.create_connection(("127.0.0.1", srv.http), timeout=30) as sock:
            sock.sendall(b"POST /v2/models/fd/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 1000000\r\n\r\n{")
            before = srv.log.read_text()
            srv.proc.send_signal(signal.SIGTERM)
            while srv.proc.poll() is None:  # a client that goes on sending, a byte at a time
                try:
                    sock.sendall(b" ")
                except OSError:
                    break
                time.sleep(0.2)
        assert srv.proc.wait(30) == 0
    finally:
        srv.kill()
    logged = srv.log.read_text()[len(before):]
    assert "Traceback" not in logged and "CancelledError" not in logged, logged
    assert "POST /v2/models/fd/infer: the server stopped before the request was complete" in logged, logged


@pytest.mark.slow
def test_a_second_ctrl_c_stops_the_server_at_once(fastestdet: Path, tmp_path: Path) -> None:
    """A second Ctrl-C while the server waited for a request still coming: uvicorn's forced exit left the
    application's lifespan to be cancelled, and it logged a CancelledError traceback at ERROR; exit 0. Now it ends
    at once, as `ovq run` does: one line and exit code 130."""
    srv = OvqServe(fastestdet, name="fd", log=tmp_path / "serve.log")
    srv.start()
    try:
        with socket.create_connection(("127.0.0.1", srv.http), timeout=30) as sock:
            sock.sendall(b"POST /v2/models/fd/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 1000000\r\n\r\n{")  # the drain waits for it (up to 5 s)
            srv.proc.send_signal(signal.SIGINT)
            time.sleep(1.5)  # past the window in which a repeat is the same request (SAME_REQUEST_S)
            srv.proc.send_signal(signal.SIGINT)
            code = srv.proc.wait(30)
    finally:
        srv.kill()
    logged = srv.log.read_text()
    assert code == 130, logged
    assert "Traceback" not in logged and "CancelledError" not in logged, logged
    assert logged.endswith("ovq serve: interrupted again, stopping at once (requests under way are not answered)\n")


@pytest.mark.parametrize("host, warned", [("127.0.0.1", False), ("::1", False), ("localhost", False),
                                          ("0.0.0.0", True), ("192.168.1.20", True), ("::", True)])
def test_serving_beyond_this_machine_warns_that_anyone_can_run_inference(host, warned, caplog):
    from ovq.serving.server import warn_if_open

    with caplog.at_level(logging.WARNING, logger="ovq.serving.server"):
        assert warn_if_open(host) is warned
    assert ("has no authentication" in caplog.text) is warned
