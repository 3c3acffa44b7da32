"""What native code writes to standard error: C and C++ libraries (libjpeg and libtiff inside OpenCV, grpc) print
their own lines on file descriptor 2, under Python's ``sys.stderr``, where only swapping the descriptor for a while
keeps them off the terminal."""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# one swap of descriptor 2 at a time: two threads' swaps interleaved would leave it pointing at a closed file
_SWAP = threading.RLock()


@contextmanager
def native_stderr() -> Iterator[list[str]]:
    """What native code writes to standard error inside the block, kept off the terminal and handed over as
    ``said[0]`` when the block ends (``""`` and not kept off when there is no room for it: a pipe could fill and
    block the writer). The descriptor is the process's: what another thread writes to standard error meanwhile is
    in ``said[0]`` too, so keep the block to the one native call. A write another thread began just before the
    descriptor was swapped back can land in the capture after it was read, and is lost (1 line of 513 once)."""
    said = [""]
    with _SWAP:
        sys.stderr.flush()
        try:
            capture = tempfile.TemporaryFile()  # noqa: SIM115 - the with below closes it
        except OSError:  # nowhere to keep it: the lines go to the terminal
            yield said
            return
        with capture:
            saved = os.dup(2)
            os.dup2(capture.fileno(), 2)
            try:
                yield said
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                capture.seek(0)
                said[0] = capture.read().decode(errors="replace")
