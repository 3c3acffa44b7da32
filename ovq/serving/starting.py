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

import asyncio
import json
import logging
import socket
import threading

logger = logging.getLogger(__name__)

HEAD_LIMIT = 64 * 1024  # a request line and headers (kserve's limit is uvicorn's: h11 takes 64 KiB too)
BODY_DRAINED = 1 << 22  # a body up to 4 MiB is read before the answer (a client still sending would be reset)
NOT_READY = "Server is not ready. Its models are loading."  # kserve's ServerNotReady, with the reason


class StartingAnswers:
    """Answer HTTP requests on ``copy``, a copy (``dup``) of a socket listening with ``backlog``, in a thread of its
    own, until :meth:`stop`. The copy is closed then (or on a failure to start); the socket itself listens on."""

    def __init__(self, copy: socket.socket, backlog: int) -> None:
        self._copy, self._backlog = copy, backlog
        self._loop = asyncio.new_event_loop()
        self._stopped: asyncio.Event | None = None
        self._started = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="ovq-serve-starting", daemon=True)
        self._thread.start()
        self._started.wait()
        if self._failure is not None:
            self._copy.close()
            raise self._failure

    def stop(self, timeout: float = 2.0) -> None:
        """Stop answering: no new connection is accepted here, answers under way finish (within ``timeout``)."""
        if self._thread.is_alive() and self._stopped is not None:
            try:
                self._loop.call_soon_threadsafe(self._stopped.set)
            except RuntimeError:  # the loop closed meanwhile: stopped already
                pass
        self._thread.join(timeout)

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            self._started.set()
            self._loop.close()

    async def _serve(self) -> None:
        self._stopped = asyncio.Event()
        answers: set[asyncio.Task[None]] = set()

        def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.ensure_future(_answer(reader, writer))
            answers.add(task)
            task.add_done_callback(answers.discard)

        try:
            # the backlog is the socket's (one queue for the copy and the original): kept as it was made
            server = await asyncio.start_server(connected, sock=self._copy, limit=HEAD_LIMIT, backlog=self._backlog)
        except BaseException as exc:  # noqa: BLE001 - raised in the thread that started the answers
            self._failure = exc
            return
        self._started.set()
        await self._stopped.wait()
        server.close()  # closes the copy
        if answers:
            await asyncio.wait(answers, timeout=1.0)
        for task in list(answers):  # a client that sends nothing is not waited for
            task.cancel()
        await asyncio.gather(*answers, return_exceptions=True)


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One request, answered and the connection closed (``Connection: close``: the next one may meet kserve)."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10.0)
        lines = head.decode("latin-1").split("\r\n")
        method, target = (lines[0].split(" ") + ["", ""])[:2]
        headers = dict(line.lower().split(":", 1) for line in lines[1:] if ":" in line)
        length = headers.get("content-length", "0").strip()
        if length.isdigit() and int(length) <= BODY_DRAINED:
            await asyncio.wait_for(reader.readexactly(int(length)), 10.0)
        path = target.split("?", 1)[0].rstrip("/")
        status, content = (200, {"live": True}) if path == "/v2/health/live" else (503, {"error": NOT_READY})
        body = json.dumps(content).encode()
        reason = "OK" if status == 200 else "Service Unavailable"
        writer.write(f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
                     f"connection: close\r\n\r\n".encode() + (b"" if method == "HEAD" else body))
        await writer.drain()
        logger.debug("%s %s while the models load: %d", method, target, status)
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError) as exc:
        logger.debug("a request while the models load: %s", exc or type(exc).__name__)
    finally:
        writer.close()
