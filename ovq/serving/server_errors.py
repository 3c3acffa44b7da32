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


async def unparsed(request: Any, exc: Any) -> JSONResponse:
    """A body kserve's request model does not parse (FastAPI's ``RequestValidationError``): 400 with the v2
    protocol's ``{"error": ...}`` and one log line. FastAPI's own answer was 422 ``{"detail": [...]}``, which no v2
    client reads, with the request's data echoed in it (743 KB for a 1.8 MB body), and nothing logged."""
    text = validation_message(exc.errors())
    logger.warning("%s %s: %s", request.method, request.url.path, text)
    return JSONResponse(status_code=400, content={"error": text})


async def http_error(request: Any, exc: Any) -> JSONResponse:
    """An HTTP error FastAPI or Starlette raise themselves, as the v2 protocol's ``{"error": ...}``, its status and
    headers kept (405's ``Allow``). A body FastAPI could not read as JSON at all (not UTF-8, or nested deeper than
    Python's recursion limit) was 400 ``{"detail": "There was an error parsing the body"}``, nothing logged; it says
    why now, in one log line."""
    cause = exc.__cause__
    text = f"the body is not JSON: {message(cause)}" if exc.status_code == 400 and cause is not None else str(exc.detail)
    if exc.status_code == 400:
        logger.warning("%s %s: %s", request.method, request.url.path, text)
    return JSONResponse(status_code=exc.status_code, content={"error": text}, headers=exc.headers)


def validation_message(errors: Any) -> str:
    """The first problems pydantic found in a body, as ``inputs[0].shape: Field required``. kserve's body is an
    inference request or raw bytes: the problems with the request are the ones that say what is wrong."""
    errors = list(errors)
    request = [e for e in errors if tuple(e.get("loc", ()))[1:2] == ("InferenceRequest",)]
    chosen = request or errors[:1]
    if not chosen:
        return "the request's body does not fit the v2 protocol"
    first = chosen[0]
    if first.get("type") == "json_invalid":
        return f"the body is not JSON: {(first.get('ctx') or {}).get('error', first.get('msg', ''))}"
    if tuple(first.get("loc", ())) == ("body",) and first.get("type") == "missing":
        return "the request has no body"
    parts = []
    for e in chosen[:3]:
        where = ""
        for key in tuple(e.get("loc", ()))[2 if request else 1:]:
            where += f"[{key}]" if isinstance(key, int) else f".{key}" if where else str(key)
        parts.append(f"{where or 'body'}: {e.get('msg', '')}")
    return "; ".join(parts) + (f" (and {len(chosen) - 3} more)" if len(chosen) > 3 else "")


def install_rest_handlers(app: Any) -> None:
    """Put :func:`rest_error` in place of kserve's exception handlers (after ``RESTServer.create_application``), and
    :func:`unparsed` and :func:`http_error` in place of FastAPI's for a body that does not parse."""
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    for kind, *_ in STATUSES:
        app.add_exception_handler(kind, rest_error)
    app.add_exception_handler(Exception, rest_error)
    app.add_exception_handler(RequestValidationError, unparsed)
    app.add_exception_handler(HTTPException, http_error)


class StatusInterceptor(AsyncExceptionToStatusInterceptor):
    """gRPC: the status :data:`STATUSES` gives an error, and its message as the details."""

    async def handle_exception(self, ex: Exception, request_or_iterator: Any, context: Any, method_name: str) -> Any:
        _, code, client = classify(ex)
        log_failure(ex, f"gRPC {method_name}")
        await context.abort(code, message(ex) if client else f"{type(ex).__name__}: {message(ex)}")
