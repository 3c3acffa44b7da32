"""Ctrl-C and ``systemctl stop`` for a running pipeline: the first asks it to finish cleanly, the second stops now.

A pipeline stopped by its first SIGINT or SIGTERM drains the frames in flight and closes its outputs (the MP4
gets its index, so it plays), and the command exits 0 with its summary. A second signal raises
:class:`KeyboardInterrupt` at once, for a drain that hangs (e.g. on a broker that does not answer); the CLI
turns that into exit code 130.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _stderr_fd() -> int | None:
    try:
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by an object without a file (a test's capture)
        return None


@contextlib.contextmanager
def stop_on_signals(stop: Callable[[], None], *, name: str) -> Iterator[None]:
    """Within the block, the first SIGINT/SIGTERM calls ``stop()`` and says so on stderr, the next ones raise
    :class:`KeyboardInterrupt`. The previous handlers are back when the block ends.

    ``stop`` runs inside the signal handler, so it must only set a flag (as ``Pipeline.stop`` does). ``name``
    starts the line printed (``ovq run``). Python runs handlers in the main thread only, so call this there.
    """
    fd = _stderr_fd()
    asked = False

    def handler(signum: int, frame: object) -> None:
        nonlocal asked
        if asked:
            raise KeyboardInterrupt
        asked = True
        line = (f"{name}: {signal.Signals(signum).name}, stopping: finishing the frames in flight and closing the "
                "outputs (again to stop at once)\n")
        # a handler can interrupt the main thread in the middle of a write to sys.stderr (a log line), and a
        # second write into that buffered stream would raise "reentrant call"; the raw file descriptor has no
        # buffer to re-enter
        if fd is not None:
            os.write(fd, line.encode())
        else:
            print(line, end="", file=sys.stderr)
        stop()

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
