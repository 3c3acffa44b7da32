"""A detector whose inference runs on a model server: letterbox and decode here, infer there.

:func:`open_detector` is the one place a command opens "a model path or a serving URL". A
:class:`RemoteDetector` has :class:`~ovq.model.detector.Detector`'s interface (``preprocess``, ``postprocess``,
``__call__``, ``async_queue``, ``outputs_of``, ``info``, ``labels``, ``compiled.outputs``), so the pipeline,
``predict``, ``eval`` and ``bench`` run it unchanged. Requests in flight are bounded by the queue's size;
each worker thread owns one connection. A server that goes away is retried like a camera: the request
waits (logged once per outage) and is sent again when the server is back, so no frame is lost or doubled;
with ``retry=False`` the first failure is the run's error.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ovq.core.detections import Detections
from ovq.core.errors import ConfigError, ModelError
from ovq.core.urls import is_serving_url
from ovq.model.decoders import ModelFacts, get_decoder
from ovq.model.decoders.base import check_thresholds
from ovq.model.detector import Detector, check_max_det, decode_params, own_family
from ovq.model.identify import served_metadata
from ovq.serving.client import ServerSettings, ServerUnavailable, ServingError, V2Client
from ovq.serving.urls import ServingURL, parse_serving_url

logger = logging.getLogger(__name__)

DEFAULT_JOBS = 4  # requests in flight: enough to hide a loopback or LAN round trip behind the server's work
RETRY_DELAYS = (0.5, 1.0, 2.0, 5.0)  # seconds between attempts while a server is unreachable (last one repeats)


def open_detector(model: str | Path | Detector | RemoteDetector, **options: Any) -> Detector | RemoteDetector:
    """A :class:`Detector` for a model path, a :class:`RemoteDetector` for a serving URL (options that only
    a local compile uses, such as ``device``, ``precision``, ``hint``, ``cache``, are ignored for a URL)."""
    if isinstance(model, (Detector, RemoteDetector)):
        return model
    if is_serving_url(model):
        remote = {k: v for k, v in options.items() if k in REMOTE_OPTIONS}
        return RemoteDetector(str(model), **remote)
    return Detector(model, **{k: v for k, v in options.items() if k not in REMOTE_ONLY})


class RunStopped(ServerUnavailable):
    """A request that waited for an unreachable server when the run was asked to stop: not sent, and not an
    inference failure (the pipeline drops its frame, as a stopped run drops the frames it did not read)."""


class _RemoteRequest:
    """What a queue's callback receives: outputs (or the error) and the round trip in milliseconds."""

    class _Tensor:
        def __init__(self, data: np.ndarray) -> None:
            self.data = data

    def __init__(self, outputs: list[np.ndarray] | None, error: BaseException | None, latency: float) -> None:
        self.outputs, self.error, self.latency = outputs, error, latency

    def get_output_tensor(self, index: int = 0) -> _Tensor:
        if self.error is not None:
            raise self.error
        return self._Tensor(self.outputs[index])


