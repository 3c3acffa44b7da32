"""``ovq serve``: a KServe v2 server (the ``kserve`` library) hosting ovq models on OpenVINO.

For machines where OpenVINO Model Server is not installed. Each model is compiled once with the precision
stored in it (as ``ovq quantize`` validated it) and runs on an ``AsyncInferQueue``: requests from all
clients share its ``nireq`` infer requests, and the event loop never waits on a device. Endpoints are the v2
protocol's, REST (with the binary tensor extension) and gRPC:
``GET /v2/health/ready``, ``GET /v2/models/NAME/ready``, ``GET /v2/models/NAME``, ``POST /v2/models/NAME/infer``.
A request whose single input is a BYTES tensor named ``ovq_info`` answers with the model's ovq metadata
(labels, family, input size, resize mode, thresholds) as JSON, so a client needs only the model's URL; the
protocol's metadata response has no field for it.

The servers bind ``host`` (127.0.0.1 unless told otherwise): kserve's own ``ModelServer.start`` binds every
interface, so the REST and gRPC servers are assembled here from kserve's parts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from ovq.core.errors import ConfigError, DependencyError
from ovq.model.detector import Detector
from ovq.serving.client import INFO_TENSOR, v2_datatype
from ovq.serving.repository import model_stem

logger = logging.getLogger(__name__)


def _kserve() -> Any:
    try:
        import kserve
    except ImportError as exc:
        raise DependencyError(f"ovq serve needs the kserve package ({exc.name} is missing): pip install 'ovq[serve]'")
    return kserve


@dataclass(frozen=True)
class ServeOptions:
    """How ``ovq serve`` runs: where it listens and how each model is compiled."""

    host: str = "127.0.0.1"
    http_port: int = 8080
    grpc_port: int = 8081
    device: str = "CPU"
    nireq: int = 0  # infer requests per model (0: the device's optimal number)
    hint: str = "throughput"

    def __post_init__(self) -> None:
        for what, port in (("http port", self.http_port), ("grpc port", self.grpc_port)):
            if not 0 < int(port) < 65536:
                raise ConfigError(f"{what} {port}: expected 1..65535")
        if self.http_port == self.grpc_port:
            raise ConfigError(f"the http and grpc ports are both {self.http_port}; give two different ports")
        if self.nireq < 0:
            raise ConfigError(f"nireq {self.nireq}: expected 0 (the device's optimum) or more")


def served_models(models: Sequence[str | Path], names: Sequence[str] | None, options: ServeOptions) -> list[Any]:
    """One kserve model per path, compiled and ready; names default to the model file's stem."""
    names = list(names or [])
    if len(names) > len(models):
        raise ConfigError(f"{len(names)} names for {len(models)} models")
    chosen = [names[i] if i < len(names) else model_stem(m) for i, m in enumerate(models)]
    if len(set(chosen)) != len(chosen):
        raise ConfigError(f"model names must be unique, got {chosen}; give each one with --name")
    kind = _served_model_class()
    return [kind(name, Detector(m, device=options.device, hint=options.hint), options.nireq)
            for name, m in zip(chosen, models, strict=True)]


