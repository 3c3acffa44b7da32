"""A KServe v2 client for one served model: REST with the binary tensor extension, or gRPC.

gRPC goes through ``tritonclient.grpc``. REST is written here on ``http.client``: tritonclient's HTTP client
runs on gevent, and from worker threads its requests hung until they timed out (tritonclient 2.73, measured
here: every request of a 3-thread queue timed out after 10 s while the same client answered from the main
thread). One :class:`V2Client` per thread, one keep-alive connection each. Failures come out as two kinds: :class:`ServerUnavailable` (connection refused or reset, timeout,
HTTP 502/503/504, gRPC UNAVAILABLE/DEADLINE_EXCEEDED: the server may come back, so the caller may retry) and
:class:`ServingError` (the server answered and said no: unknown model, wrong input: retrying cannot help).
"""

from __future__ import annotations

import http.client
import json
import logging
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import numpy as np

from ovq.core.errors import DependencyError, ModelError, OvqError
from ovq.core.metadata import RT_KEY, ModelInfo
from ovq.serving.urls import ServingURL

logger = logging.getLogger(__name__)

INFO_TENSOR = "ovq_info"  # a BYTES input of this name asks ``ovq serve`` for the model's ModelInfo (JSON)
SERVED_KEY = "served"  # in ``ovq serve``'s answer to it, beside the ModelInfo's keys: how the server runs the model
RETRYABLE_GRPC = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED")
RETRYABLE_HTTP = (502, 503, 504)


class ServingError(OvqError):
    """The model server answered, and the answer means this model cannot be used as asked."""


class ServerUnavailable(ServingError):
    """The server could not be reached or did not answer in time (it may come back)."""


@dataclass(frozen=True)
class ServerSettings:
    """How the server runs the model, as ``ovq serve`` reports it; ``None`` where the server does not say
    (OpenVINO Model Server, an older ``ovq serve``)."""

    device: str | None = None  # the devices the server compiled for, e.g. CPU
    hint: str | None = None  # its performance hint, lower case
    precision: str | None = None  # the inference precision the device runs
    infer_requests: int | None = None  # the server's infer requests for this model (shared by every client)

    @classmethod
    def from_info(cls, text: str) -> ServerSettings:
        """From the metadata's JSON text: what is there and fits (the server's words, not trusted further)."""
        try:
            found = json.loads(text).get(SERVED_KEY)
        except (ValueError, AttributeError):
            return cls()
        if not isinstance(found, dict):
            return cls()

        def word(key: str) -> str | None:
            value = found.get(key)
            return printable(value, 40) if isinstance(value, str) and value else None

        n = found.get("infer_requests")
        return cls(word("device"), word("hint"), word("precision"),
                   n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else None)


