"""What ``ovq serve``'s REST port answers while the models compile, before kserve's server takes the port over.

The port listens from the moment ovq binds it (:func:`~ovq.serving.listen.bind_listeners`): a socket that is only
bound keeps out only programs that bind without ``SO_REUSEADDR``. Until the models are ready, a client is answered as
kserve answers for a server that is up with models not ready, rather than left waiting in the backlog for as long as
the compile takes: ``/v2/health/live`` is 200 ``{"live": true}`` (the process is up: a liveness probe does not
restart it in the middle of a compile), anything else 503 ``{"error": "Server is not ready. ..."}``, which
tritonclient reads as not ready and ovq's client as a server to wait for. Connections that arrive after
:meth:`StartingAnswers.stop`, before the REST server accepts, wait in the socket's backlog and are served by it.
"""

from __future__ import annotations

import json
import logging
import selectors
import socket
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)

HEAD_LIMIT = 64 * 1024  # a request line and headers (kserve's limit is uvicorn's: h11 takes 64 KiB too)
BODY_DRAINED = 1 << 22  # a body up to 4 MiB is read before the answer (a client still sending would be reset)
NOT_READY = "Server is not ready. Its models are loading."
MAX_ANSWERING = 32  # connections answered at once; more wait in the backlog (a compile's probes are a few)  # kserve's ServerNotReady, with the reason


class StartingAnswers:
    """Answer HTTP requests on ``copy``, a copy (``dup``) of a listening socket, until :meth:`stop`: a thread accepts,
    a thread a connection answers it (with ``answer``; default: the REST port's answer). The copy is closed then (or
    on a failure to start); the socket listens on.

    Plain threads, not asyncio: asyncio's server accepted a connection, then made its transport on the next turn of
    the loop, and a ``close()`` in between dropped it (kserve's health probe got a reset: 1 of 60 hand-overs with 8
    clients asking, on the 2-core Xeon) or left it open and unanswered until the client timed out (35 of 60). Here a
    connection accepted is answered, whatever happens after; one not accepted waits in the backlog for the server.
    """

    def __init__(self, copy: socket.socket, backlog: int = 0, *,
                 answer: Callable[[socket.socket], None] | None = None) -> None:
        self._copy = copy
        self._answer_one = answer or _answer  # the gRPC port's: ovq.serving.grpc_starting.answer_grpc
        self._wake_r, self._wake_w = socket.socketpair()
        self._slots = threading.BoundedSemaphore(MAX_ANSWERING)
        self._thread = threading.Thread(target=self._accept, name="ovq-serve-starting", daemon=True)
        try:
            self._copy.setblocking(False)
            self._thread.start()
        except BaseException:
            self._close()
            raise

    def stop(self, timeout: float = 2.0) -> None:
        """Stop accepting here; connections already accepted are answered on their own threads."""
        if self._thread.is_alive():
            try:
                self._wake_w.send(b"x")
            except OSError:  # closed already: stopped
                pass
            self._thread.join(timeout)

    def _accept(self) -> None:
        # selectors (epoll), not select.select: a server holding many files has descriptors past select's 1024
        watch = selectors.DefaultSelector()
        try:
            watch.register(self._copy, selectors.EVENT_READ)
            watch.register(self._wake_r, selectors.EVENT_READ)
            while True:
                # a free answering thread first: past MAX_ANSWERING, connections wait in the backlog
                while not self._slots.acquire(timeout=0.1):
                    if self._stopping(watch, 0):
                        return
                if self._stopping(watch, None):
                    self._slots.release()
                    return
                try:
                    conn, _ = self._copy.accept()
                except (BlockingIOError, InterruptedError):  # taken by another process sharing the socket
                    self._slots.release()
                    continue
                threading.Thread(target=self._answer, args=(conn,), name="ovq-serve-starting-answer",
                                 daemon=True).start()
        except OSError as exc:  # the socket closed under us (ovq stopping): nothing more to accept
            logger.debug("answering while the models load: %s", exc)
        finally:
            watch.close()
            self._close()

    def _stopping(self, watch: selectors.BaseSelector, timeout: float | None) -> bool:
        """Whether :meth:`stop` was asked, waiting up to ``timeout`` (``None``: until it or a connection comes)."""
        return any(key.fileobj is self._wake_r for key, _ in watch.select(timeout))

    def _answer(self, conn: socket.socket) -> None:
        try:
            with conn:
                self._answer_one(conn)
        finally:
            self._slots.release()

    def _close(self) -> None:
        for sock in (self._copy, self._wake_r, self._wake_w):
            sock.close()


def _answer(conn: socket.socket) -> None:
    """One request, answered and the connection closed (``Connection: close``: the next one may meet kserve)."""
    conn.setblocking(True)
    conn.settimeout(10.0)
    try:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = conn.recv(4096)
            if not chunk or len(head) + len(chunk) > HEAD_LIMIT:
                return  # not HTTP, or gone
            head += chunk
        head, body = head.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        method, target = (lines[0].split(" ") + ["", ""])[:2]
        headers = dict(line.lower().split(":", 1) for line in lines[1:] if ":" in line)
        length = headers.get("content-length", "0").strip()
        if length.isdigit() and int(length) <= BODY_DRAINED:  # a client still sending would be reset
            left = int(length) - len(body)
            while left > 0:
                chunk = conn.recv(min(left, 1 << 16))
                if not chunk:
                    return
                left -= len(chunk)
        path = target.split("?", 1)[0].rstrip("/")
        status, content = (200, {"live": True}) if path == "/v2/health/live" else (503, {"error": NOT_READY})
        payload = json.dumps(content).encode()
        reason = "OK" if status == 200 else "Service Unavailable"
        conn.sendall(f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: "
                     f"{len(payload)}\r\nconnection: close\r\n\r\n".encode() + (b"" if method == "HEAD" else payload))
        logger.debug("%s %s while the models load: %d", method, target, status)
    except (OSError, ValueError) as exc:
        logger.debug("a request while the models load: %s", exc or type(exc).__name__)