class RemoteQueue:
    """``AsyncInferQueue``'s shape over a model server: ``jobs`` worker threads, one request in flight each."""

    def __init__(self, detector: RemoteDetector, jobs: int, callback: Callable[[Any, Any], None] | None) -> None:
        self.detector = detector
        self.jobs = jobs or detector.jobs
        self._callback = callback
        self._tasks: queue.Queue[Any] = queue.Queue()
        self._free = threading.Semaphore(self.jobs)
        self._busy = 0
        self._idle = threading.Condition()
        self._clients = [detector.new_client() for _ in range(self.jobs)]
        self._threads = [
            threading.Thread(target=self._work, args=(c,), name=f"ovq-remote-{i}", daemon=True)
            for i, c in enumerate(self._clients)
        ]
        for t in self._threads:
            t.start()

    def __len__(self) -> int:
        return self.jobs

    def set_callback(self, callback: Callable[[Any, Any], None]) -> None:
        self._callback = callback

    def start_async(self, inputs: Any = None, userdata: Any = None) -> None:
        """Send one frame's input (``{0: tensor}``, a tensor, or ``None`` for :attr:`default_input`); blocks
        while ``jobs`` requests are in flight."""
        tensor = inputs[0] if isinstance(inputs, dict) else inputs
        if tensor is None:
            tensor = self.default_input
        self._free.acquire()
        with self._idle:
            self._busy += 1
        self._tasks.put((tensor, userdata))

    default_input: np.ndarray | None = None

    def wait_all(self) -> None:
        with self._idle:
            self._idle.wait_for(lambda: self._busy == 0)

    def close(self) -> None:
        self.wait_all()
        for _ in self._threads:
            self._tasks.put(None)
        for t in self._threads:
            t.join(timeout=5.0)
        for c in self._clients:
            c.close()

    def _work(self, client: V2Client) -> None:
        while True:
            task = self._tasks.get()
            if task is None:
                return
            tensor, userdata = task
            start = time.perf_counter()
            try:
                outputs, error = self.detector.infer_with(client, tensor), None
            except BaseException as exc:  # noqa: BLE001 - handed to the callback, as OpenVINO hands a failed request
                outputs, error = None, exc
            request = _RemoteRequest(outputs, error, (time.perf_counter() - start) * 1000.0)
            try:
                if self._callback is not None:
                    self._callback(request, userdata)
            except Exception as exc:  # noqa: BLE001 - a failing callback must not kill the worker
                logger.error("%s: result callback failed: %s", self.detector.url, exc)
            finally:
                self._free.release()
                with self._idle:
                    self._busy -= 1
                    self._idle.notify_all()


class _RemoteCompiled:
    """The part of ``ov.CompiledModel`` the pipeline and evaluation read: outputs and the request count."""

    def __init__(self, outputs: Sequence[str], jobs: int) -> None:
        self.outputs = list(outputs)
        self._jobs = jobs

    def get_property(self, name: str) -> Any:
        if name == "OPTIMAL_NUMBER_OF_INFER_REQUESTS":
            return self._jobs
        raise KeyError(f"a served model has no compile property {name}")


