"""``ovq serve`` on real sockets: where it listens (ports in use, hosts it cannot have), what it answers a
request that does not fit (REST and gRPC statuses, size limits, one log line), FastestDet as the model."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.services import free_port
from tests.test_serving import ROOT, OvqServe, ovq

INPUT = [1, 352, 352, 3]  # FastestDet's letterboxed u8 NHWC input
NBYTES = 352 * 352 * 3


@pytest.fixture(scope="module")
def fastestdet(assets: Path) -> Path:
    return assets / "models" / "fastestdet" / "FastestDet.onnx"


@pytest.fixture(scope="module")
def fd_server(fastestdet: Path, tmp_path_factory: pytest.TempPathFactory):
    srv = OvqServe(fastestdet, name="fd", log=tmp_path_factory.mktemp("serve") / "serve.log")
    srv.start()
    yield srv
    srv.kill()


def serve(fastestdet: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return ovq("serve", str(fastestdet), "-q", *args, timeout=timeout)


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


# -- where it listens ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_ports_in_use_are_one_line_and_nothing_starts(fd_server: OvqServe, fastestdet: Path) -> None:
    """A second server on the first one's gRPC port used to share it (grpc sets SO_REUSEPORT) and serve; on its
    REST port it died with uvicorn's traceback (exit 3); on a port another program listens on, grpc's
    RuntimeError after the REST server had started (exit 1)."""
    free = free_port()
    grpc = serve(fastestdet, "--http-port", str(free), "--grpc-port", str(fd_server.grpc), timeout=60)
    assert grpc.returncode == 2, grpc.stderr
    assert grpc.stderr == f"ovq serve: error: 127.0.0.1:{fd_server.grpc}: address already in use\n"
    rest = serve(fastestdet, "--http-port", str(fd_server.http), "--grpc-port", str(free), timeout=60)
    assert rest.returncode == 2 and rest.stderr == (
        f"ovq serve: error: 127.0.0.1:{fd_server.http}: address already in use\n"), rest.stderr
    with socket.socket() as other:  # a plain listener, no SO_REUSEPORT
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        taken = serve(fastestdet, "--http-port", str(free), "--grpc-port", str(port), timeout=60)
    assert taken.returncode == 2 and taken.stderr == f"ovq serve: error: 127.0.0.1:{port}: address already in use\n"
    assert not listening(free)
    assert fd_server.proc.poll() is None  # the first server is still the only one, and serving


# ``ovq serve`` with another program taking its gRPC port at a given moment (``when``): a plain listener, no
# SO_REUSEPORT, opened in the same process (to the kernel, as another program's would be)
TAKE_THE_PORT = """
import errno, socket, sys
import ovq.serving.server as server
from ovq.cli import main
from ovq.core.errors import ModelError

when, port = sys.argv[1], int(sys.argv[2])
taken = []

def take():
    other = socket.socket()
    try:
        other.bind(("127.0.0.1", port))
    except OSError as exc:
        print("taking the port:", errno.errorcode[exc.errno], flush=True)
        return
    other.listen()
    taken.append(other)
    print("taking the port: taken", flush=True)

if when == "as-grpc-binds":  # the last moment: ovq has let go of the port, grpc has not bound it yet
    from grpc.aio import _server
    add_port = _server.Server.add_insecure_port
    def add_insecure_port(self, address):
        take()
        return add_port(self, address)
    _server.Server.add_insecure_port = add_insecure_port
else:  # while the models compile
    def served_models(*args, **kwargs):
        take()
        raise ModelError("stopped by the test")
    server.served_models = served_models
sys.exit(main(sys.argv[3:]))
"""


@pytest.mark.parametrize("when", ["while-compiling", "as-grpc-binds"])
def test_the_grpc_port_cannot_be_taken_while_models_compile(fastestdet: Path, when: str) -> None:
    """serve checked the gRPC port and let it go, and grpc bound it after the models compiled: another program could
    take it in between, and serve printed "serving ...", kserve's log lines and grpc's "Failed to add port to
    server" before its one line. Now it holds the port until grpc binds it; in the moment between the two, the same
    one line as a port taken before serve started, and nothing else."""
    http, grpc = free_port(), free_port()
    r = subprocess.run([sys.executable, "-c", TAKE_THE_PORT, when, str(grpc), "serve", str(fastestdet), "-q",
                        "--http-port", str(http), "--grpc-port", str(grpc)],
                       check=False, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 2, r.stderr
    if when == "while-compiling":  # ovq serve holds it: nobody else can
        assert r.stdout == "taking the port: EADDRINUSE\n"
        assert r.stderr == "ovq serve: error: stopped by the test\n"
    else:  # the moment between ovq letting go and grpc's bind: the same one line as a port taken before
        assert r.stdout == "taking the port: taken\n"
        assert r.stderr == f"ovq serve: error: 127.0.0.1:{grpc}: address already in use\n"
    assert not listening(http)


# ``ovq serve`` probed as the models start to compile, from its own process (to the kernel, as another program):
# what another SO_REUSEADDR socket gets binding the REST port, and what the port answers
PROBE_THE_REST_PORT = """
import errno, http.client, socket, sys
import ovq.serving.server as server
from ovq.cli import main

