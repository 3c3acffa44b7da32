"""What ``ovq serve``'s gRPC port answers while the models compile, before grpc binds it.

The port is held, listening, from the start (:mod:`~ovq.serving.listen`); a client that connected meanwhile waited
in its backlog, unanswered, for as long as the compile took (tritonclient's ``is_server_ready()`` until its
deadline, or for good without one). Until grpc takes the port, each connection gets one answer, as the REST port
gives it (:mod:`~ovq.serving.starting`): ``ServerLive`` is ``live: true`` (the process is up), every other call
``UNAVAILABLE`` "Server is not ready. Its models are loading." (what ovq's client and tritonclient's callers retry;
``ready: false`` would make ovq's client give up on a model that is only loading). Then ``GOAWAY``: the client's
next call opens a new connection, which meets grpc once it has the port.

Only the HTTP/2 (RFC 9113) that one answer takes: the connection's settings and pings acknowledged, the request's
``:path`` read from its header block (RFC 7541), plain as grpc's C core (under grpcio and tritonclient) sends it, or
Huffman-coded as grpc-go and OkHttp do (:mod:`~ovq.serving.huffman`): a Go client's ``ServerLive`` was answered
``UNAVAILABLE``, and a liveness check built on it failed for as long as the models compiled.
"""

from __future__ import annotations

import logging
import socket

from ovq.serving.huffman import huffman_decode
from ovq.serving.starting import BODY_DRAINED, HEAD_LIMIT, NOT_READY

logger = logging.getLogger(__name__)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, SETTINGS, PING, GOAWAY, CONTINUATION = 0, 1, 4, 6, 7, 9
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY = 0x1, 0x1, 0x4, 0x8, 0x20
MAX_FRAME = 16384  # the frame size a peer may send without being told more (SETTINGS_MAX_FRAME_SIZE's default)
SERVER_LIVE = "/inference.GRPCInferenceService/ServerLive"
UNAVAILABLE = 14
DRAIN_S = 2.0  # how long what the client still sends is read after the answer, before closing


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return len(payload).to_bytes(3, "big") + bytes((kind, flags)) + stream.to_bytes(4, "big") + payload


def _hpack_int(value: int, bits: int, first: int = 0) -> bytes:
    """``value`` as an HPACK integer with a ``bits``-bit prefix, ``first`` holding the byte's other bits."""
    top = (1 << bits) - 1
    if value < top:
        return bytes((first | value,))
    out, value = bytearray((first | top,)), value - top
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    return bytes(out) + bytes((value,))


def _field(name: str, value: str) -> bytes:
    """A literal header field without indexing, its name and value plain (no Huffman code)."""
    return b"\x00" + b"".join(_hpack_int(len(s), 7) + s for s in (name.encode(), value.encode()))


STATUS_200 = b"\x88"  # the static table's ':status: 200'
GRPC_HEADERS = STATUS_200 + _field("content-type", "application/grpc")


def answer(stream: int, path: str | None) -> bytes:
    """The frames that answer the call on ``stream`` to ``path``, the connection's ``GOAWAY`` last."""
    if path == SERVER_LIVE:  # ServerLiveResponse {live: true}, in gRPC's length-prefixed framing
        out = (frame(HEADERS, END_HEADERS, stream, GRPC_HEADERS) + frame(DATA, 0, stream, b"\0\0\0\0\x02\x08\x01")
               + frame(HEADERS, END_HEADERS | END_STREAM, stream, _field("grpc-status", "0")))
    else:  # trailers only
        out = frame(HEADERS, END_HEADERS | END_STREAM, stream, GRPC_HEADERS + _field("grpc-status", str(UNAVAILABLE))
                    + _field("grpc-message", NOT_READY))
    return out + frame(GOAWAY, 0, 0, stream.to_bytes(4, "big") + bytes(4))  # NO_ERROR: later calls, elsewhere


def _read_int(block: bytes, i: int, bits: int) -> tuple[int, int]:
    top = (1 << bits) - 1
    value, i = block[i] & top, i + 1
    if value < top:
        return value, i
    shift = 0
    while True:
        byte, i = block[i], i + 1
        value += (byte & 127) << shift
        shift += 7
        if not byte & 128:
            return value, i


