"""What ``ovq serve`` answers a v2 client beyond inference: the model repository extension (load, unload) and model
versions, on REST and gRPC alike (FastestDet as the model)."""

from __future__ import annotations

import http.client
import json
from pathlib import Path

import pytest

from tests.test_serving import OvqServe


@pytest.fixture(scope="module")
def fastestdet(assets: Path) -> Path:
    return assets / "models" / "fastestdet" / "FastestDet.onnx"


@pytest.fixture(scope="module")
def fd_server(fastestdet: Path, tmp_path_factory: pytest.TempPathFactory):
    srv = OvqServe(fastestdet, name="fd", log=tmp_path_factory.mktemp("serve") / "serve.log")
    srv.start()
    yield srv
    srv.kill()


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
