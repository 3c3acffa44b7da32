"""The REST side of ``ovq serve`` in front of kserve: request size limits, and binary infer requests answered
from the bytes.

**Size.** kserve reads any body whole: a 1.5 GB request (a binary header declaring one 352x352 frame, then
1.5 GB) was answered 200 with the extra bytes ignored, and the server's RSS went from 0.27 to 3.6 GB and stayed
at 3.0 GB. Here a request larger than its model's input allows is refused with 413 before it is read (by its
``Content-Length``) or as soon as it passes the limit (chunked): the input plus 64 KiB for a binary request,
six bytes a value plus 64 KiB for JSON; other paths get the largest JSON limit of the served models.

**Binary.** kserve 0.21 turns a binary input into a Python list and back (``InferRequest.from_bytes``): 0.8 s
of CPU for one 416x416 frame, measured idle, against milliseconds here. Requests with binary inputs (header
``Inference-Header-Content-Length``) to ``/v2/models/NAME/infer`` are answered by
:meth:`ServedModel.binary_rest`; every other request (JSON, metadata, health) goes to kserve.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from kserve.errors import InvalidInput

from ovq.serving.served_model import ServedModel

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class RestGate:
    """ASGI middleware over kserve's application (``app.add_middleware(RestGate, models=...)``)."""

    def __init__(self, app: Any, models: dict[str, ServedModel]) -> None:
        self.app, self.models = app, models
        self.default_limit = max(m.json_limit() for m in models.values())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        parts = scope["path"].strip("/").split("/")
        model = self.models.get(parts[2]) if len(parts) == 4 and parts[:2] == ["v2", "models"] \
            and parts[3] == "infer" else None
        binary = model is not None and scope["method"] == "POST" and "inference-header-content-length" in headers
        limit = (model.binary_limit() if binary else model.json_limit()) if model else self.default_limit
        where = f"{scope['method']} {scope['path']}"
        declared = headers.get("content-length", "0")
        if not _whole_number(declared):
            await _answer(send, 400, {"error": f"Content-Length {declared!r} is not a number"}, where)
            return
        if int(declared) > limit:
            await _answer(send, 413, {"error": f"the request has {int(declared)} bytes; at most {limit} are "
                                               "taken here"}, where)
            return
        received, refused, started = 0, False, False

        async def counted() -> dict[str, Any]:
            # past the limit: answer 413 now and tell the application the client went away (FastAPI turns an
            # exception raised here into its own 400, "There was an error parsing the body")
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit and not started:
                refused = True
                await _answer(send, 413, {"error": f"the request passed {limit} bytes, the most taken here"}, where)
                return {"type": "http.disconnect"}
            return message

        async def tracked(message: dict[str, Any]) -> None:
            nonlocal started
            if refused:  # the application's answer to the cut request: the client has the 413
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            if binary:
                await self._binary(model, headers["inference-header-content-length"], counted, tracked, where)
            else:
                await self.app(scope, counted, tracked)
        except asyncio.CancelledError:
            # uvicorn cancels a request still under way when the server stops (5 s after SIGTERM: a client still
            # sending its body); out of here it logged 'Exception in ASGI application' with a 60-line traceback
            logger.warning("%s: the server stopped before the request was complete", where)
            if not started and not refused:
                await _send(send, 503, {"content-type": "application/json"},
                            json.dumps({"error": "the server is stopping"}).encode())

    async def _binary(self, model: ServedModel, header_length: str, receive: Receive, send: Send,
                      where: str) -> None:
        if not _whole_number(header_length):
            await _answer(send, 400, {"error": f"Inference-Header-Content-Length {header_length!r} is not a "
                                               "number"}, where)
            return
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # gone, or cut at the size limit (answered already)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        try:
            status, headers, body = await model.binary_rest(b"".join(chunks), int(header_length))
        except InvalidInput as exc:
            await _answer(send, 400, {"error": str(exc)}, where)
            return
        await _send(send, status, headers, body)


async def _answer(send: Send, status: int, content: dict[str, Any], where: str) -> None:
    """A JSON error answer, logged as one line (a client's mistake, not the server's)."""
    logger.warning("%s: %d %s", where, status, content.get("error", ""))
    await _send(send, status, {"content-type": "application/json"}, json.dumps(content).encode())


async def _send(send: Send, status: int, headers: dict[str, str], body: bytes) -> None:
    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def _whole_number(text: str) -> bool:
    """A header's value as a size: ASCII digits only. ``str.isdigit`` also takes '²' (the header byte 0xB2, read as
    latin-1), which ``int`` then refused: HTTP 500 and a traceback in the log instead of a 400."""
    return text.isascii() and text.isdigit()
