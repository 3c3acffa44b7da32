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


class InferQueue:
    """A pool of ``jobs`` infer requests over ``compiled`` (0: the device's optimal number) with ``callback``.

    Use it as a context manager or call :meth:`close`; the underlying ``AsyncInferQueue`` is never handed out,
    so nothing keeps it alive past :meth:`close` (a request from :meth:`request` must not be kept either: it
    holds the callback too).
    """

    def __init__(self, compiled: ov.CompiledModel, jobs: int = 0, callback: Callback | None = None) -> None:
        self._queue: ov.AsyncInferQueue | None = ov.AsyncInferQueue(compiled, jobs)
        self._released = threading.Event()
        self._released.set()
        if callback is not None:
            relay = _Relay(callback)
            self._released.clear()
            weakref.finalize(relay, self._released.set)
            self._queue.set_callback(relay)

    def _open(self) -> ov.AsyncInferQueue:
        if self._queue is None:
            raise RuntimeError("the infer queue is closed")
        return self._queue

    def __len__(self) -> int:
        return len(self._open())

    def request(self, index: int) -> ov.InferRequest:
        """The ``index``-th infer request of the pool (e.g. to set an input tensor once)."""
        return self._open()[index]

    def start_async(self, inputs: Any = None, userdata: Any = None) -> None:
        """Start the next idle request (waits for one, GIL released)."""
        self._open().start_async(inputs, userdata)

    def wait_all(self) -> None:
        self._open().wait_all()

    def close(self, timeout: float = RELEASE_TIMEOUT) -> None:
        """Wait for every request, free the pool, and wait until OpenVINO's threads have freed the callback.

        Errors a callback raised (``wait_all``) propagate after the pool is freed. Closing twice is a no-op.
        """
        queue, self._queue = self._queue, None
        if queue is None:
            return
        try:
            queue.wait_all()
        finally:
            del queue
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

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class OutputBuffers:
    """Arrays for finished requests' outputs, reused frame after frame.

    A request's own output tensors are overwritten by its next inference, so a pipeline copies them out in the
    callback. :meth:`copy` puts them in a set of arrays given back (:meth:`give_back`) once the frame's result is
    out, so the sets in use settle at the frames in flight and nothing is allocated per frame. Only for a
    consumer whose decoding builds new arrays (ovq's own families): a decoder returning views of its inputs
    would see them overwritten. YOLOX-Nano's 1.2 MB a frame were a fresh allocation each time (tracemalloc).
    """

    def __init__(self) -> None:
        self._free: queue.SimpleQueue[list[np.ndarray]] = queue.SimpleQueue()

    def copy(self, request: ov.InferRequest) -> list[np.ndarray]:
        """``request``'s outputs, copied into a free set of arrays (a new set when none fits)."""
        tensors = [t.data for t in request.output_tensors]
        try:
            buffers = self._free.get_nowait()
        except queue.Empty:
            return [t.copy() for t in tensors]
        if len(buffers) != len(tensors) or any(b.shape != t.shape or b.dtype != t.dtype
                                               for b, t in zip(buffers, tensors, strict=False)):
            return [t.copy() for t in tensors]  # a dynamic output changed shape: this set is dropped
        for b, t in zip(buffers, tensors, strict=True):
            np.copyto(b, t)
        return buffers

    def give_back(self, buffers: list[np.ndarray]) -> None:
        """``buffers`` (from :meth:`copy`) are no longer read: the next copy may overwrite them."""
        self._free.put(buffers)
