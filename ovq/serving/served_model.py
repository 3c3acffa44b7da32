"""One ovq model on the v2 protocol (a ``kserve.Model``), inferring on an ``AsyncInferQueue``.

Imported only by ``ovq serve`` (it imports kserve). Requests are checked against the model before they reach
OpenVINO: the input's name, datatype and shape, the outputs asked for, and for a binary REST request the sizes
in its header against the bytes that came; a request that does not fit is :class:`kserve.errors.InvalidInput`
(HTTP 400, gRPC INVALID_ARGUMENT) naming what fits.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kserve
import numpy as np
import openvino as ov
from kserve import InferOutput, InferRequest, InferResponse
from kserve.errors import InvalidInput
from kserve.protocol.model_repository_extension import ModelRepositoryExtension

from ovq.model.detector import Detector
from ovq.serving.client import INFO_TENSOR, SERVED_KEY, v2_datatype

logger = logging.getLogger(__name__)


# what JSON data other than integers came as, by numpy's kind of it
_KINDS = {"f": "numbers with a fraction", "b": "true/false", "U": "strings", "c": "complex numbers"}


class ServedModel(kserve.Model):
    """One ovq model on the v2 protocol, inferring on an ``AsyncInferQueue``."""

    def __init__(self, name: str, detector: Detector, nireq: int) -> None:
        super().__init__(name)
        self.detector = detector
        compiled = detector.compiled
        self._input = compiled.inputs[0]
        self.input_name = self._input.get_any_name()
        self.input_shape = [int(d) for d in self._input.get_shape()]
        self.input_nbytes = int(np.prod(self.input_shape))  # UINT8
        self._outputs = [o.get_any_name() for o in compiled.outputs]
        self._queue = ov.AsyncInferQueue(compiled, nireq)
        self._queue.set_callback(self._done)
        # start_async blocks while every request is busy, and two threads in it at once can pick the same
        # request ("Infer Request is busy"): one thread submits, in arrival order, off the event loop
        self._submit = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"ovq-serve-{name}")
        self.ready = True
        self.info_json = _info_json(detector, len(self._queue))
        logger.info("serving %s as '%s' on %s (%d infer requests, precision %s)",
                    detector.info.source, name, detector.device, len(self._queue), detector.inference_precision)

    @property
    def expected(self) -> str:
        return f"input '{self.input_name}' UINT8 {self.input_shape} (letterboxed BGR, NHWC)"

    def get_input_types(self) -> list[dict[str, Any]]:
        return [{"name": self.input_name, "datatype": "UINT8", "shape": list(self.input_shape)}]

    def get_output_types(self) -> list[dict[str, Any]]:
        return [{"name": o.get_any_name(), "datatype": v2_datatype(o.get_element_type().to_dtype()),
                 "shape": list(o.get_shape())} for o in self.detector.compiled.outputs]

    @staticmethod
    def _done(request: ov.InferRequest, userdata: tuple[Any, asyncio.Future]) -> None:
        loop, future = userdata
        outputs = [request.get_output_tensor(i).data.copy() for i in range(len(request.model_outputs))]
        loop.call_soon_threadsafe(lambda: future.done() or future.set_result(outputs))

    async def infer(self, tensor: np.ndarray) -> list[np.ndarray]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        await loop.run_in_executor(self._submit, self._queue.start_async, {0: tensor}, (loop, future))
        return await future

    def asked_outputs(self, requested: dict[str, bool | None]) -> list[str]:
        """The outputs to answer with, in the model's order (all of them when none were asked for)."""
        unknown = [n for n in requested if n not in self._outputs]
        if unknown:
            raise InvalidInput(f"unknown output {', '.join(repr(n) for n in unknown)}; the model's outputs: "
                               f"{', '.join(self._outputs)}")
        return [n for n in self._outputs if not requested or n in requested]

    # -- JSON REST and gRPC (through kserve) ---------------------------------------------------------------
    async def predict(self, payload: InferRequest, headers: Any = None, response_headers: Any = None):
        if len(payload.inputs) == 1 and payload.inputs[0].name == INFO_TENSOR:
            return self._info_response(payload.id)
        asked = {o.name: o.binary_data for o in payload.request_outputs or []}
        names = self.asked_outputs(asked)
        outputs = dict(zip(self._outputs, await self.infer(self._input_tensor(payload)), strict=True))
        # binary outputs where the request asks for them, per output (REST) or by sending raw inputs (gRPC)
        result = []
        for name in names:
            data = outputs[name]
            out = InferOutput(name=name, shape=list(data.shape), datatype=v2_datatype(data.dtype))
            binary = asked.get(name)
            out.set_data_from_numpy(data, binary_data=payload.use_binary_outputs if binary is None else binary)
            result.append(out)
        return InferResponse(response_id=payload.id or str(uuid.uuid4()), model_name=self.name,
                             infer_outputs=result, use_binary_outputs=payload.use_binary_outputs,
                             requested_outputs=payload.request_outputs)

    def _input_tensor(self, payload: InferRequest) -> np.ndarray:
        if len(payload.inputs) != 1:
            raise InvalidInput(f"expected 1 input, got {len(payload.inputs)}; the model takes {self.expected}")
        item = payload.inputs[0]
        self.check_input(item.name, item.datatype, item.shape)
        try:  # JSON data that does not fill its shape, 300 for a UINT8: numpy's ValueError/OverflowError
            # JSON or gRPC contents (raw bytes: none): numpy cast 0.5 to 0. Converting twice costs 15 ms for a 352x352
            # frame (EPYC Zen 5), against about 0.8 s for kserve to parse that JSON: binary requests skip both
            if isinstance(item.data, list) and item.data:
                kind = np.asarray(item.data).dtype.kind
                if kind not in "iu":
                    raise TypeError(f"UINT8 data are integers from 0 to 255, got {_KINDS.get(kind, 'mixed values')}")
            tensor = item.as_numpy()
        except (ValueError, TypeError, OverflowError) as exc:
            raise InvalidInput(f"input '{item.name}': its data does not fit UINT8 {self.input_shape}: "
                               f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
        if tensor.dtype != np.uint8 or list(tensor.shape) != self.input_shape:
            raise InvalidInput(f"the model takes {self.expected}, got {v2_datatype(tensor.dtype)} "
                               f"{list(tensor.shape)}")
        return tensor

    def check_input(self, name: Any, datatype: Any, shape: Any) -> None:
        """An input's name, datatype and shape against the model's, as one message naming what fits."""
        if name != self.input_name:
            raise InvalidInput(f"unknown input {name!r}; the model takes {self.expected}")
        try:
            dims = [int(d) for d in shape]
        except (TypeError, ValueError):
            dims = shape
        if datatype != "UINT8" or dims != self.input_shape:
            raise InvalidInput(f"the model takes {self.expected}, got {datatype} {dims}")

    def _info_response(self, request_id: str | None) -> InferResponse:
        out = InferOutput(name=INFO_TENSOR, shape=[1], datatype="BYTES")
        out.set_data_from_numpy(np.array([self.info_json.encode()], dtype=np.object_),
                                binary_data=False)
        return InferResponse(response_id=request_id or str(uuid.uuid4()), model_name=self.name,
                             infer_outputs=[out])

    # -- binary REST, answered from the bytes (see ovq.serving.rest_gate) ----------------------------------
    def binary_limit(self) -> int:
        """Bytes a binary REST infer request may have: the input plus 64 KiB of JSON header (ovq's is 200 B)."""
        return self.input_nbytes + 64 * 1024

    def json_limit(self) -> int:
        """Bytes a JSON REST request may have: the input written as JSON (up to 5 characters a UINT8, "255, ")
        plus the same header margin."""
        return 6 * self.input_nbytes + 64 * 1024

    async def binary_rest(self, body: bytes, header_length: int) -> tuple[int, dict[str, str], bytes]:
        """A REST infer request with one binary input: (status, headers, body); a bad one is ``InvalidInput``."""
        header = _binary_header(body, header_length)
        (item,) = _inputs_of(header)
        size = _binary_size(item)
        if item.get("name") == INFO_TENSOR and item.get("datatype") == "BYTES":  # tritonclient's binary BYTES
            return _json_answer({"model_name": self.name, "id": header.get("id", ""), "outputs": [{
                "name": INFO_TENSOR, "datatype": "BYTES", "shape": [1], "data": [self.info_json]}]})
        self.check_input(item.get("name"), item.get("datatype"), item.get("shape", []))
        if size != self.input_nbytes:
            raise InvalidInput(f"input '{self.input_name}': binary_data_size {size} is wrong; UINT8 "
                               f"{self.input_shape} is {self.input_nbytes} bytes")
        if len(body) - header_length != size:
            raise InvalidInput(f"the body has {len(body) - header_length} bytes after its "
                               f"{header_length}-byte header; binary_data_size says {size}")
        tensor = np.frombuffer(body, np.uint8, size, header_length).reshape(self.input_shape)
        binary = _requested(header)
        names = self.asked_outputs(binary)
        outputs = dict(zip(self._outputs, await self.infer(tensor), strict=True))
        return _binary_answer(self.name, header.get("id", ""), {n: outputs[n] for n in names}, binary)


class FixedModels(ModelRepositoryExtension):
    """kserve's model repository extension with the models fixed: ``ovq serve`` serves the models it was started
    with, and a client's load or unload request is refused (HTTP 501, gRPC UNIMPLEMENTED). kserve's unloaded a
    model for any client that asked (``POST /v2/repository/models/NAME/unload``, no credentials) and could not load
    it back: the server answered 404 for the model until it was restarted."""

    async def load(self, model_name: str) -> None:
        raise NotImplementedError(self._refused(model_name))

    async def unload(self, model_name: str) -> None:
        raise NotImplementedError(self._refused(model_name))

    @staticmethod
    def _refused(model_name: str) -> str:
        return (f"model '{model_name}': ovq serve does not load or unload models; it serves those it was started "
                "with until it stops")


def _info_json(detector: Detector, nireq: int) -> str:
    """The answer to an ``ovq_info`` request: the model's ovq metadata, and how this server runs it (a client's
    ``ovq bench`` reports these for the served model, not its own defaults)."""
    compiled = detector.compiled
    try:
        device = ",".join(compiled.get_property("EXECUTION_DEVICES")) or detector.device
        hint = str(compiled.get_property("PERFORMANCE_HINT")).lower()
    except RuntimeError:  # a device plug-in without the property
        device, hint = detector.device, str(detector.config.get("PERFORMANCE_HINT", "")).lower()
    served = {"device": device, "hint": hint, "precision": detector.inference_precision, "infer_requests": nireq}
    return json.dumps({**json.loads(detector.info.to_json()), SERVED_KEY: served}, sort_keys=True)


def _binary_header(body: bytes, header_length: int) -> dict[str, Any]:
    if not 0 < header_length <= len(body):
        raise InvalidInput(f"Inference-Header-Content-Length {header_length}: the body has {len(body)} bytes")
    try:
        header = json.loads(body[:header_length])
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"the request's JSON header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise InvalidInput("the request's JSON header is not an object")
    return header


def _inputs_of(header: dict[str, Any]) -> list[dict[str, Any]]:
    inputs = header.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise InvalidInput(f"expected 1 input, got {len(inputs) if isinstance(inputs, list) else 'none'}")
    return inputs


def _binary_size(item: dict[str, Any]) -> int:
    params = item.get("parameters")
    value = params.get("binary_data_size") if isinstance(params, dict) else None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput(f"input {item.get('name')!r}: binary_data_size {value!r} is not a size in bytes")
    return value


def _requested(header: dict[str, Any]) -> dict[str, bool | None]:
    """The outputs asked for, each with its ``binary_data`` (None: not said, binary here)."""
    found: dict[str, bool | None] = {}
    for out in header.get("outputs") or []:
        if not isinstance(out, dict) or not isinstance(out.get("name"), str):
            raise InvalidInput("each requested output needs a name")
        params = out.get("parameters") if isinstance(out.get("parameters"), dict) else {}
        found[out["name"]] = None if "binary_data" not in params else bool(params["binary_data"])
    return found


def _json_answer(body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    return 200, {"content-type": "application/json"}, json.dumps(body).encode()


def _binary_answer(model: str, request_id: str, outputs: dict[str, np.ndarray],
                   binary: dict[str, bool | None]) -> tuple[int, dict[str, str], bytes]:
    """Outputs as binary (the default here) or as JSON data where the request said ``binary_data: false``."""
    entries, chunks = [], []
    for name, data in outputs.items():
        entry: dict[str, Any] = {"name": name, "datatype": v2_datatype(data.dtype), "shape": list(data.shape)}
        if binary.get(name) is False:
            entry["data"] = data.reshape(-1).tolist()
        else:
            entry["parameters"] = {"binary_data_size": data.nbytes}
            chunks.append(data.tobytes())
        entries.append(entry)
    head = json.dumps({"model_name": model, "id": request_id, "outputs": entries}).encode()
    if not chunks:
        return 200, {"content-type": "application/json"}, head
    return 200, {"content-type": "application/octet-stream",
                 "inference-header-content-length": str(len(head))}, head + b"".join(chunks)
