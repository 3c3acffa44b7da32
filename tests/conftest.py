"""Shared fixtures: the real assets in ../shared/assets (skipped when absent) and tiny models."""

from __future__ import annotations

import logging
import os
import select
import signal
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

from ovq.core.detections import Detections
from ovq.runtime.cpu import int8_kernels

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT.parent / "shared" / "assets"

# How this machine's CPU runs INT8 (ovq.runtime.cpu.int8_kernels): "amx", "vnni", "no-vnni" or "unknown". This
# project's machines vary between sessions: an AMX Xeon, an AMD EPYC Zen 4 (VNNI), an AMD EPYC Zen 3 (AVX2).
CPU_INT8 = int8_kernels()


def popen_as_terminal(cmd: list[str], **kwargs) -> subprocess.Popen:
    """Start ``cmd`` (text pipes for stdout and stderr) with SIGINT at its default, as a terminal's Ctrl-C finds it,
    even where this test runner ignores SIGINT: a CI job started in the background by a shell without job control
    passes SIG_IGN to every process below it, while a handled signal is back at its default after exec."""
    ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    if ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)
    finally:
        if ignored:
            signal.signal(signal.SIGINT, signal.SIG_IGN)


def ctrl_c_when(proc: subprocess.Popen, said: str, timeout: float = 60) -> tuple[str, str]:
    """Ctrl-C (SIGINT) to ``proc`` once a line of its stderr holds ``said``; its (stdout, stderr) when it ended."""
    lines = []
    try:
        for line in proc.stderr:
            lines.append(line)
            if said in line:
                proc.send_signal(signal.SIGINT)
                break
        stdout, rest = proc.communicate(timeout=timeout)
    finally:
        proc.kill()
    return stdout, "".join(lines) + rest


@pytest.fixture(scope="session")
def assets() -> Path:
    if not (ASSETS / "README.md").exists():
        pytest.skip(f"shared assets not found at {ASSETS} (they live beside the project, not in it)")
    return ASSETS


def make_dets(boxes, scores=None, classes=None, tracker_id=None) -> Detections:
    """A small helper to build Detections in tests."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    n = len(boxes)
    return Detections(
        xyxy=boxes,
        confidence=np.ones(n, np.float32) if scores is None else np.asarray(scores, np.float32),
        class_id=np.zeros(n, np.int64) if classes is None else np.asarray(classes, np.int64),
        tracker_id=tracker_id,
    )


def tiny_yolo_ir(tmp: Path, labels: list[str] | None = None) -> Path:
    """A small real conv net with a YOLO-shaped output ([1, 6, 64]: 2 classes, sigmoided scores), converted to an
    ovq IR; with ``labels``, one class per label ([1, 4 + len(labels), 64])."""
    labels = labels or ["a", "b"]
    import openvino as ov
    import openvino.opset13 as ops

    from ovq.model.conversion import convert

    rng = np.random.default_rng(0)
    x = ops.parameter([1, 3, 64, 64], ov.Type.f32, name="images")
    w1 = ops.constant(rng.normal(0, 0.2, (16, 3, 3, 3)).astype(np.float32))
    h = ops.relu(ops.convolution(x, w1, [1, 1], [1, 1], [1, 1], [1, 1]))
    k = len(labels)
    stride = 8 if 4 + k < 64 else 4  # more anchors than output rows, as YOLO's head has
    anchors = ((64 - 8) // stride + 1) ** 2
    w2 = ops.constant(rng.normal(0, 0.2, (4 + k, 16, 8, 8)).astype(np.float32))
    y = ops.convolution(h, w2, [stride, stride], [0, 0], [0, 0], [1, 1])
    raw = ops.reshape(y, ops.constant(np.array([1, 4 + k, anchors], np.int64)), special_zero=False)
    boxes, scores = ops.variadic_split(raw, ops.constant(np.int64(1)), ops.constant(np.array([4, k], np.int64))).outputs()
    out = ops.concat([boxes, ops.sigmoid(scores)], axis=1)  # class scores in [0, 1], as YOLO's head gives them
    src = tmp / "tiny.xml"
    ov.save_model(ov.Model([out], [x], "tiny"), str(src))
    return convert(src, tmp / "tiny_ovq", family="yolo", labels=labels)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> Path:
    """The tiny 2-class YOLO-shaped IR (:func:`tiny_yolo_ir`), built once per test session; read-only."""
    return tiny_yolo_ir(tmp_path_factory.mktemp("tiny"))


def random_images(folder: Path, n: int = 4, size: tuple[int, int] = (64, 64)) -> Path:
    """A folder of ``n`` random BGR images (an unlabelled calibration set)."""
    import cv2

    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        cv2.imwrite(str(folder / f"{i}.png"), rng.integers(0, 256, (*size, 3), dtype=np.uint8))
    return folder


class LogList(logging.Handler):
    """Collects ovq's log records (attached to the 'ovq' logger, so it works whatever propagation is)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self, level: int = logging.DEBUG) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= level]


@pytest.fixture
def ovq_log():
    """Every record the 'ovq' loggers emit during the test, at DEBUG."""
    handler = LogList()
    logger = logging.getLogger("ovq")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def read_fifo(path: Path, into: list[str]) -> threading.Thread:
    """A thread collecting the text a writer puts into the FIFO ``path``, until the writer closes it.

    The read end is opened here, before the caller's writer opens (ovq refuses a pipe nobody reads, at once); a
    reader thread opening it itself raced the writer. It reads once the writer has written or gone: before any
    writer, a FIFO's read end gives EOF at once."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)

    def read() -> None:
        try:
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            poller.poll(30_000)
            os.set_blocking(fd, True)
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
            into.append(b"".join(chunks).decode("utf-8"))
        finally:
            os.close(fd)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return reader


def pycocotools_map(gt_file: Path, results: Path) -> float:
    """mAP50-95 pycocotools gives ``results`` (a COCO results JSON) against ``gt_file``: the reference ovq's
    eval is held to."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_file))
        ev = COCOeval(gt, gt.loadRes(str(results)), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return max(float(ev.stats[0]), 0.0)
