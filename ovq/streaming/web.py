"""The live view over HTTP (``ovq run --serve``): a page of every stream, MJPEG, snapshots, stats, health, metrics.

Endpoints (every one but ``/healthz`` needs the token when one is set: ``?token=...`` or
``Authorization: Bearer ...``):

- ``/`` - the page: every stream's live annotated view and its stats, refreshed every second;
- ``/stream/NAME.mjpg`` - ``multipart/x-mixed-replace`` JPEGs of the annotated frames, newest frame only;
- ``/snapshot/NAME.jpg`` - the newest annotated frame;
- ``/stats.json`` - ``{"streams": [{"name": ..., "fps": ..., ...}, ...], "healthy": ..., "viewers": ...,
  "started": ...}`` (``started``: when this server started, so a page sees a restarted run);
- ``/healthz`` - 200 ``ok`` while every unfinished stream delivers frames, 503 ``stalled`` otherwise;
- ``/metrics`` - Prometheus text format, ``ovq_`` metrics.

Built on aiohttp: its server runs on an event loop of our own in one background thread (``AppRunner``, no
signal handlers, nothing process-wide), and a streaming response is a plain coroutine writing parts, so a slow
MJPEG viewer costs one suspended coroutine, not a thread. The pipeline never waits for it: frames reach the
server through :class:`~ovq.streaming.liveview.LiveView`, which only keeps the newest one.

A browser opens at most 6 HTTP/1.1 connections per host, and each MJPEG ``<img>`` holds one for good: with more
than ``MJPEG_TILES`` streams the page polls snapshots instead (one short request per tile at a time), which
leaves room for the stats requests.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import threading
import time
from importlib import resources
from typing import Any
from urllib.parse import unquote

from ovq.core.errors import DependencyError, OvqError
from ovq.core.urls import UNSENDABLE_TOKEN, check_secret_text, is_loopback
from ovq.streaming.liveview import LiveView
from ovq.streaming.pipeline import FrameResult

logger = logging.getLogger(__name__)

TOKEN_ENV = "OVQ_SERVE_TOKEN"
MJPEG_TILES = 4  # MJPEG tiles at most + the stats poll + a spare stay within the browser's 6 connections
BOUNDARY = "ovqframe"
RESEND_S = 1.0  # an MJPEG viewer gets the newest frame again after this long without a new one
_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def warn_if_open(host: str, port: int, token: str | None) -> bool:
    """Log a warning (and return True) when a server on ``host`` is reachable beyond this machine with no token."""
    if is_loopback(host) or token:
        return False
    logger.warning("live view on %s:%d is open to the network without a token: set %s or --serve-token",
                   host, port, TOKEN_ENV)
    return True


class LiveServer:
    """A sink serving the live view on ``host:port`` (``port=0``: any free port, see :attr:`port`).

    The server listens from the constructor on, so a port in use fails before the model is compiled
    (:class:`OvqError` naming the address). ``token``: required by every endpoint but ``/healthz``; without one,
    a bind beyond loopback is logged as a warning. ``fps``, ``stall_s`` and ``quality`` go to :class:`LiveView`.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 8080, *, fps: float = 10.0, token: str | None = None,
                 stall_s: float = 10.0, quality: int = 80) -> None:
        try:
            import prometheus_client  # noqa: F401
            from aiohttp import web  # noqa: F401 - checked here, used on the server's thread
        except ImportError:
            raise DependencyError("--serve needs aiohttp and prometheus-client: pip install 'ovq[web]'") from None
        check_secret_text(token, "the live view's token", UNSENDABLE_TOKEN)
        self.view = LiveView(fps=fps, stall_s=stall_s, quality=quality)
        self.host = host
        self.token = token or None
        self.port = port
        self.started = round(time.time(), 3)  # in /stats.json: a page sees that the run restarted
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing: asyncio.Event | None = None
        self._events: dict[str, asyncio.Event] = {}
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._page = resources.files("ovq.streaming").joinpath("templates/live.html").read_text(encoding="utf-8")
        self._thread = threading.Thread(target=self._serve, name="ovq-live-server", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise OvqError(f"--serve {host}:{port}: cannot listen: {self._error}") from None
        self.view.add_listener(self._on_frame)
        warn_if_open(host, self.port, self.token)
        logger.info("live view: %s", self.url)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    # -- sink ----------------------------------------------------------------------------------------------
    def start(self, streams: list[str]) -> None:
        self.view.start(streams)

    def write(self, result: FrameResult) -> None:
        self.view.write(result)

    def close(self) -> None:
        """Stop serving (viewers see their stream end), then the encoder."""
        loop = self._loop
        if loop is not None and self._thread.is_alive():
            loop.call_soon_threadsafe(self._closing.set)
            self._thread.join(10.0)
        self.view.close()

    def attach_stats(self, provider: Any) -> None:
        self.view.attach_stats(provider)

    # -- the server's thread -------------------------------------------------------------------------------
    def _serve(self) -> None:
        from aiohttp import web

        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        runner = None
        try:
            runner = web.AppRunner(self._app(), handle_signals=False, access_log=None, logger=_ServerLog(logger))
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, self.host, self.port)
            loop.run_until_complete(site.start())
            self.port = runner.addresses[0][1]
            self._closing = asyncio.Event()
            self._loop = loop
        except BaseException as exc:  # noqa: BLE001 - the constructor, waiting for _ready, raises it
            self._error = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            if runner is not None:
                loop.run_until_complete(runner.cleanup())
            loop.close()
            self._ready.set()
            return
        self._ready.set()
        try:
            loop.run_until_complete(self._closing.wait())
        finally:
            loop.run_until_complete(runner.cleanup())
            loop.close()

    def _app(self) -> Any:
        from aiohttp import web

        @web.middleware
        async def auth(request: web.Request, handler: Any) -> web.StreamResponse:
            return await self._auth(request, handler)

        @web.middleware
        async def errors(request: web.Request, handler: Any) -> web.StreamResponse:
            try:
                return await handler(request)
            except (web.HTTPException, ConnectionError, asyncio.CancelledError):
                raise
            except Exception as exc:  # one line in the run's log, the viewer gets a 500
                logger.error("live view: %s %s failed: %s: %s", request.method, request.path, type(exc).__name__, exc)
                logger.debug("live view: %s %s", request.method, request.path, exc_info=exc)
                return web.Response(status=500, text="500: the live view failed (see the run's log)\n",
                                    headers=_HEADERS)

        app = web.Application(middlewares=[errors, auth])
        name = r"{name:[A-Za-z0-9_.-]+}"
        app.add_routes([
            web.get("/", self._index),
            web.get(f"/stream/{name}.mjpg", self._mjpeg),
            web.get(f"/snapshot/{name}.jpg", self._snapshot),
            web.get("/stats.json", self._stats),
            web.get("/healthz", self._healthz),
            web.get("/metrics", self._metrics),
            web.get("/favicon.ico", self._no_content),
        ])
        return app

    def _on_frame(self, stream: str) -> None:  # encoder thread
        if self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(self._notify, stream)
            except RuntimeError:  # the server closed meanwhile: nobody left to tell
                pass

    def _notify(self, stream: str) -> None:  # server thread: wake whoever waits for this stream's next frame
        event = self._events.pop(stream, None)
        if event is not None:
            event.set()

    async def _next_frame(self, stream: str, timeout: float) -> None:
        """Wait until ``stream`` has a new JPEG, the server closes, or ``timeout`` seconds passed."""
        event = self._events.setdefault(stream, asyncio.Event())
        waits = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(self._closing.wait())]
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()

    # -- handlers ------------------------------------------------------------------------------------------
    async def _auth(self, request: Any, handler: Any) -> Any:
        """Every endpoint but /healthz needs the token, when one is set."""
        from aiohttp import web

        if request.path != "/healthz" and not self._authorized(request):
            return web.Response(status=401, text="401: this live view needs its token (?token=...)\n",
                                headers={**_HEADERS, "WWW-Authenticate": "Bearer"})
        return await handler(request)

    def _authorized(self, request: Any) -> bool:
        """Whether ``request`` carries the token (``?token=...`` or ``Authorization: Bearer ...``), or none is set."""
        if not self.token:
            return True
        given = _query_token(request) or request.headers.get("Authorization", "").removeprefix("Bearer ")
        # aiohttp reads a header's bytes that are not UTF-8 as lone surrogates: their bytes, which match no UTF-8
        # token (encoded strictly, such a header was a 500 and an error line in the run's log)
        return hmac.compare_digest(given.encode(errors="surrogatepass"), self.token.encode())

    def _stream_name(self, request: Any) -> str:
        from aiohttp import web

        name = request.match_info["name"]
        if name not in self.view.streams:
            raise web.HTTPNotFound(text=f"404: no stream '{name}'\n", headers=_HEADERS)
        return name

    async def _no_content(self, request: Any) -> Any:
        from aiohttp import web

        return web.Response(status=204)

    async def _index(self, request: Any) -> Any:
        from aiohttp import web

        config = json.dumps({"mjpegTiles": MJPEG_TILES, "fps": self.view.fps}).replace("<", "\\u003c")
        page = self._page.replace("__OVQ_CONFIG__", config)
        return web.Response(text=page, content_type="text/html", headers=_HEADERS)

    async def _mjpeg(self, request: Any) -> Any:
        from aiohttp import web

        stream = self._stream_name(request)
        response = web.StreamResponse(headers={
            **_HEADERS, "Content-Type": f"multipart/x-mixed-replace; boundary={BOUNDARY}"})
        await response.prepare(request)
        self.view.watch(stream, +1)
        sent, sent_at = 0, 0.0
        try:
            await response.write(f"--{BOUNDARY}\r\n".encode())
            while not self._closing.is_set():
                jpeg = self.view.latest(stream)
                # Chromium shows a part only once the next one arrives: a stream with no new frame (ended,
                # stalled, or slower than 1 fps) sends its newest one again each second, so it is on screen
                if jpeg is None or (jpeg.seq == sent and time.monotonic() - sent_at < RESEND_S):
                    await self._next_frame(stream, RESEND_S)
                    continue
                sent, sent_at = jpeg.seq, time.monotonic()
                head = f"Content-Type: image/jpeg\r\nContent-Length: {len(jpeg.data)}\r\n\r\n".encode()
                await response.write(head + jpeg.data + f"\r\n--{BOUNDARY}\r\n".encode())  # waits for this viewer
        except (ConnectionError, asyncio.CancelledError):
            pass  # the viewer left
        finally:
            self.view.watch(stream, -1)
        return response

    async def _snapshot(self, request: Any) -> Any:
        from aiohttp import web

        stream = self._stream_name(request)
        pending = self.view.want(stream)
        jpeg = self.view.latest(stream)
        if jpeg is None or (pending and time.monotonic() - jpeg.encoded_at > 2.0 / self.view.fps):
            await self._next_frame(stream, 2.0)
            jpeg = self.view.latest(stream) or jpeg
        if jpeg is None:
            return web.Response(status=503, text=f"503: no frame of '{stream}' yet\n", headers=_HEADERS)
        return web.Response(body=jpeg.data, content_type="image/jpeg", headers=_HEADERS)

    async def _stats(self, request: Any) -> Any:
        from aiohttp import web

        streams = self.view.stats()
        body = {"streams": streams, "healthy": not any(s["stalled"] for s in streams),
                "viewers": self.view.viewers(), "started": self.started, "time": round(time.time(), 3)}
        return web.json_response(body, headers=_HEADERS)

    async def _healthz(self, request: Any) -> Any:
        from aiohttp import web

        stalled = self.view.health()
        if stalled:  # names only with the token: this endpoint is open
            detail = f": {', '.join(stalled)}" if self._authorized(request) else ""
            return web.Response(status=503, text=f"stalled{detail}\n", headers=_HEADERS)
        return web.Response(text="ok\n", headers=_HEADERS)

    async def _metrics(self, request: Any) -> Any:
        from aiohttp import web

        from ovq.streaming.metrics import render

        body, content_type = render(self.view.stats(), self.view.viewers())
        return web.Response(body=body, headers={**_HEADERS, "Content-Type": content_type})