def _served_model_class() -> type:
    kserve = _kserve()
    from kserve import InferOutput, InferRequest, InferResponse

    class ServedModel(kserve.Model):
        """One ovq model on the v2 protocol, inferring on an ``AsyncInferQueue``."""

        def __init__(self, name: str, detector: Detector, nireq: int) -> None:
            super().__init__(name)
            self.detector = detector
            compiled = detector.compiled
            self._input = compiled.inputs[0]
            self._outputs = [o.get_any_name() for o in compiled.outputs]
            self._queue = ov.AsyncInferQueue(compiled, nireq)
            self._queue.set_callback(self._done)
            # start_async blocks while every request is busy, and two threads in it at once can pick the same
            # request ("Infer Request is busy"): one thread submits, in arrival order, off the event loop
            self._submit = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"ovq-serve-{name}")
            self.ready = True
            logger.info("serving %s as '%s' on %s (%d infer requests, precision %s)",
                        detector.info.source, name, detector.device, len(self._queue),
                        detector.inference_precision)

        def get_input_types(self) -> list[dict[str, Any]]:
            return [{"name": self._input.get_any_name(), "datatype": "UINT8", "shape": list(self._input.get_shape())}]

        def get_output_types(self) -> list[dict[str, Any]]:
            return [{"name": o.get_any_name(), "datatype": v2_datatype(o.get_element_type().to_dtype()),
                     "shape": list(o.get_shape())} for o in self.detector.compiled.outputs]

        @staticmethod
        def _done(request: ov.InferRequest, userdata: tuple[Any, asyncio.Future]) -> None:
            loop, future = userdata
            outputs = [request.get_output_tensor(i).data.copy() for i in range(len(request.model_outputs))]
            loop.call_soon_threadsafe(lambda: future.done() or future.set_result(outputs))

        async def predict(self, payload: InferRequest, headers: Any = None, response_headers: Any = None):
            if len(payload.inputs) == 1 and payload.inputs[0].name == INFO_TENSOR:
                return self._info_response(payload)
            outputs = await self.infer(self._input_tensor(payload))
            # binary outputs where the request asks for them, per output (REST) or by sending raw inputs (gRPC)
            asked = {o.name: o.binary_data for o in payload.request_outputs or []}
            result = []
            for name, data in zip(self._outputs, outputs, strict=True):
                out = InferOutput(name=name, shape=list(data.shape), datatype=v2_datatype(data.dtype))
                binary = asked.get(name)
                out.set_data_from_numpy(data, binary_data=payload.use_binary_outputs if binary is None else binary)
                result.append(out)
            return InferResponse(response_id=payload.id or str(uuid.uuid4()), model_name=self.name,
                                 infer_outputs=result, use_binary_outputs=payload.use_binary_outputs,
                                 requested_outputs=payload.request_outputs)

        async def infer(self, tensor: np.ndarray) -> list[np.ndarray]:
            loop = asyncio.get_running_loop()
            future = loop.create_future()
            await loop.run_in_executor(self._submit, self._queue.start_async, {0: tensor}, (loop, future))
            return await future

        async def binary_rest(self, body: bytes, header_length: int) -> tuple[int, dict[str, str], bytes]:
            """A REST infer request with one binary input, answered with binary outputs (status, headers, body)."""
            try:
                header = json.loads(body[:header_length])
                (item,) = header["inputs"]
                size = int(item["parameters"]["binary_data_size"])
                want = [int(d) for d in self._input.get_shape()]
                if item["datatype"] != "UINT8" or [int(d) for d in item["shape"]] != want or size != int(np.prod(want)):
                    raise ValueError(f"input must be UINT8 {want} (letterboxed BGR, NHWC), got {item['datatype']} "
                                     f"{item['shape']}")
                tensor = np.frombuffer(body, np.uint8, size, header_length).reshape(want)
            except (ValueError, KeyError, TypeError) as exc:
                return 400, {"content-type": "application/json"}, json.dumps({"error": f"{exc}"}).encode()
            outputs = await self.infer(tensor)
            head = json.dumps({"model_name": self.name, "id": header.get("id", ""), "outputs": [
                {"name": n, "datatype": v2_datatype(o.dtype), "shape": list(o.shape),
                 "parameters": {"binary_data_size": o.nbytes}} for n, o in zip(self._outputs, outputs, strict=True)]})
            data = head.encode()
            return 200, {"content-type": "application/octet-stream",
                         "inference-header-content-length": str(len(data))}, data + b"".join(o.tobytes() for o in outputs)

        def _input_tensor(self, payload: InferRequest) -> np.ndarray:
            if len(payload.inputs) != 1:
                raise kserve.errors.InvalidInput(f"expected 1 input, got {len(payload.inputs)}")
            tensor = payload.inputs[0].as_numpy()
            want = tuple(self._input.get_shape())
            if tensor.dtype != np.uint8 or tuple(tensor.shape) != want:
                raise kserve.errors.InvalidInput(
                    f"input must be UINT8 {list(want)} (letterboxed BGR, NHWC), got {v2_datatype(tensor.dtype)} "
                    f"{list(tensor.shape)}"
                )
            return tensor

        def _info_response(self, payload: InferRequest) -> InferResponse:
            out = InferOutput(name=INFO_TENSOR, shape=[1], datatype="BYTES")
            out.set_data_from_numpy(np.array([self.detector.info.to_json().encode()], dtype=np.object_),
                                    binary_data=False)
            return InferResponse(response_id=payload.id or str(uuid.uuid4()), model_name=self.name,
                                 infer_outputs=[out])

    return ServedModel