class RemoteDetector:
    """Detect with a model on a KServe v2 server at ``url`` (``http(s)://HOST:PORT/v2/models/NAME``,
    ``grpc://HOST:PORT/v2/models/NAME``); the model's ovq metadata comes from the server.

    ``jobs``: requests in flight; ``timeout``: seconds for each call; ``retry``: wait for a server that went
    away (True) or fail (False); ``wait``: also wait for one that is not reachable yet (a pipeline that
    starts before its server). A model that is not ready, carries no ovq metadata or has an input that does
    not fit its metadata is a :class:`ServingError`/:class:`ModelError` here, before anything runs.
    ``server``: how the server runs the model, as far as it says (:class:`ServerSettings`).
    """

    # the :class:`Detector` methods that only need ``info``, ``decoder`` and ``params`` run unchanged here
    preprocess = Detector.preprocess
    postprocess = Detector.postprocess
    source_size: tuple[int, int] | None = None  # the server's model resizes nothing: preprocess resizes in Python
    nms_in_graph = False  # nor does it decode: postprocess decodes its raw outputs in Python
    server = ServerSettings()

    def __init__(
        self,
        url: str | ServingURL,
        *,
        conf: float | None = None,
        iou: float | None = None,
        agnostic_nms: bool | None = None,
        classes: Sequence[int | str] | None = None,
        max_det: int | None = None,
        labels: Sequence[str] | None = None,
        jobs: int = DEFAULT_JOBS,
        timeout: float = 10.0,
        retry: bool = True,
        wait: bool = False,
    ) -> None:
        if jobs < 1:
            raise ConfigError(f"jobs {jobs}: expected at least 1 request in flight")
        if timeout <= 0:
            raise ConfigError(f"timeout {timeout}: expected a positive number of seconds")
        check_max_det(max_det)
        check_thresholds(conf, iou)
        self.url = url if isinstance(url, ServingURL) else parse_serving_url(url)
        self.jobs, self.timeout, self.retry = int(jobs), float(timeout), bool(retry)
        meta = self._connect(wait)
        if labels:
            self.info = replace(self.info, labels=list(labels))
        self.input_name, self.output_names = self._check_metadata(meta)
        self.decoder = get_decoder(self.info.family)
        self._check_family(meta)
        self.params = decode_params(self.info, conf=conf, iou=iou, agnostic_nms=agnostic_nms, max_det=max_det,
                                    classes=classes)
        self.compiled = _RemoteCompiled(self.output_names, self.jobs)
        self._outage_lock = threading.Lock()
        self._outage_since: float | None = None
        self._client: V2Client | None = None
        self._cancel = threading.Event()
        logger.info("using %s (%s, %d classes) served at %s", self.url.model, self.info.family,
                    len(self.info.labels), self.url.address)

    def _connect(self, wait: bool) -> dict[str, Any]:
        """The model's metadata and ovq info; with ``wait``, an unreachable server is waited for like a camera."""
        attempt = 0
        while True:
            client = V2Client(self.url, timeout=self.timeout)
            try:
                if not client.model_ready():
                    raise ServingError(f"{self.url}: the server has model '{self.url.model}' but it is not ready")
                meta = client.metadata()
                self.info, self.server = client.ovq_info(meta)
                if attempt:
                    logger.warning("%s: server reached", self.url)
                return meta
            except ServerUnavailable as exc:
                if not wait:
                    raise
                if not attempt:
                    logger.warning("%s; waiting for the server (--no-retry: fail instead)", exc)
            finally:
                client.close()
            time.sleep(RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)])
            attempt += 1

    @property
    def labels(self) -> list[str]:
        return self.info.labels

    @property
    def device(self) -> str:
        """Where the model runs, as eval and run report it: the server's device and where it is served (``CPU
        (served at URL)``), or the URL alone from a server that does not say (OpenVINO Model Server)."""
        return f"{self.server.device} (served at {self.url})" if self.server.device else str(self.url)

    @property
    def inference_precision(self) -> str:
        """The precision the server runs the model at, as it says (``ovq serve``); ``server`` from one that does not
        say: the server compiled the model, with the precision stored in it."""
        return self.server.precision or "server"

    def _check_metadata(self, meta: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
        inputs, outputs = meta.get("inputs") or [], meta.get("outputs") or []
        h, w = self.info.input_size
        if len(inputs) != 1 or not outputs:
            raise ModelError(f"{self.url}: expected one input and at least one output, the server lists "
                             f"{len(inputs)} input(s) and {len(outputs)} output(s)")
        shape = [int(d) for d in inputs[0].get("shape", [])]
        fits = len(shape) == 4 and all(d in (-1, want) for d, want in zip(shape, (1, h, w, 3), strict=True))
        if not fits or inputs[0].get("datatype") != "UINT8":
            raise ModelError(
                f"{self.url}: input '{inputs[0].get('name')}' is {inputs[0].get('datatype')} {shape}, but the "
                f"model's metadata says UINT8 [1, {h}, {w}, 3] (an ovq IR: letterboxed u8 NHWC)"
            )
        return str(inputs[0]["name"]), tuple(str(o["name"]) for o in outputs)

    def _check_family(self, meta: dict[str, Any]) -> None:
        """The served outputs against the family in the model's metadata: their shapes, their names (a server sends
        no graph: ovq's padded detection list is known by its name), what the graph said at conversion (stored in
        the metadata), and for a built-in family their datatype (an ovq IR's outputs are FP32)."""
        outputs = meta["outputs"]
        shapes = tuple(tuple(int(d) for d in o.get("shape", [])) for o in outputs)
        names = tuple(str(o.get("name", "")) for o in outputs)
        said = ", ".join(f"'{n}' {o.get('datatype')} {list(s)}" for n, o, s in zip(names, outputs, shapes, strict=True))
        if own_family(self.decoder) and any(o.get("datatype") != "FP32" for o in outputs):
            raise ModelError(f"{self.url}: its outputs {said} are not all FP32, as an ovq IR's of family "
                             f"'{self.info.family}' are: the server's model is not the one its metadata describes")
        facts = ModelFacts(output_shapes=shapes, input_size=self.info.input_size,
                           metadata=served_metadata(self.info), graph=None, output_names=names)
        try:
            fits = self.decoder.matches(facts)
        except Exception as exc:  # noqa: BLE001 - a family that needs the graph cannot judge a served model
            logger.debug("%s: family %s cannot check served outputs: %s", self.url, self.info.family, exc)
            return
        if fits is None:  # the shapes fit; only the graph could say more, and its IR named the family
            logger.debug("%s: family %s is told apart by the graph, which a server does not send", self.url,
                         self.info.family)
            return
        if not fits:
            raise ModelError(f"{self.url}: its outputs {said} do not fit the family '{self.info.family}' in its "
                             f"metadata ({self.decoder.expects})")

    # -- inference -----------------------------------------------------------------------------------------
    def new_client(self) -> V2Client:
        client = V2Client(self.url, timeout=self.timeout)
        client.input_name, client.output_names = self.input_name, self.output_names
        return client

    def infer_with(self, client: V2Client, tensor: np.ndarray) -> list[np.ndarray]:
        """One inference on ``client``; while the server is unreachable, wait and try again (when retrying)."""
        attempt = 0
        while True:
            try:
                outputs = client.infer(tensor)
            except ServerUnavailable as exc:
                if not self.retry:
                    raise
                if self.cancelled:
                    raise RunStopped(f"{exc}; not retried: the run was stopped") from exc
                self._outage(exc)
                # woken by cancel(): a stop during an outage was seen only after up to 5 s of sleep, and then
                # failed the run as an inference failure on the frame waiting
                self._cancel.wait(RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)])
                attempt += 1
                continue
            if self._outage_since is not None:
                self._recovered()
            return outputs

    def _outage(self, exc: BaseException) -> None:
        with self._outage_lock:
            if self._outage_since is None:
                self._outage_since = time.monotonic()
                logger.warning("%s; retrying until it is back (requests in flight wait)", exc)

    def _recovered(self) -> None:
        with self._outage_lock:
            if self._outage_since is not None:
                logger.warning("%s: server back after %.1f s", self.url, time.monotonic() - self._outage_since)
                self._outage_since = None

    def cancel(self) -> None:
        """Stop retrying: requests waiting for an unreachable server end at once with :class:`RunStopped` (a run
        being stopped)."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def __call__(self, image: np.ndarray, *, conf: float | None = None) -> Detections:
        tensor, rinfo = self.preprocess(image)
        if self._client is None:
            self._client = self.new_client()
        return self.postprocess(self.infer_with(self._client, tensor), rinfo, conf=conf)

    def infer(self, tensor: np.ndarray) -> list[np.ndarray]:
        """Raw outputs for one model input (as :meth:`preprocess` makes it)."""
        if self._client is None:
            self._client = self.new_client()
        return self.infer_with(self._client, tensor)

    def async_queue(self, jobs: int = 0, callback: Callable[[Any, Any], None] | None = None) -> RemoteQueue:
        return RemoteQueue(self, jobs, callback)

    def outputs_of(self, request: _RemoteRequest) -> list[np.ndarray]:
        if request.error is not None:
            raise request.error
        return request.outputs


REMOTE_ONLY = frozenset(("jobs", "timeout", "retry", "wait"))
REMOTE_OPTIONS = frozenset(("conf", "iou", "agnostic_nms", "classes", "max_det", "labels")) | REMOTE_ONLY