port, compile_models = int(sys.argv[1]), server.served_models

def served_models(*args, **kwargs):
    other = socket.socket()
    other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn, grpc and ovq serve bind
    try:
        other.bind(("127.0.0.1", port))
        print("binding the REST port: bound", flush=True)
    except OSError as exc:
        print("binding the REST port:", errno.errorcode[exc.errno], flush=True)
    other.close()
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/fd/ready"):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("GET", path)
            print("GET", path, conn.getresponse().status, flush=True)
        except OSError as exc:
            print("GET", path, type(exc).__name__, flush=True)
        conn.close()
    return compile_models(*args, **kwargs)

server.served_models = served_models
sys.exit(main(sys.argv[2:]))
"""


def get_status(port: int, path: str, timeout: float = 10) -> int | str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except OSError as exc:
        return type(exc).__name__
    finally:
        conn.close()


@pytest.mark.slow
def test_the_rest_port_listens_and_says_not_ready_while_models_compile(fastestdet: Path) -> None:
    """The REST port was bound and not listening until the models had compiled: another program that binds with
    SO_REUSEADDR (as uvicorn and grpc do) could take it meanwhile, and a client's connection was refused. Now it
    listens from the start, live and not ready (503, as kserve says it) until kserve's server takes over, and a
    client that asks all along never meets a refused or dropped connection, from the first answer to the last."""
    http_port, grpc_port = free_port(), free_port()
    proc = subprocess.Popen([sys.executable, "-c", PROBE_THE_REST_PORT, str(http_port), "serve", str(fastestdet),
                             "--name", "fd", "-q", "--http-port", str(http_port), "--grpc-port", str(grpc_port)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    asked: list[int | str] = []

    def ask_all_along() -> None:  # from before serve binds the port to the first 200
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and 200 not in asked:
            asked.append(get_status(http_port, "/v2/health/ready"))
            time.sleep(0.01)

    asker = threading.Thread(target=ask_all_along, daemon=True)
    asker.start()
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        asker.join(150)
        deadline = time.monotonic() + 10
        while len(lines) < 5 and time.monotonic() < deadline:  # "serving ..." came before the first 200
            time.sleep(0.05)
        assert lines[:4] == ["binding the REST port: EADDRINUSE\n", "GET /v2/health/live 200\n",
                             "GET /v2/health/ready 503\n", "GET /v2/models/fd/ready 503\n"]
        assert lines[4].startswith("serving http://127.0.0.1:")
        answered = asked[next(i for i, a in enumerate(asked) if isinstance(a, int)):]
        assert answered[-1] == 200 and 503 in answered  # the compile takes a second or more: it was seen
        assert answered == [503] * answered.index(200) + [200], sorted(set(map(str, answered)))
        assert get_status(http_port, "/v2/health/live") == 200
    finally:
        proc.kill()
        proc.wait(10)
    assert not listening(http_port)


# tritonclient's gRPC client asking ``ovq serve``'s gRPC port (its own process: its protos and kserve's share names)
ASK_THE_GRPC_PORT = """
import sys
import numpy as np
import tritonclient.grpc as tg
from tritonclient.utils import InferenceServerException

client = tg.InferenceServerClient(f"127.0.0.1:{sys.argv[1]}")
image = tg.InferInput("images", [1, 352, 352, 3], "UINT8")
image.set_data_from_numpy(np.zeros((1, 352, 352, 3), np.uint8))  # more than a connection's first window
for what, ask in (("live", client.is_server_live), ("ready", client.is_server_ready),
                  ("model ready", lambda **kw: client.is_model_ready("fd", **kw)),
                  ("infer", lambda **kw: client.infer("fd", [image], **kw)), ("live", client.is_server_live)):
    try:
        print(what, ask(client_timeout=10), flush=True)
    except InferenceServerException as exc:
        print(what, exc.status(), exc.message(), flush=True)