def _query_token(request: Any) -> str:
    """``?token=`` percent-decoded as RFC 3986 has it, a '+' left a '+' (not a form's space): a base64 token
    (``openssl rand -base64``) works typed into the address bar as it is."""
    for part in request.rel_url.raw_query_string.split("&"):
        key, _, value = part.partition("=")
        if key == "token":
            return unquote(value)
    return ""


class _ServerLog(logging.LoggerAdapter):
    """aiohttp's server log, in ovq's words: whatever a client sends that is not HTTP (a port scanner, a broken
    client) is a debug line, never a traceback in the run's log; anything else one line at its level."""

    def log(self, level: int, msg: Any, *args: Any, exc_info: Any = None, **kwargs: Any) -> None:
        from aiohttp.http_exceptions import HttpProcessingError

        text = str(msg) % args if args else str(msg)
        exc = exc_info if isinstance(exc_info, BaseException) else None
        if exc is not None:
            lines = str(getattr(exc, "message", "") or exc).splitlines()
            text = f"{text}: {lines[0].rstrip(':') if lines else type(exc).__name__}"
        if isinstance(exc, HttpProcessingError):
            self.logger.debug("live view: bad request%s", text.removeprefix("Error handling request"))
        else:
            self.logger.log(level, "live view: %s", text)


def token_from_env(environ: Any = None) -> str | None:
    """``$OVQ_SERVE_TOKEN``, or ``None`` when it is unset or empty; :class:`ConfigError` naming it when it is not
    UTF-8 text."""
    token = (os.environ if environ is None else environ).get(TOKEN_ENV) or None
    check_secret_text(token, TOKEN_ENV, UNSENDABLE_TOKEN)
    return token
