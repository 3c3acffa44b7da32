"""Reading YAML files safely: PyYAML's safe loader, duplicate keys rejected, sizes bounded, errors as one line.

PyYAML keeps the last of two equal keys without a word, so a pipeline file with ``device:`` twice would run on
whichever came last; here that is an error naming the line.

A configuration file is small, so what would make reading it slow or huge is refused, in well under a second,
before anything is built from it:

- nesting deeper than :data:`MAX_DEPTH` (PyYAML recurses once per level: a 20,000-deep file raised
  ``RecursionError``);
- aliases that expand past :data:`MAX_VALUES` values (a "billion laughs" file of 1 kB - nine anchors of nine
  aliases each - expands to 387 million values; it took 66 s, 3.97 GB and printed 312 MB of error text when a
  dataset path was built from it);
- a value longer than :data:`MAX_TEXT` characters (the longest path Linux accepts), and a file over
  :data:`MAX_BYTES`.

The expanded size is counted on PyYAML's node graph, in which an alias is the anchored node itself: counting
takes one visit per distinct node, whatever the expansion.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from ovq.core.errors import ConfigError

MAX_DEPTH = 64  # nesting levels (mappings and lists)
MAX_VALUES = 100_000  # values after expanding aliases (a dataset YAML with ImageNet's 1000 names has about 1,000)
MAX_TEXT = 4096  # characters in one value (PATH_MAX)
MAX_BYTES = 1024 * 1024  # PyYAML is slow: a 0.6 MB list of numbers took 7-10 s here (EPYC Zen 3, loaded)


class _LimitError(yaml.YAMLError):
    def __init__(self, problem: str, mark: yaml.Mark | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.problem_mark = mark


class UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that rejects duplicate keys, deep nesting, alias bombs and very long values."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _LimitError(f"nested deeper than {MAX_DEPTH} levels", self.peek_event().start_mark)
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if isinstance(node, yaml.ScalarNode) and len(node.value) > MAX_TEXT:
            raise _LimitError(f"a value of {len(node.value)} characters (at most {MAX_TEXT})", node.start_mark)
        return node

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        _expanded_size(node, {})
        return self.construct_document(node)


def _expanded_size(node: yaml.Node, seen: dict[int, int]) -> int:
    """How many values ``node`` stands for with every alias expanded; :class:`_LimitError` past MAX_VALUES."""
    key = id(node)
    if key in seen:
        return seen[key]
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(child, seen) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size += sum(_expanded_size(k, seen) + _expanded_size(v, seen) for k, v in node.value)
    if size > MAX_VALUES:
        raise _LimitError(f"aliases expand to more than {MAX_VALUES:,} values (a 'billion laughs' file?)",
                          node.start_mark)
    seen[key] = size
    return size


def _construct_mapping(loader: UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    """A mapping whose own keys are all different. A merge key (``<<: *defaults``) is left to PyYAML, which
    merges the anchored keys under the mapping's own: an own key overriding a merged one is no duplicate."""
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=deep)
        try:
            duplicate = key in seen
        except TypeError:  # an unhashable key (a list): PyYAML's own construction says so
            break
        if duplicate:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key '{key}'", key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
# YAML 1.2 (and JSON) read 1e308 and 2E-3 as numbers; PyYAML's YAML 1.1 resolver wants a dot (1.0e308) and made
# them strings, so `fps: 1e3` was "expected a number, got '1e3'". Plain scalars only: a quoted '1e3' stays text.
UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"), list("-+0123456789"))


def parse_yaml(text: str, name: str | Path) -> Any:
    """Parse YAML ``text`` read from ``name``; syntax errors, duplicate keys and the bounds above become one-line
    :class:`ConfigError` naming ``name`` and the line."""
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        kind = "" if isinstance(exc, _LimitError) else "invalid YAML: "
        raise ConfigError(f"{name}: {where}{kind}{problem}"[:500]) from None
    except RecursionError:  # a structure the bounds above did not foresee: still one line
        raise ConfigError(f"{name}: nested too deeply to read") from None


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file; a missing, unreadable or oversized file, bad syntax, duplicate keys and the bounds above
    raise :class:`ConfigError`."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ConfigError(f"{path}: {size / 1e6:.0f} MB is too large for a configuration file "
                              f"(at most {MAX_BYTES // (1024 * 1024)} MB)")
        with path.open("rb") as f:  # a pipe or a device has no size to check first: read no more than the limit
            data = f.read(MAX_BYTES + 1)
        if len(data) > MAX_BYTES:
            raise ConfigError(f"{path}: more than {MAX_BYTES // (1024 * 1024)} MB: too large for a configuration file")
        text = data.decode("utf-8").replace("\r\n", "\n")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"{path}: cannot read: {reason}") from None
    return parse_yaml(text, path)
