"""Checking one value of a pipeline config, with a message that says where it came from.

A config comes from a YAML file or from ``ovq run``'s flags. An :class:`Origin` knows which, so one check reads
right either way: ``line1.yaml: sinks.mqtt.topic_prefix: expected a string, got 3`` for a file,
``--mqtt-topic: MQTT wildcards # and + cannot be published to`` for the command line.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ovq.core.errors import ConfigError, unknown_key_message

_LAST_KEY = re.compile(r"(\.[^.\[]+|\[\d+\])$")
_INDEX = re.compile(r"\[\d+\]")
_DEFAULT = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*:-([^}]*)\}")


def describe(value: Any) -> str:
    """A value as a message shows it: YAML spelling for scalars (``null``, ``true``), a kind for the rest."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return repr(value)
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def join_path(base: Path, text: str) -> Path:
    """``text`` as a path: absolute as it is, relative to ``base`` otherwise (``..`` folded, links kept)."""
    path = Path(text).expanduser()
    return Path(os.path.normpath(path if path.is_absolute() else base / path))


@dataclass(frozen=True)
class Origin:
    """Where a config came from (a YAML file, or the command line), and the typed checks of its values.

    ``key`` arguments are dotted key paths (``sinks.mqtt.url``, ``sources[2]``). For a file, messages start with
    the file and the key path; for the command line, with the flag ``flags`` maps the key (or its nearest
    parent key) to. Relative paths are relative to ``base``: the file's folder, or the working directory.
    ``unresolved_env``: ``${VAR}`` references were left as they are, so checks that need the value skip them.
    """

    file: Path | None = None
    base: Path = field(default_factory=Path)
    flags: Mapping[str, str] = field(default_factory=dict)
    unresolved_env: bool = False
    # keys whose whole value was a ${VAR} reference: the environment holds only text, so a number, integer or
    # true/false check reads that text as the file would have ('conf: ${CONF:-0.5}' was "expected a number, got '0.5'")
    from_env: set[str] = field(default_factory=set, compare=False, hash=False)

    @classmethod
    def yaml_file(cls, path: Path, *, unresolved_env: bool = False) -> Origin:
        return cls(file=path, base=path.parent, unresolved_env=unresolved_env)

    @classmethod
    def command_line(cls, flags: Mapping[str, str]) -> Origin:
        return cls(file=None, base=Path(), flags=dict(flags))

    def name_of(self, key: str) -> str:
        """How messages name ``key``: the key path in a file, its flag on the command line."""
        if self.file is not None:
            return key
        k = _INDEX.sub("", key)  # sources[1].name: the flag of every source's name (--name), else of the sources
        while k:
            if k in self.flags:
                return self.flags[k]
            k = _LAST_KEY.sub("", k) if _LAST_KEY.search(k) else ""
        return key

    def error(self, key: str, message: str) -> ConfigError:
        where = [str(self.file)] if self.file is not None else []
        if key:
            where.append(self.name_of(key))
        return ConfigError(": ".join([*where, message]))

    def is_reference(self, text: str) -> bool:
        """Whether ``text`` still holds a ``${VAR}`` reference left unresolved on purpose."""
        return self.unresolved_env and "${" in text

    # -- typed checks ----------------------------------------------------------------------------------------
    def mapping(self, value: Any, key: str, known: Iterable[str]) -> dict[str, Any]:
        """``value`` as a mapping whose keys are all in ``known`` (else an error suggesting the closest)."""
        if not isinstance(value, dict):
            raise self.error(key, f"expected a mapping, got {describe(value)}")
        known = tuple(known)
        for k in value:
            if not isinstance(k, str):
                raise self.error(key, f"keys must be strings, got {describe(k)}")
            if k not in known:
                where = ": ".join(p for p in (str(self.file or ""), self.name_of(key) if key else "") if p)
                raise ConfigError(unknown_key_message(k, known, where))
        return value

    def string(self, value: Any, key: str) -> str:
        if not isinstance(value, str):
            raise self.error(key, f"expected a string, got {describe(value)}")
        if not value.strip():
            raise self.error(key, "expected a non-empty string")
        return value

    def env_scalar(self, value: Any, key: str) -> Any:
        """``value`` as a YAML scalar when it is the text a ``${VAR}`` reference gave ``key`` (``'300'`` -> 300,
        ``'true'`` -> True); anything else as it is."""
        if not (isinstance(value, str) and key in self.from_env):
            return value
        text = value.strip()
        if self.unresolved_env and "${" in text:  # left as written (ovq bundle): its default is what can be checked
            default = _DEFAULT.fullmatch(text)
            if default is None:
                raise self.error(key, f"{text}: a value read from the environment where the pipeline runs needs a "
                                      "default to be checked here: write ${VAR:-VALUE}")
            text = default.group(1).strip()
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        for kind in (int, float):
            try:
                return kind(text)
            except ValueError:
                continue
        return value

    def boolean(self, value: Any, key: str) -> bool:
        value = self.env_scalar(value, key)
        if not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {describe(value)}")
        return value

    def number(self, value: Any, key: str, *, low: float | None = None, high: float | None = None,
               low_open: bool = False, allow_inf: bool = False) -> float:
        """A finite number within [``low``, ``high``] (``low_open``: strictly above ``low``); ``allow_inf``: a
        field where infinity means something may take it. NaN compares false with every bound, so it passed
        them all (``reconnect.stall_timeout: .nan`` turned stall detection off), as did ``.inf`` without a high one."""
        value = self.env_scalar(value, key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(key, f"expected a number, got {describe(value)}")
        value = float(value)
        if math.isnan(value) or (math.isinf(value) and not allow_inf):
            raise self.error(key, f"expected a finite number, got {value}")
        if low is not None and (value < low or (low_open and value == low)):
            bound = f"> {low:g}" if low_open else f">= {low:g}"
            upper = f" and <= {high:g}" if high is not None else ""
            raise self.error(key, f"expected a number {bound}{upper}, got {value:g}")
        if high is not None and value > high:
            raise self.error(key, f"expected a number <= {high:g}, got {value:g}")
        return value

    def integer(self, value: Any, key: str, *, low: int | None = None) -> int:
        value = self.env_scalar(value, key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"expected an integer, got {describe(value)}")
        if low is not None and value < low:
            raise self.error(key, f"expected an integer >= {low}, got {value}")
        return value

    def choice(self, value: Any, key: str, choices: Iterable[str]) -> str:
        """One of ``choices``, case-insensitive; returned in lower case."""
        choices = tuple(choices)
        text = self.string(value, key)
        if text.lower() not in choices:
            raise self.error(key, f"expected one of {', '.join(choices)}, got {describe(value)}")
        return text.lower()

    def path(self, value: Any, key: str) -> Path:
        return join_path(self.base, self.string(value, key))


def given(data: Mapping[str, Any], key: str) -> bool:
    """Whether ``key`` has a value: an absent key and ``null`` both mean "the default"."""
    return data.get(key) is not None
