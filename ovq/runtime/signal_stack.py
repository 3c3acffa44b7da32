"""Keep Ctrl-C from crashing the process after OpenVINO's CPU plugin frees a signal stack it left installed.

OpenVINO's CPU plugin installs an alternate signal stack (``sigaltstack``, for AMX's large signal frames) on the
thread that compiles a model, and when the plugin instance goes away it puts back the stack that was installed
before it and unmaps its own. Plugin instances created and destroyed in any order other than last-in-first-out
leave the thread's signal stack pointing at unmapped memory. Python installs its SIGINT/SIGTERM handlers with
``SA_ONSTACK``, so the next signal cannot be delivered and the kernel kills the process with SIGSEGV.

Measured with OpenVINO 2026.4.1 on an AMD EPYC Zen 3: compile a model on two ``ov.Core()`` instances, delete the
first compiled model, then the second: the main thread's signal stack is unmapped and ``signal.raise_signal``
ends the process with exit code 139. ovq meets it whenever a run follows other compilations in one process:
``ovq pipeline`` quantizing before it runs (NNCF compiles on cores of its own), the demo, the test suite; a
Ctrl-C then killed the process instead of stopping the pipeline cleanly.

:func:`repair_signal_stack` finds a signal stack that points at unmapped memory and switches it off (signals are
then handled on the thread's normal stack, which is what happens in any thread without an alternate stack).
Linux only; elsewhere it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import mmap
import sys

logger = logging.getLogger(__name__)

_SS_DISABLE = 2


class _StackT(ctypes.Structure):
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


_LIBC = _libc()


def _mapped(address: int) -> bool:
    """Whether the page holding ``address`` is mapped (``mincore`` fails with ENOMEM on an unmapped page)."""
    assert _LIBC is not None
    page = address - address % mmap.PAGESIZE
    vec = ctypes.c_ubyte()
    return _LIBC.mincore(ctypes.c_void_p(page), ctypes.c_size_t(mmap.PAGESIZE), ctypes.byref(vec)) == 0


def current_signal_stack() -> tuple[int, int, bool] | None:
    """The calling thread's alternate signal stack as (address, size, enabled), or ``None`` off Linux."""
    if _LIBC is None:
        return None
    ss = _StackT()
    if _LIBC.sigaltstack(None, ctypes.byref(ss)) != 0:
        return None
    return int(ss.ss_sp or 0), int(ss.ss_size), not ss.ss_flags & _SS_DISABLE


def dangling_signal_stack() -> bool:
    """Whether the calling thread's alternate signal stack is enabled but points at unmapped memory."""
    stack = current_signal_stack()
    if stack is None or not stack[2]:
        return False
    address, size, _ = stack
    return not (_mapped(address) and _mapped(address + max(size, 1) - 1))


def repair_signal_stack() -> bool:
    """Switch off the calling thread's alternate signal stack if it points at unmapped memory; True if it did."""
    if not dangling_signal_stack():
        return False
    assert _LIBC is not None
    off = _StackT(None, _SS_DISABLE, 0)
    if _LIBC.sigaltstack(ctypes.byref(off), None) != 0:
        logger.warning("could not switch off a dangling signal stack (errno %d)", ctypes.get_errno())
        return False
    logger.debug("switched off a signal stack OpenVINO's CPU plugin left pointing at unmapped memory")
    return True
