"""Typed errors raised at ovq's boundaries.

The CLI turns every :class:`OvqError` into one line on stderr and exit code 2.
Each error names the file (or source, or device) it is about and the problem.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class OvqError(Exception):
    """Base class of every error ovq raises on bad input."""


class ModelError(OvqError):
    """A model file is missing, corrupt, legacy or of an unsupported kind."""


class DatasetError(OvqError):
    """A dataset is missing, empty or mislabelled."""


class DeviceError(OvqError):
    """A device is absent or unsuitable."""


class ConfigError(OvqError):
    """A configuration file or option has an unknown key or a bad value."""


class SourceError(OvqError):
    """A video source cannot be opened or read."""


class DependencyError(OvqError):
    """An optional dependency needed for this job is not installed."""


def unknown_key_message(key: str, known: Iterable[str], where: str = "") -> str:
    """Message for an unknown key, with a close-match suggestion when there is one."""
    known = sorted(known)
    prefix = f"{where}: " if where else ""
    match = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"; did you mean '{match[0]}'?" if match else f"; expected one of: {', '.join(known)}"
    return f"{prefix}unknown key '{key}'{hint}"
