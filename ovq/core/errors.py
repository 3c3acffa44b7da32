"""Typed errors raised at ovq's boundaries.

The CLI turns every :class:`OvqError` - and every ``OSError`` that reaches it, which is bad input too: a full
disk, a read-only folder, a path through a regular file - into one line on stderr and exit code 2.
Each error names the file (or source, or device) it is about and the problem.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable


class OvqError(Exception):
    """Base class of every error ovq raises on bad input."""


class ModelError(OvqError):
    """A model file is missing, corrupt, legacy or of an unsupported kind."""


class DatasetError(OvqError):
    """A dataset is missing, empty or mislabelled."""


class SplitNotFound(DatasetError):
    """The dataset has no split of the name asked for (the rest of it may be fine)."""


class ClassMismatch(DatasetError):
    """A dataset's classes are not the model's: its names are not the model's labels, or (naming none) its class ids
    run past the model's classes. The data may be fine; it does not fit this model (calibration needs no classes)."""


class DeviceError(OvqError):
    """A device is absent or unsuitable."""


class ConfigError(OvqError):
    """A configuration file or option has an unknown key or a bad value."""


class SourceError(OvqError):
    """A video source cannot be opened or read."""


class DependencyError(OvqError):
    """An optional dependency needed for this job is not installed."""


class OutputError(OvqError):
    """An output cannot be written: no space, no permission, a path that cannot be a file or folder, a write
    that failed half-way. The message names the path; nothing half-written is left under the output's name."""


def os_error_message(exc: OSError) -> str:
    """One line for an ``OSError``: the path(s) it names and the system's reason.

    ``[Errno 28] No space left on device: 'out/x.jsonl'`` -> ``out/x.jsonl: No space left on device``.
    """
    reason = exc.strerror or (str(exc.args[0]) if exc.args else type(exc).__name__)
    paths = [os.fsdecode(p) if isinstance(p, (str, bytes, os.PathLike)) else str(p)
             for p in (exc.filename, exc.filename2) if p is not None]
    if not paths:
        return str(exc) if exc.strerror is None else reason
    return f"{' -> '.join(paths)}: {reason}"


def unknown_key_message(key: str, known: Iterable[str], where: str = "") -> str:
    """Message for an unknown key, with a close-match suggestion when there is one."""
    known = sorted(known)
    prefix = f"{where}: " if where else ""
    match = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"; did you mean '{match[0]}'?" if match else f"; expected one of: {', '.join(known)}"
    return f"{prefix}unknown key '{key}'{hint}"
