"""Asynchronous inference whose Python callback never outlives it.

OpenVINO runs an ``AsyncInferQueue``'s Python callback on its own worker threads, and the worker that ran a
request's last stage keeps its own reference to the callback until that stage has fully returned - which can
be after ``wait_all()`` returned and after the queue itself was freed. When the worker's reference is the
last one, the worker frees the Python callable, which needs the GIL. If the interpreter is shutting down by
then, Python ends that thread inside C++ code that must not unwind, and the process aborts with
``terminate called without an active exception`` (exit 134) after a complete, successful run.

Found with gdb on ``ovq run`` over the OMZ person detector (``--max-frames 40``, CPU plugin, openvino
2026.4.1; aborted in 3 of 30 runs on an AMD EPYC Zen 3 shared with other jobs): the aborting thread was an
OpenVINO worker freeing the callback (``PyEval_AcquireThread`` under a shared_ptr release at the end of a
task) while the main thread was already in ``Py_FinalizeEx``.

:class:`InferQueue` owns the ``AsyncInferQueue`` and gives OpenVINO a small relay object as the callback.
:meth:`InferQueue.close` waits for every request, frees the queue, then waits - with the GIL released, so a
worker can take it - until OpenVINO has freed the relay: after ``close()`` no OpenVINO thread holds a Python
object of this queue.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import traceback
import weakref
from collections.abc import Callable
from typing import Any, Self

import numpy as np
import openvino as ov

logger = logging.getLogger(__name__)

RELEASE_TIMEOUT = 10.0  # seconds close() waits for a worker to let go of the callback (measured: 0.1-5 ms)

Callback = Callable[[ov.InferRequest, Any], None]


class _Relay:
    """The callable OpenVINO holds: forwards to the real callback; its death says OpenVINO let go of it."""

    __slots__ = ("__weakref__", "target")

    def __init__(self, target: Callback) -> None:
        self.target = target

    def __call__(self, request: ov.InferRequest, userdata: Any) -> None:
        # An error raised here reaches the caller of wait_all()/close() with its traceback, whose frames would keep
        # the relay alive (``self``) and, through ``request``, the infer request that holds the relay: close() would
        # then wait for nothing. So the error leaves without them; the traceback still says where it was raised.
        target = self.target
        del self
        try:
            target(request, userdata)
        except BaseException as exc:
            del request
            traceback.clear_frames(exc.__traceback__)
            raise


class _Pool:
    """What both queues share: a pool of infer requests (``_pool``, ``None`` once closed) and ``close()``."""

    _pool: Any

    def _open(self) -> Any:
        if self._pool is None:
            raise RuntimeError("the infer queue is closed")
        return self._pool

    def __len__(self) -> int:
        return len(self._open())

    def request(self, index: int) -> ov.InferRequest:
        """The ``index``-th infer request of the pool (e.g. to set an input tensor once)."""
        return self._open()[index]

    def close(self, timeout: float = RELEASE_TIMEOUT) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class InferQueue(_Pool):
    """A pool of ``jobs`` infer requests over ``compiled`` (0: the device's optimal number) with ``callback``.

    Use it as a context manager or call :meth:`close`; the underlying ``AsyncInferQueue`` is never handed out,
    so nothing keeps it alive past :meth:`close` (a request from :meth:`request` must not be kept either: it
    holds the callback too).
    """

    def __init__(self, compiled: ov.CompiledModel, jobs: int = 0, callback: Callback | None = None) -> None:
        self._pool: ov.AsyncInferQueue | None = ov.AsyncInferQueue(compiled, jobs)
        self._released = threading.Event()
        self._released.set()
        if callback is not None:
            relay = _Relay(callback)
            self._released.clear()
            weakref.finalize(relay, self._released.set)
            self._pool.set_callback(relay)

    def start_async(self, inputs: Any = None, userdata: Any = None) -> None:
        """Start the next idle request (waits for one, GIL released)."""
        pool = self._open()
        try:
            pool.start_async(inputs, userdata)
        except BaseException as exc:
            # Ctrl-C lands here most often (this call waits for an idle request). The traceback keeps the frame of
            # OpenVINO's Python wrapper, whose ``self`` is the AsyncInferQueue: while the error is being handled,
            # close() could not free the queue, so it waited its whole timeout for the callback (Ctrl-C in
            # `ovq eval` took 10 s and warned). The frames below this one are done: their locals can go.
            del pool
            if exc.__traceback__ is not None:
                traceback.clear_frames(exc.__traceback__.tb_next)
            raise

    def wait_all(self) -> None:
        self._open().wait_all()

    def close(self, timeout: float = RELEASE_TIMEOUT) -> None:
        """Wait for every request, free the pool, and wait until OpenVINO's threads have freed the callback.

        Errors a callback raised (``wait_all``) propagate after the pool is freed. Closing twice is a no-op.
        """
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            pool.wait_all()
        finally:
            del pool
            if not self._released.is_set():
                start = time.monotonic()
                if not self._released.wait(timeout):
                    logger.warning("OpenVINO still holds an infer callback %.0f s after its requests ended", timeout)
                else:
                    logger.debug("OpenVINO freed the infer callback %.2f ms after the queue", 1e3 * (time.monotonic() - start))

    @property
    def released(self) -> bool:
        """Whether OpenVINO has freed the callback (always true for a queue without one, and after close())."""
        return self._released.is_set()


class _Failed:
    """Stands in for a request whose inference raised: reading its outputs raises that error."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    @property
    def output_tensors(self) -> list[ov.Tensor]:
        raise self.error

    def get_output_tensor(self, index: int = 0) -> ov.Tensor:
        raise self.error


def _numpy_type(port: Any) -> np.dtype | None:
    """The NumPy type an input takes as it is; ``None`` where only OpenVINO's dispatcher can fill it (a dynamic
    type, strings, bf16 and sub-byte types, which have no NumPy type of their own)."""
    kind = port.get_element_type()
    try:
        dtype = np.dtype(kind.to_dtype())
    except Exception:  # noqa: BLE001 - OpenVINO raises a bare RuntimeError ("map::at") for a dynamic type
        return None
    return dtype if dtype.kind in "biuf" and ov.Type(dtype) == kind else None


class WaitingQueue(_Pool):
    """:class:`InferQueue`'s interface with the callback run by a Python thread of its own, never by OpenVINO.

    An ``AsyncInferQueue`` runs the Python callback on the OpenVINO worker that finished the request, so that
    worker first waits for the GIL and holds a Python object until it lets go (the exit-time abort above).
    Here requests are started without a callback; one thread waits for them in the order they were started
    (``wait()`` releases the GIL) and calls ``callback(request, userdata)``; the request is reused only after
    that, so the callback may read its outputs in place. OpenVINO's workers never touch Python. Throughput was
    the same as with ``InferQueue`` (``ovq run``, 2-core EPYC Zen 3, f32, interleaved: FastestDet 139.8 vs 141.4
    fps, YOLOX-Nano 52.2 vs 52.4): what it saves is the copy of the outputs and Python in OpenVINO's threads.
    """

    shares_inputs = True  # start_async(..., share_inputs=True) is honoured (InferQueue copies the inputs)

    def __init__(self, compiled: ov.CompiledModel, jobs: int = 0, callback: Callback | None = None) -> None:
        jobs = jobs or int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self._pool: list[ov.InferRequest] | None = [compiled.create_infer_request() for _ in range(jobs)]
        self._callback = callback
        self._idle: queue.SimpleQueue[int] = queue.SimpleQueue()
        for i in range(jobs):
            self._idle.put(i)
        self._started: queue.SimpleQueue[tuple[int, Any] | None] = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._dtypes = [_numpy_type(port) for port in compiled.inputs]
        self._held: list[Any] = [None] * jobs  # shared inputs of each request while it runs
        self._thread = threading.Thread(target=self._complete, name="ovq-infer-done", daemon=True)
        self._thread.start()

    def _direct(self, inputs: Any) -> bool:
        """Whether ``inputs`` can be handed to the request as they are: ``{index: array}`` of C-contiguous arrays
        of the inputs' own types. Then each is wrapped in a shared tensor, skipping OpenVINO's Python input
        dispatcher (16 vs 41 us a frame, one 352x352 u8 image, EPYC Zen 5); anything else goes through it."""
        if not isinstance(inputs, dict):
            return False
        for port, array in inputs.items():
            if (not isinstance(port, int) or not 0 <= port < len(self._dtypes) or not isinstance(array, np.ndarray)
                    or array.dtype != self._dtypes[port] or not array.flags.c_contiguous):
                return False
        return True

    def start_async(self, inputs: Any = None, userdata: Any = None, share_inputs: bool = False) -> None:
        """Start an idle request (waits for one); ``share_inputs``: OpenVINO reads the arrays where they are, so
        they must stay unchanged until the callback ran."""
        requests = self._open()
        index = self._idle.get()
        try:
            request = requests[index]
            if share_inputs and self._direct(inputs):
                for port, array in inputs.items():
                    request.set_input_tensor(port, ov.Tensor(array, shared_memory=True))
                self._held[index] = inputs  # alive until the request is done, as OpenVINO's dispatcher keeps them
                request.start_async()
            else:
                request.start_async(inputs, share_inputs=share_inputs)
        except BaseException:
            self._held[index] = None
            self._idle.put(index)
            raise
        self._started.put((index, userdata))

    def _complete(self) -> None:
        while (item := self._started.get()) is not None:
            index, userdata = item
            request: Any = self._pool[index]
            try:
                request.wait()
            except Exception as exc:  # noqa: BLE001 - the callback's reading of the outputs raises it
                request = _Failed(exc)
            try:
                if self._callback is not None:
                    self._callback(request, userdata)
            except BaseException as exc:  # noqa: BLE001 - raised again by wait_all()/close()
                if self._error is None:
                    self._error = exc
            finally:
                self._held[index] = None
                self._idle.put(index)

    def wait_all(self) -> None:
        """Wait until every started request's callback ran; raise the first error a callback raised."""
        # Every request is idle once all their indices are back: take them all, then give them back. (A counter
        # under a Condition did the same for two more lock round trips a frame on each of two threads.)
        idle = [self._idle.get() for _ in range(len(self._open()))]
        for index in idle:
            self._idle.put(index)
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def close(self, timeout: float = RELEASE_TIMEOUT) -> None:
        """Wait for every request, stop the thread, free the requests. Closing twice is a no-op."""
        if self._pool is None:
            return
        try:
            self.wait_all()
        finally:
            self._started.put(None)
            self._thread.join(timeout)
            self._pool = None

    @property
    def released(self) -> bool:
        return self._pool is None
