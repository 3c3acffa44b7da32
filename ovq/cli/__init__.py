"""The ``ovq`` command line: a thin layer over the Python API.

Each command lives in its own module with ``register(subparsers)``; the list below is the registry.
Every :class:`ovq.core.errors.OvqError` and every ``OSError`` (a full disk, a read-only folder, a path through
a regular file) becomes one line on stderr naming the path and the reason, and exit code 2; Ctrl-C, from the
first moment, one line and exit code 130.
"""

from __future__ import annotations

import _thread
import argparse
import importlib
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from ovq.core.errors import OvqError, os_error_message

COMMANDS = (
    "convert", "predict", "quantize", "run", "devices", "pipeline", "bundle", "health", "eval", "bench", "capacity",
    "families", "demo", "serve", "export-serving",
)


def build_parser() -> argparse.ArgumentParser:
    from ovq import __version__
    from ovq.cli._common import Parser

    parser = Parser(prog="ovq", description="Object detectors to production on Intel hardware.")
    parser.add_argument("--version", action="version", version=f"ovq {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"ovq.cli.{name.replace('-', '_')}").register(sub)
    return parser


# syslog priorities (sd-daemon(3)): journald reads a "<N>" line prefix as the line's priority
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class _JournalFormatter(logging.Formatter):
    """No timestamp (journald stamps each line) and the level as a ``<N>`` priority prefix."""

    def format(self, record: logging.LogRecord) -> str:
        return f"<{_PRIORITY.get(record.levelno, 6)}>" + super().format(record)


def stderr_is_journal() -> bool:
    """Whether stderr is the journal stream systemd set up (``$JOURNAL_STREAM`` is its ``device:inode``)."""
    import os

    try:
        dev, ino = (int(x) for x in os.environ.get("JOURNAL_STREAM", "").split(":"))
        st = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def _stdout_reader_gone() -> bool:
    """Whether standard output is a pipe whose reader has closed it; if so it is pointed at /dev/null, so that
    nothing more (nor Python's flush at exit) writes there: the command ends as quietly as ``yes | head -1``."""
    import select

    try:
        fd = sys.stdout.fileno()
        poll = select.poll()
        poll.register(fd, select.POLLOUT)
        if not any(events & select.POLLERR for _, events in poll.poll(0)):
            return False
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    except (AttributeError, OSError, ValueError):  # no file behind sys.stdout (captured, replaced)
        return False
    return True


class _AtLeast(logging.Filter):
    """Passes records at ``level`` or above."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self.level


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else logging.DEBUG if verbose > 1 else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    if stderr_is_journal():
        handler.setFormatter(_JournalFormatter("%(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger("ovq")
    root.handlers[:] = [handler]
    root.setLevel(level)
    if verbose <= 1:
        _quiet_video_backends()
    # third-party chatter stays at warning level unless -vv. NNCF sets its logger to INFO when it is imported (in
    # ovq pipeline and ovq bundle, while quantizing: a line per quantizer placed, also with -q), so a filter, which
    # its import leaves in place, holds the level
    for name in ("nncf", "ultralytics"):
        logging.getLogger(name).setLevel(logging.DEBUG if verbose > 1 else logging.WARNING)
    nncf_log = logging.getLogger("nncf")
    for old in [f for f in nncf_log.filters if isinstance(f, _AtLeast)]:
        nncf_log.removeFilter(old)
    nncf_log.addFilter(_AtLeast(logging.DEBUG if verbose > 1 else logging.WARNING))
    # ovq serve's servers log as ovq does: at its level (-q: warnings), through its handler. kserve configures its own
    # logging (INFO, its format; uvicorn's too) when its model server is made, unless its logger has a handler, so it
    # is given this one; a line per request (access log, latency trace) only with -vv
    for name, served in (("kserve", level), ("uvicorn", level), ("kserve.trace", logging.WARNING),
                         ("uvicorn.access", logging.WARNING)):
        server_log = logging.getLogger(name)
        if "." not in name:
            server_log.handlers[:], server_log.propagate = [handler], False
        server_log.setLevel(logging.DEBUG if verbose > 1 else served)
    # NNCF imports torch (when installed, e.g. with the ultralytics extra) to ask whether the model is a torch
    # model; torch then warns "No CUDA runtime is found, using CUDA_HOME=..." on every `ovq quantize` (torch
    # 2.14.1, NNCF 3.4.0): nothing to do with OpenVINO, so not shown unless -vv
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.DEBUG if verbose > 1 else logging.ERROR)


def _quiet_video_backends() -> None:
    """FFmpeg's and OpenCV's own lines on standard error (``[rtsp @ 0x...] method DESCRIBE failed: 404 (Not
    Found)``, ``[ WARN:0@5.2] global cap.cpp:212 open VIDEOIO(FFMPEG): ...``) repeat what ovq says in one line of its
    own, among its log lines: off for every command that opens video (``ovq pipeline`` printed them on each retry),
    on with -vv. The variables are read when OpenCV's logging and FFmpeg are first used; a cv2 imported already is
    told directly."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    cv2 = sys.modules.get("cv2")
    if cv2 is not None and hasattr(cv2, "utils"):
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def main(argv: Sequence[str] | None = None) -> int:
    command, verbose = "ovq", 0
    try:
        args, extra = build_parser().parse_known_args(argv)
        if extra:
            from ovq.cli._common import unrecognized

            unrecognized(args, extra)
        command, verbose = f"ovq {args.command}", getattr(args, "verbose", 0)
        _setup_logging(verbose, getattr(args, "quiet", False))
        return int(args.func(args) or 0)
    except Exception as exc:
        if _interrupts:  # a Ctrl-C, whatever exception a native module made of it (below)
            print(f"{command}: {_stopped_by()}", file=sys.stderr)
            return 130
        if isinstance(exc, BrokenPipeError) and _stdout_reader_gone():  # `ovq ... | head -1` has what it wanted
            return 141
        if not isinstance(exc, (OvqError, OSError)):
            raise
        if verbose:  # -v: where it came from, through NNCF's callbacks and all
            traceback.print_exception(exc, file=sys.stderr)
        message = os_error_message(exc) if isinstance(exc, OSError) else str(exc)
        print(f"{command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # also during start-up (the command's imports): one line, never a traceback
        print(f"{command}: {_stopped_by()}", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


# the SIGINTs :func:`entry`'s handler has seen: an interrupt that lands while a native module initializes comes out
# as that module's error ("ImportError: initialization failed" from OpenVINO's bindings, "PyCapsule_Import could
# not import module" from NumPy: in 3 of 30 runs of the four early Ctrl-C tests, 0.2-1.2 s into ``ovq run`` on
# Zen 3); with a Ctrl-C seen, any error is the interrupt's, one line and exit 130
_interrupts: list[int] = []


def _record_interrupt(signum: int, frame: object) -> None:
    _interrupts.append(signum)
    raise KeyboardInterrupt


def _stopped_by() -> str:
    return "terminated" if signal.SIGTERM in _interrupts else "interrupted"


def _redeliver_interrupts(previous: Callable[[Any], object]) -> Callable[[Any], object]:
    """An unraisable-exception hook that gives a lost Ctrl-C back to the main thread.

    A SIGINT handled while Python finalizes an object (a ``__del__``, a generator closed by the garbage collector)
    raises :class:`KeyboardInterrupt` where nothing can catch it: Python prints "Exception ignored in" and goes on,
    and ``ovq run`` then ran until killed (measured: 6 of 60 Ctrl-Cs 0.9-1.7 s into ``ovq run`` on Zen 3 landed
    in ``xml.etree``'s ``iterparse`` generator being closed). The interrupt is raised again 0.1 s later, from
    another thread: raised from the hook itself it landed in the hook, which is just as uncatchable (5 of 80).
    """

    def hook(unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            again = threading.Timer(0.1, _thread.interrupt_main)
            again.daemon = True
            again.start()
            return
        previous(unraisable)

    return hook


def _default_stop_signals_in_child() -> None:
    """In a child forked from the command (OpenVINO's and NNCF's telemetry senders, one per event), Ctrl-C and
    SIGTERM end it at once: with the command's handlers inherited, a Ctrl-C 1-2 s into ``ovq run`` on an ONNX file
    printed a KeyboardInterrupt traceback from each of four telemetry processes."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, signal.SIG_DFL)


def entry() -> None:
    """The ``ovq`` command (console script and ``python -m ovq``): :func:`main`, then exit with its code.

    After a Ctrl-C the process ends at once (``os._exit``), its one line written: an interrupt that lands while
    a library starts a thread (``import openvino`` starts a thread pool) can leave a worker that nothing will
    wake, and the interpreter would wait for it forever at exit (seen: a SIGINT 0.5 s into ``ovq run``).
    """
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not where the shell had it ignored
        signal.signal(signal.SIGINT, _record_interrupt)
    # SIGTERM (systemd stopping a unit, `timeout`, a CI job cancelled) ends a command as Ctrl-C does, what it was
    # writing taken back: killed outright, `ovq bundle --offline` left its ~260 MB temporary folder behind. The
    # commands that run for good (run, pipeline, serve) stop gently on it while they run, with their own handlers.
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _record_interrupt)
    sys.unraisablehook = _redeliver_interrupts(sys.unraisablehook)
    os.register_at_fork(after_in_child=_default_stop_signals_in_child)
    code = main()
    if code == 130:
        sys.stdout.flush()
        sys.stderr.flush()
        if signal.SIGTERM in _interrupts:  # then die of it, as its sender expects (systemd: a clean stop, not a failure)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
        os._exit(130)
    sys.exit(code)
