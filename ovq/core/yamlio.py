"""Reading YAML files safely: PyYAML's safe loader, duplicate keys rejected, errors as one line.

PyYAML keeps the last of two equal keys without a word, so a pipeline file with ``device:`` twice would run on
whichever came last; here that is an error naming the line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ovq.core.errors import ConfigError


class UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that rejects duplicate keys instead of silently keeping the last one."""


def _construct_mapping(loader: UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key '{key}'", key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_yaml(text: str, name: str | Path) -> Any:
    """Parse YAML ``text`` read from ``name``; syntax errors and duplicate keys become one-line :class:`ConfigError`."""
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{name}: {where}invalid YAML: {problem}") from None


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file; a missing or unreadable file, bad syntax and duplicate keys raise :class:`ConfigError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    return parse_yaml(text, path)