def _read_str(block: bytes, i: int) -> tuple[str | None, int]:
    """A string literal (``None`` when its Huffman code is broken: that call is answered ``UNAVAILABLE``) and where
    the next field starts."""
    huffman = block[i] & 0x80
    length, i = _read_int(block, i, 7)
    if i + length > len(block):
        raise ValueError("a header string past the end of its block")
    text = block[i:i + length]
    if huffman:
        try:
            text = huffman_decode(text)
        except ValueError:
            return None, i + length
    return text.decode("latin-1"), i + length


STATIC_PATHS = {4: "/", 5: "/index.html"}  # the static table's ':path' entries (RFC 7541, appendix A)


def request_path(block: bytes) -> str | None:
    """The ``:path`` in a request's HPACK header block, or ``None`` (absent, or not decodable)."""
    added: list[tuple[str | None, str | None]] = []  # this block's own dynamic table entries, newest first
    i = 0
    while i < len(block):
        byte = block[i]
        if byte & 0xE0 == 0x20:  # a dynamic table size update
            _, i = _read_int(block, i, 5)
            continue
        if byte & 0x80:  # indexed
            index, i = _read_int(block, i, 7)
            name, value = _entry(index, added)
        else:  # literal: with incremental indexing (01), without (0000) or never indexed (0001)
            index, i = _read_int(block, i, 6 if byte & 0x40 else 4)
            if index:
                name = _entry(index, added)[0]
            else:
                name, i = _read_str(block, i)
            value, i = _read_str(block, i)
            if byte & 0x40:
                added.insert(0, (name, value))
        if name == ":path":
            return value
    return None


def _entry(index: int, added: list[tuple[str | None, str | None]]) -> tuple[str | None, str | None]:
    if index in STATIC_PATHS:
        return ":path", STATIC_PATHS[index]
    if index > 61 and index - 62 < len(added):
        return added[index - 62]
    return None, None  # another static entry, or one of an earlier block (there is none: one call a connection)


class _Frames:
    def __init__(self, conn: socket.socket) -> None:
        self.conn, self.buffer = conn, b""

    def exact(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.conn.recv(65536)
            if not chunk:
                raise EOFError
            self.buffer += chunk
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def next(self) -> tuple[int, int, int, bytes]:
        head = self.exact(9)
        length = int.from_bytes(head[:3], "big")
        if length > MAX_FRAME:
            raise ValueError(f"a frame of {length} bytes")
        return head[3], head[4], int.from_bytes(head[5:], "big") & 0x7FFFFFFF, self.exact(length)


def answer_grpc(conn: socket.socket) -> None:
    """One gRPC call on ``conn`` answered (see the module's docstring), then the connection closed."""
    conn.setblocking(True)
    conn.settimeout(10.0)
    frames = _Frames(conn)
    try:
        if frames.exact(len(PREFACE)) != PREFACE:
            return  # not HTTP/2
        conn.sendall(frame(SETTINGS, 0, 0))
        block, stream = b"", 0
        while True:
            kind, flags, sid, payload = frames.next()
            if kind in (SETTINGS, PING) and not flags & ACK:
                conn.sendall(frame(kind, ACK, 0, payload if kind == PING else b""))
            elif kind == GOAWAY:
                return
            elif kind == HEADERS or (kind == CONTINUATION and stream):
                if kind == HEADERS:
                    stream, payload = sid, _unpadded(flags, payload)
                block += payload
                if len(block) > HEAD_LIMIT:
                    return
                if flags & END_HEADERS:
                    break
        path = request_path(block)
        conn.sendall(answer(stream, path))
        logger.debug("gRPC %s while the models load: %s", path, "live" if path == SERVER_LIVE else "UNAVAILABLE")
        # what the client still sends (the request's message, its acknowledgements) is read until it closes: a
        # socket closed with unread data resets the connection, and the client could lose the answer
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(DRAIN_S)
        drained = 0
        while drained < BODY_DRAINED:
            chunk = conn.recv(65536)
            if not chunk:
                break
            drained += len(chunk)
    except (EOFError, TimeoutError):
        return
    except (OSError, ValueError, IndexError) as exc:
        logger.debug("a gRPC request while the models load: %s", exc or type(exc).__name__)


def _unpadded(flags: int, payload: bytes) -> bytes:
    """A HEADERS frame's header block fragment: its padding and priority fields dropped."""
    if flags & PADDED:
        pad, payload = payload[0], payload[1:]
        payload = payload[:len(payload) - pad]
    return payload[5:] if flags & PRIORITY else payload