def printable(text: str, limit: int = 200) -> str:
    """Server text fit for one line of a message: control bytes escaped (a gRPC port answering an HTTP/1.1
    request sends HTTP/2 frames, which went to the terminal raw), at most ``limit`` characters."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= limit else text[:limit] + "..."


def v2_datatype(dtype: np.dtype) -> str:
    return {"uint8": "UINT8", "float32": "FP32", "float16": "FP16", "int32": "INT32", "int64": "INT64"}.get(
        np.dtype(dtype).name, "FP32"
    )


def _triton_grpc() -> Any:
    try:
        import tritonclient.grpc as module
    except ImportError as exc:
        raise DependencyError(
            f"a grpc:// model URL needs tritonclient's gRPC client ({exc.name} is missing): pip install 'ovq[serve]'"
        ) from exc
    except TypeError as exc:  # "duplicate symbol 'inference.ServerLiveRequest'": kserve's protos are loaded
        raise DependencyError(
            "a grpc:// model URL cannot be used in a process that imported kserve (both define the v2 protocol's "
            "gRPC messages); use an http:// URL there, or a separate process"
        ) from exc
    return module


class _Rest:
    """The v2 REST calls ovq makes, on one keep-alive ``http.client`` connection."""

    def __init__(self, url: ServingURL, timeout: float) -> None:
        kind = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        self.url, self.conn = url, kind(url.host, url.port, timeout=timeout)
        version = f"/versions/{url.version}" if url.version else ""
        self.base = f"/v2/models/{quote(url.model, safe='')}{version}"

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        for attempt in (0, 1):  # a kept-alive connection the server closed meanwhile: reconnect once
            try:
                self.conn.request(method, self.base + path, body=body, headers=headers or {})
                response = self.conn.getresponse()
                return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.conn.close()
                if attempt:
                    raise
            except BaseException:
                self.conn.close()
                raise
        raise AssertionError("unreachable")

    def get_json(self, path: str) -> tuple[int, Any]:
        status, _, body = self.request("GET", path)
        try:
            value = json.loads(body or b"{}")
        except ValueError:
            return status, {"error": printable(body[:200].decode("utf-8", "replace"))}
        if not isinstance(value, dict):
            return status, {"error": printable(str(value))}
        if "error" in value:
            value["error"] = printable(str(value["error"]))
        return status, value

    def infer(self, inputs: list[tuple[str, np.ndarray]], outputs: Sequence[str]) -> dict[str, np.ndarray]:
        """POST .../infer with binary inputs, asking for binary outputs; the outputs by name."""
        header = {
            "inputs": [{"name": n, "shape": list(t.shape), "datatype": v2_datatype(t.dtype),
                        "parameters": {"binary_data_size": t.nbytes}} for n, t in inputs],
            "outputs": [{"name": n, "parameters": {"binary_data": True}} for n in outputs],
        }
        head = json.dumps(header).encode()
        body = head + b"".join(np.ascontiguousarray(t).tobytes() for _, t in inputs)
        status, headers, data = self.request("POST", "/infer", body, {
            "Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(head))})
        if status != 200:
            raise _HttpStatus(status, data[:300].decode("utf-8", "replace"))
        return parse_infer_response(data, headers.get("inference-header-content-length"))


def _unversioned(url: ServingURL) -> str:
    """What to do about a versioned URL that the server refuses (kserve's "Model versioning not supported yet.")."""
    return f" (this server serves no versioned URL; drop /versions/{url.version})"


class _HttpStatus(Exception):
    def __init__(self, code: int, text: str) -> None:
        try:
            text = json.loads(text).get("error", text)
        except (ValueError, AttributeError):
            pass
        super().__init__(f"HTTP {code}: {printable(str(text))}")
        self.code = code


def parse_infer_response(data: bytes, header_length: str | None) -> dict[str, np.ndarray]:
    """Outputs of a v2 REST infer response, JSON or JSON + binary tensors (``Inference-Header-Content-Length``)."""
    size = int(header_length) if header_length else len(data)
    header = json.loads(data[:size])
    offset, result = size, {}
    for out in header.get("outputs", []):
        shape, dtype = [int(d) for d in out["shape"]], out["datatype"]
        nbytes = (out.get("parameters") or {}).get("binary_data_size")
        if nbytes is not None:
            chunk = data[offset:offset + int(nbytes)]
            offset += int(nbytes)
            result[out["name"]] = np.frombuffer(chunk, dtype=NUMPY_TYPES[dtype]).reshape(shape)
        elif dtype == "BYTES":
            result[out["name"]] = np.array(out["data"], dtype=np.object_).reshape(shape)
        else:
            result[out["name"]] = np.asarray(out["data"], dtype=NUMPY_TYPES[dtype]).reshape(shape)
    return result


NUMPY_TYPES = {"UINT8": np.uint8, "FP32": np.float32, "FP16": np.float16, "INT32": np.int32, "INT64": np.int64,
               "FP64": np.float64, "INT8": np.int8, "BOOL": np.bool_}


class V2Client:
    """Health, metadata and inference calls for the model at ``url``; errors become :class:`ServingError`."""

    def __init__(self, url: ServingURL, *, timeout: float = 10.0) -> None:
        self.url = url
        self.timeout = float(timeout)
        self.input_name = ""  # set by RemoteDetector once the metadata is known
        self.output_names: tuple[str, ...] = ()
        if url.scheme == "grpc":
            self._grpc = _triton_grpc()
            self._client = self._grpc.InferenceServerClient(url.address)
        else:
            self._client = _Rest(url, self.timeout)

    def close(self) -> None:
        try:
            (self._client.conn if self.url.scheme != "grpc" else self._client).close()
        except Exception as exc:  # noqa: BLE001 - closing a dead connection must not fail the run
            logger.debug("%s: closing the client: %s", self.url, exc)

    # -- errors --------------------------------------------------------------------------------------------
    def _failure(self, exc: BaseException, what: str) -> ServingError:
        text = printable((str(exc).strip() or type(exc).__name__).splitlines()[0])
        status = ""
        if hasattr(exc, "status") and callable(exc.status):
            status = str(exc.status() or "")
        wrong = self._other_protocol(exc)
        if wrong:
            return ServingError(f"{self.url}: {wrong}")
        unavailable = isinstance(exc, (OSError, http.client.HTTPException)) or any(s in status for s in RETRYABLE_GRPC)
        unavailable = unavailable or (isinstance(exc, _HttpStatus) and exc.code in RETRYABLE_HTTP)
        kind = ServerUnavailable if unavailable else ServingError
        return kind(f"{self.url}: {what}: {text}")

    def _other_protocol(self, exc: BaseException) -> str:
        """Why the port at the URL speaks another protocol than its scheme, or ''. Both looked like an outage
        and were retried for ever: a gRPC port answers an HTTP/1.1 request with HTTP/2 frames (http.client's
        ``BadStatusLine('\\x00\\x00\\x18\\x04...')``), and grpc reports a REST port as UNAVAILABLE ("Trying to
        connect an http1.x server"). So did https:// at a plain HTTP port (``[SSL: WRONG_VERSION_NUMBER]``) and at
        a server whose certificate is not trusted (an ``OSError`` each, which is otherwise a server away)."""
        u = self.url
        if isinstance(exc, ssl.SSLCertVerificationError):  # also "not an outage": no retry makes it trusted
            return f"the server's TLS certificate is not trusted here: {exc.verify_message or exc.reason}"
        if isinstance(exc, ssl.SSLError) and exc.reason == "WRONG_VERSION_NUMBER":  # the answer is not TLS
            return (f"{u.address} does not answer in TLS (a plain HTTP port?); use http://{u.address}/v2/models/"
                    f"{u.model} or the server's HTTPS port")
        if isinstance(exc, http.client.BadStatusLine):
            if str(exc.args[0] if exc.args else "").startswith("\x00"):
                return (f"{u.address} answers in HTTP/2 (a gRPC port?), not HTTP/1.1 REST; use "
                        f"grpc://{u.address}/v2/models/{u.model} or the server's REST port")
            return f"{u.address} does not answer in HTTP/1.1: {printable(str(exc))}"
        if u.scheme == "grpc" and "http1.x server" in str(exc):
            return (f"{u.address} answers in HTTP/1.1 (a REST port?), not gRPC (HTTP/2); use "
                    f"http://{u.address}/v2/models/{u.model} or the server's gRPC port")
        return ""

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except OvqError:
            raise
        except Exception as exc:
            raise self._failure(exc, what) from exc

    # -- calls ---------------------------------------------------------------------------------------------
    def model_ready(self) -> bool:
        u = self.url
        if u.scheme == "grpc":
            try:
                return bool(self._call("model readiness", self._client.is_model_ready, u.model, u.version,
                                       client_timeout=self.timeout))
            except ServingError as exc:
                if "StatusCode.UNIMPLEMENTED" in str(exc) and u.version:
                    raise ServingError(f"{exc}{_unversioned(u)}") from exc
                raise
        status, body = self._call("model readiness", self._client.get_json, "/ready")
        if status == 404:
            raise ServingError(f"{u}: the server has no model '{u.model}': {body.get('error', '')}".rstrip(": "))
        if status in RETRYABLE_HTTP:
            raise ServerUnavailable(f"{u}: model readiness: HTTP {status}")
        if status != 200:  # 501 "Model versioning not supported yet." was reported as a model not ready
            hint = _unversioned(u) if status == 501 and u.version else ""
            raise ServingError(f"{u}: model readiness: HTTP {status}: {body.get('error', '')}{hint}")
        return bool(body.get("ready", True))

    def metadata(self) -> dict[str, Any]:
        """The v2 model metadata as a dict (name, inputs, outputs; ``rt_info`` where the server sends it)."""
        u = self.url
        if u.scheme == "grpc":
            return dict(self._call("model metadata", self._client.get_model_metadata, u.model, u.version,
                                   as_json=True, client_timeout=self.timeout))
        status, body = self._call("model metadata", self._client.get_json, "")
        if status != 200:
            raise ServingError(f"{u}: model metadata: HTTP {status}: {body.get('error', '')}")
        return body

    def infer(self, tensor: np.ndarray) -> list[np.ndarray]:
        """One inference of ``tensor`` (the model's single input); outputs in the model's order."""
        u = self.url
        if u.scheme == "grpc":
            item = self._grpc.InferInput(self.input_name, list(tensor.shape), v2_datatype(tensor.dtype))
            item.set_data_from_numpy(tensor)
            result = self._call("inference", self._client.infer, u.model, [item], model_version=u.version,
                                client_timeout=self.timeout)
            found = {name: result.as_numpy(name) for name in self.output_names}
        else:
            found = self._call("inference", self._client.infer, [(self.input_name, tensor)], self.output_names)
        missing = [name for name in self.output_names if found.get(name) is None]
        if missing:
            raise ServingError(f"{u}: the response has no output {', '.join(missing)}")
        return [found[name] for name in self.output_names]

    def ovq_info(self, metadata: dict[str, Any]) -> tuple[ModelInfo, ServerSettings]:
        """The model's ovq metadata, and how the server runs it: from ``rt_info`` in the model metadata (OpenVINO
        Model Server's REST API, which does not say how it runs it) or, from ``ovq serve``, the answer to a request
        with one BYTES input named ``ovq_info``."""
        text = ((metadata.get("rt_info") or {}).get(RT_KEY) or {}).get("info")
        if not text:
            text = self._ask_info()
        text = text if isinstance(text, str) else json.dumps(text)
        try:
            return ModelInfo.from_json(text), ServerSettings.from_info(text)
        except (ValueError, TypeError, OvqError) as exc:
            raise ModelError(f"{self.url}: the server's ovq metadata is unreadable: {exc}") from exc

    def _ask_info(self) -> str:
        u = self.url
        try:
            if u.scheme == "grpc":
                item = self._grpc.InferInput(INFO_TENSOR, [1], "BYTES")
                item.set_data_from_numpy(np.array([b"?"], dtype=np.object_))
                result = self._call("ovq metadata", self._client.infer, u.model, [item], model_version=u.version,
                                    client_timeout=self.timeout)
                out = result.get_output(INFO_TENSOR)  # as_numpy fails on BYTES contents under numpy 2
                values = list(out.contents.bytes_contents) if out is not None else []
            else:
                status, headers, body = self._call("ovq metadata", self._client.request, "POST", "/infer", json.dumps(
                    {"inputs": [{"name": INFO_TENSOR, "shape": [1], "datatype": "BYTES", "data": ["?"]}]}).encode(),
                    {"Content-Type": "application/json"})
                if status != 200:
                    raise ServingError(f"HTTP {status}: {printable(body[:200].decode('utf-8', 'replace'))}")
                values = list(parse_infer_response(body, headers.get("inference-header-content-length"))
                              .get(INFO_TENSOR, np.empty(0)).reshape(-1))
        except ServerUnavailable:
            raise
        except ServingError as exc:
            raise ModelError(
                f"{u}: the model carries no ovq metadata the server will give ({exc}); serve an IR written by "
                "`ovq convert`, `ovq quantize` or `ovq export-serving` with `ovq serve`, or with OpenVINO Model "
                "Server over http(s)"
            ) from exc
        if len(values) != 1:
            raise ModelError(f"{u}: the server answered the ovq metadata request without '{INFO_TENSOR}'")
        value = values[0]
        return value.decode("utf-8") if isinstance(value, bytes) else str(value)
