"""Ctrl-C and ``systemctl stop`` for a running pipeline: the first asks it to finish cleanly, the second stops now.

A pipeline stopped by its first SIGINT or SIGTERM drains the frames in flight and closes its outputs (the MP4
gets its index, so it plays), and the command exits 0 with its summary. A second signal is for a drain that
hangs (e.g. on a broker that does not answer): the commands end the process at once with exit code 130
(:func:`exit_now`); the same signal again within a second of the first is not a second one (``timeout`` and a
terminal signal a whole process group, so one request can arrive twice). It does not raise :class:`KeyboardInterrupt` into the run there: with OpenVINO's inference
threads and the pipeline's own still working, unwinding the main thread left native threads alive at
interpreter exit, and the C++ runtime aborted the process (``terminate called without an active exception``,
exit 134). Files stay consistent anyway: JSON Lines are written a whole line at a time, and an unfinished MP4 is
a hidden ``.NAME.partial.mp4``, never the target.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from ovq.runtime.signal_stack import repair_signal_stack

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

# A repeat of the first signal within this many seconds is the same request, not a second one. coreutils'
# `timeout` sends its signal to the child and then to the child's process group (timeout.c, cleanup():
# send_sig(monitored_pid, sig) then send_sig(0, sig)), so `ovq run` gets it twice a few ms apart: in 5 of 10
# runs of `timeout --preserve-status 3..7 ovq run ...` the second was handled on its own and ended the run
# with exit 130, no summary and unfinished MP4s. A terminal's Ctrl-C reaches a whole process group too. A
# person pressing Ctrl-C again because the drain hangs does so after it has visibly hung, well over a second.
SAME_REQUEST_S = 1.0


def _stderr_fd() -> int | None:
    try:
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by an object without a file (a test's capture)
        return None


def exit_now(name: str, unfinished: str = "outputs in progress are not finished") -> Callable[[], None]:
    """What a command does on the second signal: say so on stderr (with what is left ``unfinished``) and end the
    process with exit code 130."""

    def stop_now() -> None:
        _say(_stderr_fd(), f"{name}: interrupted again, stopping at once ({unfinished})\n")
        os._exit(130)

    return stop_now


def first_then_at_once(first_signal: Callable[[int, Any], None], at_once: Callable[[], None]) -> Callable[[int, Any], None]:
    """A signal handler: the first signal goes to ``first_signal(signum, frame)``, a repeat of it within
    :data:`SAME_REQUEST_S` is the same request and is ignored, and any later one calls ``at_once()``."""
    first: tuple[int, float] | None = None  # (signal, time.monotonic()) of the first one
    again = False

    def handler(signum: int, frame: Any) -> None:
        nonlocal first, again
        now = time.monotonic()
        if first is not None:
            if not again and signum == first[0] and now - first[1] < SAME_REQUEST_S:
                return  # the same request delivered twice (see SAME_REQUEST_S)
            again = True
            at_once()
            return
        first = (signum, now)
        first_signal(signum, frame)

    return handler


def _say(fd: int | None, line: str) -> None:
    # a handler can interrupt the main thread in the middle of a write to sys.stderr (a log line), and a
    # second write into that buffered stream would raise "reentrant call"; the raw file descriptor has no
    # buffer to re-enter
    if fd is not None:
        os.write(fd, line.encode())
    else:
        print(line, end="", file=sys.stderr)


def _interrupt() -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def stop_on_signals(stop: Callable[[], None], *, name: str, at_once: Callable[[], None] = _interrupt) -> Iterator[None]:
    """Within the block, the first SIGINT/SIGTERM calls ``stop()`` and says so on stderr, the next ones call
    ``at_once()`` (default: raise :class:`KeyboardInterrupt`; the commands pass :func:`exit_now`). A repeat of
    the first signal within :data:`SAME_REQUEST_S` is the same request and is ignored. The previous handlers are
    back when the block ends.

    ``stop`` runs inside the signal handler, so it must only set a flag (as ``Pipeline.stop`` does). ``name``
    starts the line printed (``ovq run``). Python runs handlers in the main thread only, so call this there.
    """
    fd = _stderr_fd()
    # compiled models that are about to be collected can leave this thread's signal stack unmapped, which turns
    # the next signal into a crash (see ovq.runtime.signal_stack): collect them now, then check the stack
    gc.collect()
    repair_signal_stack()

    def first_signal(signum: int, frame: object) -> None:
        _say(fd, f"{name}: {signal.Signals(signum).name}, stopping: finishing the frames in flight and closing the "
                 "outputs (again to stop at once)\n")
        stop()

    handler = first_then_at_once(first_signal, at_once)
    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
