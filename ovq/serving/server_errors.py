"""How ``ovq serve`` answers a request it cannot serve: one status per kind of error, on REST and gRPC alike,
and one log line for a client's mistake (kserve's own handlers log every bad request with a full traceback).

kserve's REST server maps its errors to HTTP statuses; its gRPC server maps them to status codes with an
interceptor (``ExceptionToStatusInterceptor``) that ``ovq serve``'s own gRPC server did not install, so every
error came back as ``UNKNOWN`` and a model that was not ready was not retried by ovq's client. The table below
serves both protocols.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc
from grpc_interceptor import AsyncExceptionToStatusInterceptor
from kserve import errors as kerrors
from starlette.responses import JSONResponse

logger = logging.getLogger(__name__)

# kserve's error -> (HTTP status, gRPC status, the client's mistake: one log line rather than a traceback)
STATUSES: tuple[tuple[type[BaseException], int, grpc.StatusCode, bool], ...] = (
    (kerrors.InvalidInput, 400, grpc.StatusCode.INVALID_ARGUMENT, True),
    (kerrors.ModelNotFound, 404, grpc.StatusCode.NOT_FOUND, True),
    (kerrors.ModelNotReady, 503, grpc.StatusCode.UNAVAILABLE, True),
    (kerrors.ServerNotReady, 503, grpc.StatusCode.UNAVAILABLE, True),
    (kerrors.ServerNotLive, 503, grpc.StatusCode.UNAVAILABLE, True),
    (kerrors.UnsupportedProtocol, 501, grpc.StatusCode.UNIMPLEMENTED, True),
    (NotImplementedError, 501, grpc.StatusCode.UNIMPLEMENTED, True),
    (kerrors.InferenceError, 500, grpc.StatusCode.INTERNAL, False),
)


def classify(exc: BaseException) -> tuple[int, grpc.StatusCode, bool]:
    """HTTP status, gRPC status and whether ``exc`` is the client's mistake (500/INTERNAL for anything else)."""
    for kind, http_status, grpc_status, client in STATUSES:
        if isinstance(exc, kind):
            return http_status, grpc_status, client
    return 500, grpc.StatusCode.INTERNAL, False


def message(exc: BaseException) -> str:
    return (str(exc).strip() or type(exc).__name__).splitlines()[0]


def log_failure(exc: BaseException, where: str) -> None:
    """A client's mistake as one line; a server fault with its traceback."""
    _, _, client = classify(exc)
    if client:
        logger.warning("%s: %s", where, message(exc))
    else:
        logger.error("%s: %s", where, message(exc), exc_info=exc)


async def rest_error(request: Any, exc: Exception) -> JSONResponse:
    """The REST answer to ``exc`` (replaces kserve's handlers, which log a traceback for every bad request)."""
    status, _, client = classify(exc)
    log_failure(exc, f"{request.method} {request.url.path}")
    text = message(exc) if client else f"{type(exc).__name__}: {message(exc)}"
    return JSONResponse(status_code=status, content={"error": text})


def install_rest_handlers(app: Any) -> None:
    """Put :func:`rest_error` in place of kserve's exception handlers (after ``RESTServer.create_application``)."""
    for kind, *_ in STATUSES:
        app.add_exception_handler(kind, rest_error)
    app.add_exception_handler(Exception, rest_error)


class StatusInterceptor(AsyncExceptionToStatusInterceptor):
    """gRPC: the status :data:`STATUSES` gives an error, and its message as the details."""

    async def handle_exception(self, ex: Exception, request_or_iterator: Any, context: Any, method_name: str) -> Any:
        _, code, client = classify(ex)
        log_failure(ex, f"gRPC {method_name}")
        await context.abort(code, message(ex) if client else f"{type(ex).__name__}: {message(ex)}")
