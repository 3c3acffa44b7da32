"""Decoder families from installed packages: entry points in the group ``ovq.decoders``.

A plug-in is a package whose metadata declares, e.g. in its ``pyproject.toml``::

    [project.entry-points."ovq.decoders"]
    centernet = "ovq_centernet:CenterNetDecoder"

The entry point's name is the family; its object is a class implementing :class:`ovq.decoders.Decoder`,
which ovq instantiates with no arguments. Plug-ins are looked up once per process, only when a family is not
built in or when ovq has to tell a model's family from its outputs. A plug-in that fails to load is not
used and says why (``ovq families`` lists it with the reason); a built-in family cannot be replaced.
"""

from __future__ import annotations

import functools
import logging
import numbers
import re
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from ovq.model.decoders.base import Decoder, SourcePreprocessing

logger = logging.getLogger(__name__)

GROUP = "ovq.decoders"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class Family:
    """One decoder family and where it comes from (``distribution`` and ``version`` for a plug-in)."""

    name: str
    decoder: Decoder | None
    origin: str  # "built-in" or "plug-in"
    distribution: str | None = None
    version: str | None = None
    target: str | None = None  # the entry point's object reference, "module:Class"
    error: str | None = None  # why the plug-in cannot be used

    @property
    def where(self) -> str:
        if self.origin == "built-in":
            return "built-in"
        return f"plug-in {self.distribution} {self.version} ({self.target})"


def check_decoder(decoder: Any, name: str) -> None:
    """Raise ``TypeError`` naming what ``decoder`` lacks to implement the protocol as family ``name``."""
    if getattr(decoder, "family", None) != name:
        raise TypeError(f"its family attribute is {getattr(decoder, 'family', None)!r}, not the entry point's {name!r}")
    if not isinstance(getattr(decoder, "expects", None), str):
        raise TypeError("it has no 'expects' string (one line: which outputs it takes)")
    if not isinstance(getattr(decoder, "preprocessing", None), SourcePreprocessing):
        raise TypeError("its 'preprocessing' is not an ovq.decoders.SourcePreprocessing")
    iou = getattr(decoder, "default_iou", None)
    if not isinstance(iou, numbers.Real) or not 0 < float(iou) <= 1:
        raise TypeError(f"its 'default_iou' {iou!r} is not a number in (0, 1]")
    missing = [m for m in ("matches", "num_classes", "decode") if not callable(getattr(decoder, m, None))]
    if missing:
        raise TypeError(f"it has no method {', '.join(missing)}")


def _load(ep: metadata.EntryPoint) -> Any:
    try:
        cls = ep.load()
    except Exception as exc:  # noqa: BLE001 - a third party's import can raise anything
        raise TypeError(f"cannot import {ep.value}: {type(exc).__name__}: {exc}") from None
    if not isinstance(cls, type):
        raise TypeError(f"{ep.value} is not a class")
    try:
        decoder = cls()
    except Exception as exc:  # noqa: BLE001 - a third party's constructor can raise anything
        raise TypeError(f"{ep.value}() failed: {type(exc).__name__}: {exc}") from None
    check_decoder(decoder, ep.name)
    return decoder


@functools.cache
def plugin_families(builtin: frozenset[str]) -> dict[str, Family]:
    """Every family the installed packages declare, loaded and checked (``error`` set when unusable)."""
    found: dict[str, list[metadata.EntryPoint]] = {}
    seen: set[tuple[str, str, str]] = set()
    for ep in metadata.entry_points(group=GROUP):
        dist = ep.dist.name if ep.dist is not None else "?"
        if (ep.name, ep.value, dist) not in seen:  # the same package on sys.path twice lists it twice
            seen.add((ep.name, ep.value, dist))
            found.setdefault(ep.name, []).append(ep)
    families: dict[str, Family] = {}
    for name, eps in sorted(found.items()):
        ep = eps[0]
        dist = ep.dist.name if ep.dist is not None else "?"
        version = ep.dist.version if ep.dist is not None else "?"
        error = None
        decoder = None
        if name in builtin:
            error = "a built-in family has this name (built-in families cannot be replaced)"
        elif len(eps) > 1:
            others = ", ".join(sorted({e.dist.name if e.dist else "?" for e in eps}))
            error = f"several packages declare it ({others}); uninstall all but one"
        elif not NAME.fullmatch(name):
            error = "the name must be letters, digits, '_', '.' or '-'"
        else:
            try:
                decoder = _load(ep)
            except TypeError as exc:
                error = str(exc)
        if error:
            logger.warning("plug-in family '%s' from %s %s is not used: %s", name, dist, version, error)
        families[name] = Family(name, decoder, "plug-in", dist, version, ep.value, error)
    return families