"""

# ``ovq serve`` with that client asking as the models start to compile
PROBE_THE_GRPC_PORT = """
import subprocess, sys
import ovq.serving.server as server
from ovq.cli import main

port, compile_models = sys.argv[1], server.served_models

def served_models(*args, **kwargs):
    subprocess.run([sys.executable, "-c", sys.argv[2], port], check=True, timeout=120)
    return compile_models(*args, **kwargs)

server.served_models = served_models
sys.exit(main(sys.argv[3:]))
"""


@pytest.mark.slow
def test_the_grpc_port_answers_not_ready_while_models_compile(fastestdet: Path) -> None:
    """A gRPC client that connected while the models compiled waited in the port's backlog, unanswered, until the
    compile ended (or its deadline: DEADLINE_EXCEEDED), where the REST port answered 503 at once. Now the same
    answers as the REST port's: live, and UNAVAILABLE "not ready" for the rest (what ovq's client and tritonclient's
    callers wait on), each connection then sent away (GOAWAY); once grpc has the port the server answers ready."""
    import tritonclient.grpc as tg
    from tritonclient.utils import InferenceServerException

    http_port, grpc_port = free_port(), free_port()
    proc = subprocess.Popen([sys.executable, "-c", PROBE_THE_GRPC_PORT, str(grpc_port), ASK_THE_GRPC_PORT, "serve",
                             str(fastestdet),
                             "--name", "fd", "-q", "--http-port", str(http_port), "--grpc-port", str(grpc_port)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    try:
        lines = [proc.stdout.readline() for _ in range(6)]
        unavailable = "StatusCode.UNAVAILABLE Server is not ready. Its models are loading.\n"
        assert lines[:5] == ["live True\n", f"ready {unavailable}", f"model ready {unavailable}",
                             f"infer {unavailable}", "live True\n"]
        assert lines[5].startswith("serving http://127.0.0.1:")
        client, ready = tg.InferenceServerClient(f"127.0.0.1:{grpc_port}"), False
        for _ in range(300):  # "serving" is printed once grpc has bound the port, before it starts serving
            with contextlib.suppress(InferenceServerException):
                ready = client.is_server_ready(client_timeout=10)
            if ready:
                break
            time.sleep(0.1)
        assert ready and client.is_model_ready("fd", client_timeout=10)
        client.close()
    finally:
        proc.kill()
        proc.wait(10)
    assert not listening(grpc_port)


def test_the_grpc_port_answers_until_grpc_binds_it() -> None:
    """What bind_listeners leaves on the gRPC port: live, UNAVAILABLE 'not ready' to the rest, each connection then
    sent away (the same client's next call is answered on a new one), something not HTTP/2 closed; once let go of,
    the port is free for grpc to bind."""
    import tritonclient.grpc as tg
    from tritonclient.utils import InferenceServerException

    from ovq.serving.listen import bind_listeners

    grpc_port = free_port()
    listeners = bind_listeners("127.0.0.1", free_port(), grpc_port)
    try:
        client = tg.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        assert client.is_server_live(client_timeout=10)
        with pytest.raises(InferenceServerException) as err:
            client.is_server_ready(client_timeout=10)
        assert (err.value.status(), err.value.message()) == ("StatusCode.UNAVAILABLE",
                                                             "Server is not ready. Its models are loading.")
        assert client.is_server_live(client_timeout=10)
        client.close()
        with socket.create_connection(("127.0.0.1", grpc_port), timeout=10) as junk:
            junk.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            assert junk.recv(100) == b""  # closed, and the port answers on
        listeners.release_grpc()
        with socket.socket() as grpc_binds:
            grpc_binds.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            grpc_binds.bind(("127.0.0.1", grpc_port))
    finally:
        listeners.close()


def test_the_path_of_a_grpc_call_is_read_as_clients_encode_it() -> None:
    from ovq.serving.grpc_starting import SERVER_LIVE, _hpack_int, _read_int, request_path

    live = SERVER_LIVE.encode()
    grpc_core = b"@\x05:path" + bytes([len(live)]) + live + b"\x83\x86"  # literal, incremental indexing: grpcio's
    assert request_path(grpc_core) == SERVER_LIVE
    assert request_path(b"\x3f\xe1\x1f" + b"\x84") == "/"  # a table size update (4096), then static ':path: /'
    assert request_path(b"\x04" + bytes([len(live)]) + live) == SERVER_LIVE  # without indexing, the static name
    assert request_path(b"\x44\x82\x62\x51") is None  # a broken Huffman code ('/f', then padding 0001): UNAVAILABLE
    assert request_path(b"\x83\x86") is None
    assert request_path(b"\x40\x01x\x01y\x40\x05:path\x02/a") == "/a"
    for n in (0, 14, 15, 126, 127, 128, 4096, 70000):
        assert _read_int(_hpack_int(n, 7), 0, 7) == (n, len(_hpack_int(n, 7)))


def _huffman(text: str) -> bytes:
    """``text`` Huffman-coded with the code :mod:`ovq.serving.huffman` decodes (padded with EOS's first bits)."""
    from ovq.serving.huffman import code_table

    codes = {symbol: (length, code) for (length, code), symbol in code_table().items()}
    bits = "".join(format(codes[b][1], f"0{codes[b][0]}b") for b in text.encode())
    bits += "1" * (-len(bits) % 8)
    return int(bits, 2).to_bytes(len(bits) // 8, "big")


# RFC 7541 appendix C.4 (requests) and C.6 (responses): Huffman-coded literals and what they decode to
RFC_HUFFMAN = [
    ("f1e3c2e5f23a6ba0ab90f4ff", "www.example.com"), ("a8eb10649cbf", "no-cache"), ("25a849e95ba97d7f", "custom-key"),
    ("25a849e95bb8e8b4bf", "custom-value"), ("6402", "302"), ("aec3771a4b", "private"), ("640eff", "307"),
    ("d07abe941054d444a8200595040b8166e082a62d1bff", "Mon, 21 Oct 2013 20:13:21 GMT"),
    ("9d29ad171863c78f0b97c8e9ae82ae43d3", "https://www.example.com"), ("9bd9ab", "gzip"),
    ("94e7821dd7f2e6c7b335dfdfcd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007",
     "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"),
]


def test_hpack_huffman_decodes_the_rfc_examples_and_its_codes_are_the_rfcs() -> None:
    from ovq.serving.huffman import CODE_LENGTHS, EOS, code_table, huffman_decode

    for coded, text in RFC_HUFFMAN:
        assert huffman_decode(bytes.fromhex(coded)) == text.encode()
    codes = {symbol: (length, code) for (length, code), symbol in code_table().items()}
    assert len(codes) == 257 and sum(2 ** (30 - n) for n in CODE_LENGTHS) == 2 ** 30  # a complete prefix code
    # appendix B's codes, one or more of every length from 5 to 30 bits
    rfc = {ord("0"): (5, 0x0), ord("t"): (5, 0x9), ord(" "): (6, 0x14), ord("_"): (6, 0x22), ord(":"): (7, 0x5c),
           ord("z"): (7, 0x7b), ord("&"): (8, 0xf8), ord("Z"): (8, 0xfd), ord("?"): (10, 0x3fc), ord("|"): (11, 0x7fc),
           ord(">"): (12, 0xffb), 0: (13, 0x1ff8), ord("~"): (13, 0x1ffd), ord("}"): (14, 0x3ffd),
           ord("{"): (15, 0x7ffe), ord("\\"): (19, 0x7fff0), 208: (19, 0x7fff2), 128: (20, 0xfffe6),
           226: (20, 0xfffed), 153: (21, 0x1fffdc), 230: (21, 0x1fffe8), 129: (22, 0x3fffd2), 233: (22, 0x3fffeb),
           1: (23, 0x7fffd8), 239: (23, 0x7ffff4), 9: (24, 0xffffea), 237: (24, 0xfffff5), 199: (25, 0x1ffffec),
           235: (25, 0x1ffffef), 192: (26, 0x3ffffe0), 255: (26, 0x3ffffee), 203: (27, 0x7ffffde),
           254: (27, 0x7fffff0), 2: (28, 0xfffffe2), 249: (28, 0xffffffe), 10: (30, 0x3ffffffc),
           22: (30, 0x3ffffffe), EOS: (30, 0x3fffffff)}
    assert {symbol: codes[symbol] for symbol in rfc} == rfc
    for broken in ("f1e3c2e5f23a6ba0ab90f4ffff",  # padding of 8 bits and more
                   "f1e3c2e5f23a6ba0ab90f4fe",  # padding that is not EOS's first bits
                   "ffffffff"):  # EOS inside the string
        with pytest.raises(ValueError):
            huffman_decode(bytes.fromhex(broken))


def test_a_grpc_path_sent_huffman_coded_is_read() -> None:
    """grpc-go (and OkHttp) send ':path' Huffman-coded when that is shorter: a Go client's ServerLive, while the models
    compiled, was answered UNAVAILABLE as if the server were down (a liveness probe on it failed, and restarted the
    server, for as long as the compile took). The RFC's own examples, and a live ServerLive over a socket."""
    from ovq.serving import grpc_starting as h2
    from ovq.serving.grpc_starting import SERVER_LIVE, request_path

    assert request_path(bytes.fromhex("828684418cf1e3c2e5f23a6ba0ab90f4ff")) == "/"  # C.4.1
    c43 = "828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf"  # C.4.3: huffman literals, then the static /index.html
    assert request_path(bytes.fromhex(c43)) == "/index.html"
    live = _huffman(SERVER_LIVE)
    assert len(live) < len(SERVER_LIVE)  # so a Go client codes it
    block = b"\x83\x86" + b"\x44" + bytes([0x80 | len(live)]) + live  # :path with the static name, incremental indexing
    assert request_path(block) == SERVER_LIVE
    ours, theirs = socket.socketpair()
    with ours, theirs:
        server = threading.Thread(target=h2.answer_grpc, args=(ours,))
        server.start()
        theirs.sendall(h2.PREFACE + h2.frame(h2.SETTINGS, 0, 0) + h2.frame(h2.HEADERS, h2.END_HEADERS | h2.END_STREAM, 1,
                                                                          block))
        theirs.settimeout(10)
        got = b""
        while chunk := theirs.recv(65536):
            got += chunk
        server.join(10)
    assert h2.frame(h2.DATA, 0, 1, b"\0\0\0\0\x02\x08\x01") in got  # ServerLiveResponse {live: true}, not UNAVAILABLE
    assert b"grpc-status\x010" in got


def test_the_rest_port_answers_until_its_server_takes_it_over() -> None:
    """What bind_listeners leaves on the REST port: answers (a body read first, a request that is not HTTP closed),
    then, once told to stop, connections that wait in the backlog for the server that accepts next."""
    from ovq.serving.listen import bind_listeners

    http_port = free_port()
    listeners = bind_listeners("127.0.0.1", http_port, free_port())
    try:
        assert [get_status(http_port, p) for p in ("/v2/health/live/", "/v2/health/ready", "/v2/models/x")] == [
            200, 503, 503]
        conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
        conn.request("POST", "/v2/models/fd/infer", body=b"\0" * NBYTES, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        assert (r.status, json.loads(r.read())) == (503, {"error": "Server is not ready. Its models are loading."})
        conn.close()
        with socket.create_connection(("127.0.0.1", http_port), timeout=10) as junk:
            junk.sendall(b"\x16\x03\x01 not HTTP")
            junk.shutdown(socket.SHUT_WR)
            assert junk.recv(100) == b""  # closed, and the port answers on
        assert get_status(http_port, "/v2/health/live") == 200
        listeners.stop_answering()
        with socket.create_connection(("127.0.0.1", http_port), timeout=10) as client:
            client.sendall(b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n")
            listeners.http.settimeout(10)
            accepted, _ = listeners.http.accept()  # as the REST server accepts, once it has taken over
            with accepted:
                assert accepted.recv(100).startswith(b"GET /v2/health/ready HTTP/1.1")
    finally:
        listeners.close()
    assert not listening(http_port)


def test_no_client_asking_during_the_hand_over_is_dropped_or_left_hanging() -> None:
    """The answers ran on asyncio, whose server accepted a connection and made its transport on the loop's next turn:
    stopping in between reset the connection (RemoteDisconnected) or left it open, unanswered, until the client timed
    out (35 of 60 hand-overs with 8 clients asking, 2-core Xeon). Now every connection gets an answer: the 503 from
    what answers while the models load, or the server's that accepts from the backlog after."""
    from ovq.serving.listen import bind_listeners

    failed = []
    for trial in range(12):
        port = free_port()
        listeners = bind_listeners("127.0.0.1", port, free_port())
        asked: list[int | str] = []
        clients_stop, server_stop = threading.Event(), threading.Event()

        def ask(port: int = port, asked: list[int | str] = asked, stop: threading.Event = clients_stop) -> None:
            while not stop.is_set():
                asked.append(get_status(port, "/v2/health/ready", timeout=3))

        def take_over(sock: socket.socket = listeners.http, stop: threading.Event = server_stop) -> None:
            sock.settimeout(0.2)  # the server that accepts next: 200 to each request in the backlog
            while not stop.is_set():
                try:
                    conn, _ = sock.accept()
                except OSError:
                    continue
                with conn:
                    conn.settimeout(3)
                    with contextlib.suppress(OSError):
                        conn.recv(4096)
                        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")

        clients = [threading.Thread(target=ask) for _ in range(8)]
        try:
            for t in clients:
                t.start()
            time.sleep(0.05 + 0.01 * (trial % 5))
            listeners.stop_answering()
            server = threading.Thread(target=take_over)
            server.start()
            time.sleep(0.1)
            clients_stop.set()
            for t in clients:
                t.join()
            server_stop.set()
            server.join()
        finally:
            listeners.close()
        failed += [a for a in asked if a not in (200, 503)]
    assert not failed, failed


@pytest.mark.parametrize(("args", "message"), [
    (("--host", "999.1.1.1"), "999.1.1.1:{http}: cannot resolve the host"),
    (("--host", "nosuchhost.invalid"), "nosuchhost.invalid:{http}: cannot resolve the host"),
    (("--host", "10.1.2.3"), "10.1.2.3:{http}: not an address of this machine"),
    (("--name", ""), "model name '': use letters"),
    (("--name", "a/b"), "model name 'a/b': use letters"),
])
def test_bad_host_or_name_is_one_line(fastestdet: Path, args: tuple[str, ...], message: str) -> None:
    http = free_port()
    r = serve(fastestdet, *args, "--http-port", str(http), "--grpc-port", str(free_port()), timeout=60)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and message.format(http=http) in r.stderr, r.stderr


DEMO_MODEL = ROOT / "data" / "demo_model"  # the shipped IR: compiled in a moment, nothing converted


@pytest.mark.slow
@pytest.mark.parametrize("flag", ["-q", "", "-vv"], ids=["quiet", "default", "debug"])
def test_serve_logs_what_its_flags_ask_for(tmp_path: Path, flag: str) -> None:
    """`ovq serve MODEL -q` printed kserve's and uvicorn's INFO lines, in kserve's own format, at start and at the
    end (kserve configures its logging when the model server is made, unless its logger has a handler). Now the
    command's -q/-v decide for them as for ovq's own lines, in ovq's format: -q leaves the 'serving' line alone,
    the default adds the servers' start and stop, -vv a line per request too."""
    http_port, grpc_port = free_port(), free_port()
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "ovq", "serve", str(DEMO_MODEL), "--name", "demo",
                                 "--http-port", str(http_port), "--grpc-port", str(grpc_port), *filter(None, [flag])],
                                stdout=stdout, stderr=stderr, cwd=ROOT)
    try:
        deadline = time.monotonic() + 120
        while get_status(http_port, "/v2/models/demo/ready") != 200 and time.monotonic() < deadline:
            assert proc.poll() is None, err.read_text()
            time.sleep(0.1)
        # a request answered through kserve's JSON response: FastAPI warned about it (ORJSONResponse), even with -q
        assert get_status(http_port, "/v2/models/demo") == 200
        proc.send_signal(signal.SIGTERM)  # as systemd stops it: the servers' shutdown lines too
        assert proc.wait(60) == 0, err.read_text()
    finally:
        proc.kill()
        proc.wait(10)
    served = f"serving http://127.0.0.1:{http_port}/v2/models/demo  grpc://127.0.0.1:{grpc_port}/v2/models/demo\n"
    assert out.read_text() == served
    logged = [line for line in err.read_text().splitlines() if not line.startswith(" ")]
    infos = [line for line in logged if "INFO" in line]
    requests = [line for line in infos if '"GET /v2/models/demo/ready HTTP/1.1" 200' in line]
    if flag == "-q":
        assert err.read_text() == ""
    else:
        assert any(line.endswith(" INFO kserve: Registering model: demo") for line in infos), "\n".join(infos)
        assert any(line.endswith(f" INFO uvicorn.error: Finished server process [{proc.pid}]") for line in infos)
        assert bool(requests) == (flag == "-vv"), "\n".join(infos)


def test_ipv6_host_is_printed_in_brackets(fastestdet: Path) -> None:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    http, grpc = free_port(), free_port()
    proc = subprocess.Popen([sys.executable, "-m", "ovq", "serve", str(fastestdet), "--host", "::1", "--http-port",
                             str(http), "--grpc-port", str(grpc), "-q"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    try:
        line = proc.stdout.readline()
    finally:
        proc.kill()
        proc.wait(10)
    assert line.split() == ["serving", f"http://[::1]:{http}/v2/models/FastestDet",
                            f"grpc://[::1]:{grpc}/v2/models/FastestDet"]


# -- what it answers ----------------------------------------------------------------------------------------
def post(srv: OvqServe, body: bytes, headers: dict[str, str], path: str = "/infer") -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.http, timeout=60)
    try:
        conn.request("POST", f"/v2/models/{srv.name}{path}", body=body, headers=headers)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def binary(header: dict, data: bytes) -> tuple[bytes, dict[str, str]]:
    head = json.dumps(header).encode()
    return head + data, {"Inference-Header-Content-Length": str(len(head)), "Content-Type": "application/octet-stream"}


def frame(name: str = "input.1", size: int = NBYTES) -> dict:
    return {"name": name, "shape": INPUT, "datatype": "UINT8", "parameters": {"binary_data_size": size}}


JSON = {"Content-Type": "application/json"}


@pytest.mark.slow
@pytest.mark.parametrize(("body", "headers", "error"), [
    # a wrong input name was served (JSON and binary)
    (json.dumps({"inputs": [{"name": "wrong", "shape": INPUT, "datatype": "UINT8", "data": [0] * NBYTES}]}),
     JSON, "unknown input 'wrong'; the model takes input 'input.1' UINT8 [1, 352, 352, 3]"),
    (binary({"inputs": [frame("wrong")]}, bytes(NBYTES)), None, "unknown input 'wrong'; the model takes input"),
    # the binary fast path ignored the outputs asked for
    (binary({"inputs": [frame()], "outputs": [{"name": "nope"}]}, bytes(NBYTES)), None, "unknown output 'nope'"),
    # client mistakes that were 500s
    (b"xxxx", {"Inference-Header-Content-Length": "abc"}, "Inference-Header-Content-Length 'abc' is not a number"),
    # a superscript two (byte 0xB2) passed str.isdigit, then int() failed: HTTP 500 and a traceback in the log
    (b"xxxx", {"Inference-Header-Content-Length": "\u00b2"}, "Inference-Header-Content-Length '\u00b2' is not a number"),
    (json.dumps({"inputs": [{"name": "input.1", "shape": INPUT, "datatype": "UINT8", "data": [0]}]}), JSON,
     "its data does not fit UINT8 [1, 352, 352, 3]"),
    (json.dumps({"inputs": [{"name": "input.1", "shape": INPUT, "datatype": "UINT8", "data": [300] * NBYTES}]}),
     JSON, "its data does not fit UINT8"),
    # the size was reported as the expected shape ("got UINT8 [1, 352, 352, 3]")
    (binary({"inputs": [frame(size=-5)]}, bytes(NBYTES)), None, "binary_data_size -5 is not a size in bytes"),
    (binary({"inputs": [frame(size=NBYTES - 1)]}, bytes(NBYTES - 1)), None,
     f"binary_data_size {NBYTES - 1} is wrong; UINT8 [1, 352, 352, 3] is {NBYTES} bytes"),
    # bytes beyond what the header declares were ignored
    (binary({"inputs": [frame()]}, bytes(NBYTES + 5)), None, f"binary_data_size says {NBYTES}"),
], ids=["json-name", "binary-name", "binary-output", "header-length", "header-length-2", "json-shape", "json-300",
        "size-negative", "size-short", "body-longer"])
def test_requests_that_do_not_fit_are_400_and_one_log_line(fd_server: OvqServe, body, headers, error) -> None:
    before = fd_server.log.read_text()
    if headers is None:
        body, headers = body
    status, _, answer = post(fd_server, body.encode() if isinstance(body, str) else body, headers)
    assert status == 400, answer[:300]
    assert error in json.loads(answer)["error"]
    time.sleep(0.2)
    logged = fd_server.log.read_text()[len(before):]
    assert logged.count("\n") == 1 and "Traceback" not in logged, logged


@pytest.mark.slow
def test_binary_requests_get_what_they_ask_for(fd_server: OvqServe) -> None:
    status, headers, answer = post(fd_server, *binary({"inputs": [frame()], "outputs": [
        {"name": "758", "parameters": {"binary_data": False}}]}, bytes(NBYTES)))
    assert status == 200 and "inference-header-content-length" not in headers
    (out,) = json.loads(answer)["outputs"]
    assert out["name"] == "758" and out["shape"] == [1, 85, 22, 22] and len(out["data"]) == 85 * 22 * 22
    # tritonclient's HTTP client sends a BYTES input binary by default: the ovq metadata request was a 400
    status, _, answer = post(fd_server, *binary({"inputs": [
        {"name": "ovq_info", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 5}}]},
        b"\x01\x00\x00\x00?"))
    assert status == 200, answer
    (out,) = json.loads(answer)["outputs"]
    assert json.loads(out["data"][0])["family"] == "fastestdet"


@pytest.mark.slow
def test_request_size_is_limited_by_the_model_input(fd_server: OvqServe) -> None:
    """A 1.5 GB body (a binary header declaring one frame, then 1.5 GB) was answered 200 and the server's RSS
    went from 0.27 to 3.6 GB; now a declared length over the limit is 413 before a byte is read, and a chunked
    body is cut at the limit."""
    conn = http.client.HTTPConnection("127.0.0.1", fd_server.http, timeout=30)
    conn.putrequest("POST", "/v2/models/fd/infer")
    conn.putheader("Content-Length", str(1_500_000_000))
    conn.putheader("Inference-Header-Content-Length", "120")
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 413 and "at most" in json.loads(response.read())["error"]
    conn.close()
    rss = rss_mb(fd_server.proc.pid)
    answer = b""
    with socket.create_connection(("127.0.0.1", fd_server.http), timeout=30) as sock:
        sock.sendall(b"POST /v2/models/fd/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b"0, " * 100_000  # JSON a chunk at a time, far beyond six bytes a value of FastestDet's input
        try:
            for _ in range(1000):  # 300 MB unless the server stops reading
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except OSError:  # the server answered and closed while the body was still coming
            pass
        try:
            answer = sock.recv(4096)
        except OSError:
            pass
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert rss_mb(fd_server.proc.pid) - rss < 100


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.slow
def test_grpc_errors_keep_their_status(fd_server: OvqServe) -> None:
    """Every gRPC error came back UNKNOWN: kserve's exception-to-status interceptor was not installed."""
    import tritonclient.grpc as triton

    client = triton.InferenceServerClient(f"127.0.0.1:{fd_server.grpc}")

    def status(model: str, name: str, shape: list[int]) -> str:
        item = triton.InferInput(name, shape, "UINT8")
        item.set_data_from_numpy(np.zeros(shape, np.uint8))
        with pytest.raises(triton.InferenceServerException) as err:
            client.infer(model, [item], client_timeout=30)
        return f"{err.value.status()} {err.value.message()}"

    assert status("fd", "wrong", INPUT).startswith("StatusCode.INVALID_ARGUMENT unknown input 'wrong'")
    assert status("nope", "input.1", INPUT).startswith("StatusCode.NOT_FOUND")
    assert status("fd", "input.1", [1, 10, 10, 3]).startswith("StatusCode.INVALID_ARGUMENT the model takes")
    assert "Traceback" not in fd_server.log.read_text()
    client.close()


def test_a_child_forked_while_the_grpc_port_is_held_does_not_keep_it() -> None:
    """OpenVINO's telemetry forks a child for each event while a model converts (21 for FastestDet's ONNX): a copy of
    the held socket in one that outlives the compile kept the port listening after serve let go of it."""
    import os

    from ovq.serving.listen import hold

    port = free_port()
    held = hold(socket.AF_INET, "127.0.0.1", port)
    ready, done = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its fork hooks have run; it lives on past the parent's bind below
        os.write(done, b"x")
        time.sleep(2)
        os._exit(0)
    try:
        assert os.read(ready, 1) == b"x"
        held.close()
        with socket.socket() as grpc:  # as grpc binds it: SO_REUSEADDR, listening
            grpc.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            grpc.bind(("127.0.0.1", port))
            grpc.listen()
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        os.close(ready)
        os.close(done)


def test_the_rest_port_answers_with_descriptors_past_1024(tmp_path) -> None:
    """select.select refuses a descriptor past 1024 (a server holding many files: models, logs, clients); the
    answers while the models load wait with epoll instead."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        if hard != resource.RLIM_INFINITY and hard < 1200:
            pytest.skip(f"at most {hard} open files here")
        resource.setrlimit(resource.RLIMIT_NOFILE, (1200, hard))
    from ovq.serving.listen import bind_listeners

    held = []
    try:
        with (tmp_path / "f").open("w") as f:  # every descriptor up to 1030 taken: the sockets get higher ones
            while not held or held[-1] < 1030:
                held.append(os.dup(f.fileno()))
        held.append(os.open(os.devnull, os.O_RDONLY))  # the one the file had
        port = free_port()
        listeners = bind_listeners("127.0.0.1", port, free_port())
        try:
            assert listeners.http.fileno() > 1024 and listeners.answers is not None
            assert get_status(port, "/v2/health/ready", timeout=5) == 503
        finally:
            listeners.close()
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