def serve(models: Sequence[Any], options: ServeOptions) -> None:
    """Serve ``models`` (from :func:`served_models`) until SIGINT/SIGTERM; REST and gRPC bind ``options.host``."""
    _kserve()
    from kserve.model_server import FASTAPI_APP_IMPORT_STRING, ModelServer
    from kserve.protocol.rest.server import RESTServer

    server = ModelServer(http_port=options.http_port, grpc_port=options.grpc_port, enable_grpc=False,
                         enable_latency_logging=False)
    # kserve set up its own loggers just now: a line per request (access log, latency trace) only with -vv
    chatty = logging.getLogger("ovq").getEffectiveLevel() > logging.DEBUG
    for name in ("kserve.trace", "uvicorn.access"):
        logging.getLogger(name).setLevel(logging.WARNING if chatty else logging.INFO)
    server._register_and_check_atleast_one_model_is_ready(list(models))
    rest = RESTServer(FASTAPI_APP_IMPORT_STRING, server.dataplane, server.model_repository_extension,
                      options.http_port, workers=1, grace_period=5)
    rest.config.host = options.host
    _binary_rest_fast_path({m.name: m for m in models})
    grpc = _GrpcServer(options.host, options.grpc_port, server)
    server._rest_server = rest
    server._grpc_server = grpc
    server.servers = [rest.start(), grpc.start()]
    logger.info("v2 REST on http://%s:%d, gRPC on %s:%d; models: %s", options.host, options.http_port,
                options.host, options.grpc_port, ", ".join(m.name for m in models))
    server.setup_event_loop()
    server.register_signal_handler()
    asyncio.run(server._serve())


def _binary_rest_fast_path(models: dict[str, Any]) -> None:
    """Answer binary REST infer requests for ``models`` without kserve's request parsing.

    kserve 0.21 turns a binary input into a Python list and back (``InferRequest.from_bytes``): 0.8 s of CPU for
    one 416x416 frame, measured idle, against milliseconds here. Requests with binary inputs (header
    ``Inference-Header-Content-Length``) to ``/v2/models/NAME/infer`` are answered from the bytes, with binary
    outputs; every other request (JSON, metadata, health) goes to kserve. The middleware goes on kserve's
    application object, which is this process's own (``ovq serve`` is the process).
    """
    from kserve.model_server import app
    from starlette.middleware.base import BaseHTTPMiddleware
    from starlette.responses import Response

    async def dispatch(request: Any, call_next: Any) -> Any:
        parts = request.url.path.strip("/").split("/")
        binary = "inference-header-content-length" in request.headers
        if not (binary and request.method == "POST" and len(parts) == 4 and parts[:2] == ["v2", "models"]
                and parts[3] == "infer" and parts[2] in models):
            return await call_next(request)
        status, headers, body = await models[parts[2]].binary_rest(
            await request.body(), int(request.headers["inference-header-content-length"]))
        return Response(body, status_code=status, headers=headers)

    app.add_middleware(BaseHTTPMiddleware, dispatch=dispatch)


class _GrpcServer:
    """kserve's gRPC inference service, bound to one host (kserve's own ``GRPCServer`` binds ``[::]``)."""

    def __init__(self, host: str, port: int, model_server: Any) -> None:
        self.host, self.port, self.model_server = host, port, model_server
        self._server: Any = None

    async def start(self) -> None:
        from concurrent import futures

        from grpc import aio
        from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
        from kserve.protocol.grpc.servicer import InferenceServicer

        servicer = InferenceServicer(self.model_server.dataplane, self.model_server.model_repository_extension)
        limit = 64 * 1024 * 1024  # a 1280x1280 u8 input is 4.9 MB, beyond gRPC's 4 MB default
        self._server = aio.server(futures.ThreadPoolExecutor(max_workers=4), options=[
            ("grpc.max_send_message_length", limit), ("grpc.max_receive_message_length", limit)])
        grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, self._server)
        host = f"[{self.host}]" if ":" in self.host else self.host
        if not self._server.add_insecure_port(f"{host}:{self.port}"):
            raise OSError(f"cannot listen on {host}:{self.port} for gRPC")
        await self._server.start()
        await self._server.wait_for_termination()

    async def stop(self, sig: int | None = None) -> None:
        if self._server is not None:
            await self._server.stop(grace=2)
