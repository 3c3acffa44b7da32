"""The video pipeline: many sources, one compiled model, asynchronous inference, ordered results to sinks.

Threads and queues (every queue is bounded)::

    reader per source --FrameBuffer--> scheduler --WaitingQueue--> completion --results--> post-processor --> sinks
    (decode video)    (file: N frames, (round robin,  (OpenVINO      (decode boxes  (reorder per stream,
                       live: newest)    preprocess)    requests)      in place)      track, stats, sinks)

The scheduler takes a frame only when one of ``nireq + extra`` slots is free; a slot is returned once the
frame's result went through the sinks, so frames in flight, results waiting for reordering and the results
queue are all bounded. Results of one stream may complete out of order on the device; the post-processor
puts them back in frame order before tracking and writing.

The main thread (inside :meth:`Pipeline.run`) only supervises: stop requests, stall checks of live sources,
periodic stats lines and the end of the run.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ovq.core.detections import Detections
from ovq.core.errors import ConfigError, OvqError
from ovq.core.geometry import ResizeInfo
from ovq.model.detector import Detector
from ovq.runtime import steal
from ovq.runtime.signal_stack import repair_signal_stack
from ovq.serving.remote import RemoteDetector, RunStopped, open_detector
from ovq.streaming.readers import FileReader, Frame, LiveReader, ReconnectPolicy
from ovq.streaming.results import FrameResult, Sink
from ovq.streaming.sources import check_decode, parse_source, stream_name_problem
from ovq.streaming.stats import RunSummary, StreamMeter, StreamStats
from ovq.streaming.streams import Opening, Stream, open_streams
from ovq.streaming.variants import with_nms, with_resize

logger = logging.getLogger(__name__)


@dataclass
class _Job:
    stream: int
    seq: int
    frame: Frame
    rinfo: ResizeInfo
    tensor: Any = None  # the input, shared with the request until its callback ran
    outputs: list[np.ndarray] | None = None  # copied outputs for the post-processor to decode, or
    dets: Detections | None = None  # decoded on completion
    error: BaseException | None = None  # inference failed
    decode_error: BaseException | None = None


_END = object()


class Pipeline:
    """Run a detector over several video sources at once and send ordered results to sinks.

    ``model`` is a model path (folder, ``.xml``, ``.onnx``, ``.pt``) compiled once with the ``throughput`` hint
    (unless ``hint`` says otherwise), or an already built :class:`Detector`. All streams share its ``nireq``
    requests (0: the device's optimal number + 1; twice it + 1 on files read flat out).

    Files are read losslessly; live sources (camera, URL, ``synth://``) keep their newest frame and are
    reopened by ``reconnect`` when they fail. :meth:`run` blocks until every source ended, each stream reached
    ``max_frames``, or :meth:`stop` was called; it drains the requests in flight, closes the sinks and returns
    a :class:`RunSummary`. A file that gives no frame fails the run (:class:`SourceError`); a video that ends
    before the frame count its container states is logged as a warning, or fails the run with ``strict``.

    With ``resize_in_graph``, when every source says its frame size at opening (files, and live sources opened
    at start-up) and the sizes agree, the detector runs a variant that letterboxes inside OpenVINO
    (:meth:`Detector.for_source`): decoded frames go to the device as they are. ``None`` (the default) does so
    on GPU and NPU, taking the resize off the CPU, and resizes in Python on the CPU, where the graph was slower
    for all three shared models (why: :mod:`ovq.model.ingraph`; benchmarks/bench_pipeline.py).
    With ``nms_in_graph``, the detector's graph also decodes the boxes and runs NMS, for the families that can
    (:meth:`Detector.with_nms_in_graph`); ``None`` (the default) does so on the CPU (measured: :mod:`.variants`).

    ``decode`` selects video decoding for files (``sources.DECODE_MODES``; "auto": what OpenCV's FFmpeg offers,
    VA-API on Intel iGPUs, else software, with the cores shared out over the streams), in ``extra["decode"]``.
    ``realtime_files`` reads files at their own frame rate, ``pace_fps`` at that rate, keeping the newest frame
    as a camera would (``ovq capacity`` runs N copies of a file so), out of phase over one frame period.

    What the pipeline asks of its detector (a remote one implements just this): ``preprocess(image) -> (tensor,
    rinfo)``, ``async_queue(jobs, callback)`` (``start_async({0: tensor}, job)``, ``wait_all()``, ``close()``),
    ``outputs_of(request)`` in the callback, ``postprocess(outputs, rinfo, conf=)``, ``compiled``, ``device``,
    ``labels``, ``info.source``, ``inference_precision``; optionally ``for_source(height, width)`` (a detector of
    the same kind taking such frames) and ``completion_queue`` (:class:`~ovq.runtime.inference.WaitingQueue`:
    frames shared with OpenVINO, not copied; with ``decodes_into_new_arrays``, boxes decoded on completion from
    ``output_views(request)``, not copies: YOLOX-Nano's 1.2 MB a frame)."""

    def __init__(
        self,
        model: str | Path | Detector | RemoteDetector,
        sources: Sequence[str],
        *,
        names: Sequence[str] | None = None,
        device: str = "AUTO",
        conf: float | None = None,
        precision: str | None = None,
        hint: str | None = None,
        nireq: int = 0,
        track: bool = False,
        sinks: Sequence[Sink] = (),
        max_frames: int | None = None,
        stats_interval: float = 10.0,
        reconnect: ReconnectPolicy | None = None,
        realtime_files: bool = False,
        pace_fps: float | None = None,
        resize_in_graph: bool | None = None,
        nms_in_graph: bool | None = None,
        decode: str = "auto",
        strict: bool = False,
    ) -> None:
        if isinstance(sources, (str, Path)):
            sources = [str(sources)]
        if not sources:
            raise ConfigError("no sources given")
        names = list(names) if names is not None else [f"s{i}" for i in range(len(sources))]
        if len(names) != len(sources):
            raise ConfigError(f"{len(names)} stream names for {len(sources)} sources")
        if len(set(names)) != len(names):
            raise ConfigError(f"stream names must be unique, got {names}")
        for name in names:
            if problem := stream_name_problem(name):
                raise ConfigError(problem)
        if max_frames is not None and max_frames <= 0:
            raise ConfigError(f"max_frames must be > 0, got {max_frames}")
        if nireq < 0:
            raise ConfigError(f"nireq must be >= 0, got {nireq}")
        if pace_fps is not None and not pace_fps > 0:
            raise ConfigError(f"pace_fps must be > 0, got {pace_fps}")
        for sink in sinks:
            if not isinstance(sink, Sink):
                raise ConfigError(f"{sink!r} is not a sink: it needs write(result) and close()")
        specs = [parse_source(s) for s in sources]
        check_decode(decode, on_this_machine=any(spec.kind != "camera" for spec in specs))
        self.reconnect = reconnect or ReconnectPolicy()
        self.sinks = list(sinks)
        self.max_frames = max_frames
        self.stats_interval = stats_interval
        self.realtime_files = realtime_files or pace_fps is not None
        self.pace_fps = pace_fps
        self.resize_in_graph = resize_in_graph
        self.nms_in_graph = nms_in_graph
        self.decode = decode
        self.resized_from: tuple[int, int] | None = None  # the frame size the graph resizes from, when it does
        self.strict = strict
        self.track = track
        self.conf = conf
        if track:
            from ovq.streaming.tracking import check_tracking_available

            check_tracking_available()
        # a model path, a Detector, a serving URL or a RemoteDetector (ovq.serving.remote)
        self.detector = open_detector(model, device=device, conf=conf, precision=precision, hint=hint or "throughput",
                                      graph_nms=nms_in_graph is True)  # a family that cannot: said before compiling
        # requests waiting keep the device fed while Python works: optimal + 1 took FastestDet 372 -> 406 FPS (Zen 3,
        # f32), 2 x optimal + 1 on files 513 -> 542 (Zen 5, bf16, 24 pairs); not live: a frame in flight goes stale
        optimal = int(self.detector.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        flat_out = not (self.realtime_files or isinstance(self.detector, RemoteDetector) or any(s.live for s in specs))
        self.nireq = nireq or optimal + 1 + optimal * flat_out
        self._streams = [
            Stream(index=i, name=name, spec=spec, meter=StreamMeter(name, spec.display, connected=not spec.live))
            for i, (name, spec) in enumerate(zip(names, specs, strict=True))
        ]
        self._stop_requested = False
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._results: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._slots: queue.SimpleQueue[None] = queue.SimpleQueue()  # tokens: a Semaphore is 4 lock trips a frame
        for _ in range(self.nireq + max(2, self.nireq)):
            self._slots.put(None)
        self._decode_on_completion = False  # decode from the request's own outputs, on the completion thread
        self._error: BaseException | None = None
        self._ran = False

    @property
    def names(self) -> list[str]:
        return [s.name for s in self._streams]

    def stream_stats(self) -> dict[str, StreamStats]:
        """Each stream's counters for the whole run so far (safe from any thread; the live view polls it)."""
        return {st.name: st.meter.snapshot() for st in self._streams}

    def stop(self) -> None:
        """Ask :meth:`run` to stop: sources stop, requests in flight drain, sinks close.

        Only sets a flag (the run loop polls it every 0.1 s), so it is safe from any thread and from a
        signal handler.
        """
        self._stop_requested = True

    # -- running -------------------------------------------------------------------------------------------
    def run(self) -> RunSummary:
        if self._ran:
            raise RuntimeError("a Pipeline runs once; build a new one to run again")
        self._ran = True
        t0, host0 = time.monotonic(), steal.sample()
        infer_queue: Any = None
        try:
            self._open_sources()
            make = getattr(self.detector, "completion_queue", self.detector.async_queue)  # served: a RemoteQueue
            infer_queue = make(self.nireq, self._on_done)
            self._decode_on_completion = getattr(self.detector, "decodes_into_new_arrays", False) is True
            for sink in self.sinks:
                start = getattr(sink, "start", None)
                if callable(start):
                    start(self.names)
        except BaseException:
            if infer_queue is not None:
                infer_queue.close()
            for st in self._streams:
                if st.reader is not None:
                    st.reader.release()
            self._close_sinks(failed=True)
            raise
        post = threading.Thread(target=self._post_loop, name="ovq-post", daemon=True)
        scheduler = threading.Thread(target=self._schedule_loop, args=(infer_queue,), name="ovq-schedule", daemon=True)
        logger.info("running %d stream(s) on %s (inference precision %s, %d infer requests)", len(self._streams),
                    self.detector.device, self.detector.inference_precision, self.nireq)
        for st in self._streams:
            st.reader.start()
        post.start()
        scheduler.start()
        try:
            self._supervise(post)
        finally:
            self._shutdown(scheduler, post)
        resize = f"graph from {self.resized_from[1]}x{self.resized_from[0]}" if self.resized_from else "python"
        summary = RunSummary(
            streams={st.name: st.meter.snapshot() for st in self._streams},
            seconds=time.monotonic() - t0,
            model=str(self.detector.info.source or ""),
            device=self.detector.device,
            inference_precision=self.detector.inference_precision,
            nireq=self.nireq,
            stopped=self._stop_requested,
            extra={"decode": {st.name: st.decoder or getattr(st.reader, "decoder", None) for st in self._streams},
                   "resize": resize,
                   "nms": "graph" if getattr(self.detector, "nms_in_graph", False) else "python",
                   "steal_percent": steal.percent(host0, steal.sample())},
        )
        if self._error is not None:
            raise self._error
        return summary

    def _open_sources(self) -> None:
        """Open files (and live sources when not retrying) now, so bad input fails before anything runs."""
        open_streams(self._streams, Opening(
            reconnect=self.reconnect, decode=self.decode, wake=self._wake, realtime_files=self.realtime_files,
            pace_fps=self.pace_fps, max_frames=self.max_frames, track=self.track,
        ))
        self.detector = with_nms(self.detector, self.nms_in_graph, self.conf)
        self.detector, self.resized_from = with_resize(self.detector, self.resize_in_graph,
                                                       {st.size for st in self._streams})

    def _supervise(self, post: threading.Thread) -> None:
        next_stats = time.monotonic() + self.stats_interval if self.stats_interval > 0 else float("inf")
        next_stack_check = 0.0
        while post.is_alive():
            post.join(0.1)
            if time.monotonic() >= next_stack_check:  # a compiled model collected meanwhile must not turn Ctrl-C
                next_stack_check = time.monotonic() + 1.0  # into a crash (ovq.runtime.signal_stack)
                repair_signal_stack()
            if self._stop_requested and not self._stopping.is_set():
                logger.info("stop requested: draining requests in flight")
                if isinstance(self.detector, RemoteDetector):
                    self.detector.cancel()  # requests waiting for a server that is away fail instead of waiting
                self._stopping.set()
                self._wake.set()
            now = time.monotonic()
            for st in self._streams:
                if isinstance(st.reader, LiveReader) and not st.done:
                    st.reader.check_stall(now)
            if now >= next_stats:
                next_stats = now + self.stats_interval
                for st in self._streams:
                    logger.info("%s", st.meter.interval().line())

    def _shutdown(self, scheduler: threading.Thread, post: threading.Thread) -> None:
        self._stopping.set()
        self._wake.set()
        for st in self._streams:
            st.reader.stop()
            st.buffer.discard()
        scheduler.join()
        post.join()
        if self._error is None and not self._stop_requested:  # what each file delivered, against what it said
            self._error = FileReader.delivery_error([(st.name, st.reader, st.spec) for st in self._streams], self.strict)
        elif self._error is None:  # stopped: a run no camera ever answered is no success either
            self._error = LiveReader.stopped_before_any_frame([(st.name, st.reader) for st in self._streams])
        self._close_sinks()
        for st in self._streams:
            st.reader.join(timeout=1.0)

    def _close_sinks(self, failed: bool = False) -> None:
        """Close every sink; after a failure, ``abort()`` those that have it (they replace no earlier output)."""
        for sink in self.sinks:
            abort = getattr(sink, "abort", None) if failed or self._error is not None else None
            try:
                abort() if callable(abort) else sink.close()
            except Exception as exc:  # noqa: BLE001 - one failing sink must not keep the others open
                if self._error is not None:  # the first error is run()'s to raise (one line); a later one is logged
                    logger.error("closing %s failed: %s", type(sink).__name__, exc)
                self._error = self._error or exc

    # -- scheduler thread ----------------------------------------------------------------------------------
    def _schedule_loop(self, infer_queue: Any) -> None:
        try:
            self._schedule(infer_queue)
        except BaseException as exc:  # noqa: BLE001 - handed to run(), which raises it
            self._fail(exc)
        finally:
            try:
                infer_queue.close()
            finally:
                self._results.put(_END)

    def _schedule(self, infer_queue: Any) -> None:
        turn = itertools.cycle(range(len(self._streams)))
        share = {"share_inputs": True} if getattr(infer_queue, "shares_inputs", False) else {}
        while not self._stopping.is_set():
            if all(st.done for st in self._streams):
                return
            try:
                self._slots.get(timeout=0.1)
            except queue.Empty:
                continue
            self._wake.clear()
            picked = self._pick(turn)
            if picked is None:
                self._slots.put(None)
                self._wake.wait(0.1)
                continue
            st, frame = picked
            tensor, rinfo = self.detector.preprocess(frame.image)
            job = _Job(stream=st.index, seq=st.submitted, frame=frame, rinfo=rinfo, tensor=tensor)
            if st.submitted == 0:
                st.meter.started()
            st.submitted += 1
            infer_queue.start_async({0: tensor}, job, **share)  # shared: the job holds the frame until completion
            if self.max_frames is not None and st.submitted >= self.max_frames:
                self._finish_stream(st, "reached --max-frames")

    def _pick(self, turn: Any) -> tuple[Stream, Frame] | None:
        for _ in range(len(self._streams)):
            st = self._streams[next(turn)]
            if st.done:
                continue
            frame = st.buffer.get()
            if frame is not None:
                return st, frame
            if st.buffer.ended:
                self._finish_stream(st, "source ended")
        return None

    def _finish_stream(self, st: Stream, why: str) -> None:
        st.done = True
        st.meter.finished()
        st.reader.stop()
        st.buffer.discard()
        logger.info("%s: %s after %d frames", st.name, why, st.submitted)

    # -- inference callback (OpenVINO's thread) ------------------------------------------------------------
    def _on_done(self, request: Any, job: _Job) -> None:
        here = self._decode_on_completion  # our own thread, the request not reused yet: read its outputs in place
        try:
            outputs = self.detector.output_views(request) if here else self.detector.outputs_of(request)
        except BaseException as exc:  # noqa: BLE001 - reported by the post-processing thread
            job.error = exc
        else:
            try:
                job.dets = self.detector.postprocess(outputs, job.rinfo, conf=self.conf) if here else None
            except BaseException as exc:  # noqa: BLE001 - reported by the post-processing thread
                job.decode_error = exc
            job.outputs = None if here else outputs
        job.tensor = None
        self._results.put(job)

    # -- post-processing thread ----------------------------------------------------------------------------
    def _post_loop(self) -> None:
        while True:
            job = self._results.get()
            if job is _END:
                return
            st = self._streams[job.stream]
            st.pending[job.seq] = job
            while st.next_seq in st.pending:
                ready = st.pending.pop(st.next_seq)
                st.next_seq += 1
                try:
                    if self._error is None:
                        self._deliver(st, ready)
                except BaseException as exc:  # noqa: BLE001 - handed to run(), which raises it
                    self._fail(exc)
                finally:
                    self._slots.put(None)

    def _deliver(self, st: Stream, job: _Job) -> None:
        if job.error is not None:
            if self._stop_requested and isinstance(job.error, RunStopped):  # its server was away: not sent
                return st.meter.dropped()
            st.meter.error()
            raise OvqError(f"{st.name}: inference failed on frame {job.frame.index}: {job.error}")
        if job.decode_error is not None:
            raise job.decode_error
        dets = job.dets if job.dets is not None else self.detector.postprocess(job.outputs, job.rinfo, conf=self.conf)
        if st.tracker is not None:
            stamp = job.frame.t_capture if (st.spec.live or self.realtime_files) else None
            dets = st.tracker.update(dets, timestamp=stamp)
        latency_ms = (time.monotonic() - job.frame.t_capture) * 1000.0
        result = FrameResult(
            stream=st.name, source=st.spec.display, frame_index=job.frame.index, timestamp=job.frame.timestamp,
            frame=job.frame.image, detections=dets, latency_ms=latency_ms, labels=self.detector.labels or None,
            fps=st.reader.fps or st.fps,
        )
        st.meter.result(latency_ms)
        for sink in self.sinks:
            sink.write(result)

    def _fail(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
            # INFO, not ERROR: the caller raises the error itself (the CLI's one line; with -q the only one)
            logger.info("stopping the run after an error: draining the frames in flight (the error follows)")
            logger.debug("the error: %s", exc)
        self._stopping.set()
        self._wake.set()

