"""The package's shape: stages import only the stages below them, nothing imports in a circle, nothing is huge.

Read from the source with ``ast`` (function-level imports included), so a circle hidden inside a function
is caught as surely as one at the top of a module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ovq"

# The stages, lowest first: the README's story (convert -> quantize -> evaluate -> run -> deploy) on top of
# what they share. A module may import its own stage and the stages before it, never one after it.
STAGES = ("core", "data", "runtime", "model", "serving", "evaluation", "quantization", "streaming", "deployment")
TOP = ("cli", "demo", "decoders", "__init__", "__main__")  # the faces of the package: they may import anything
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 100


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path, name: str, known: set[str]) -> set[str]:
    """The ovq modules ``path`` imports anywhere in it (``from ovq.x import y`` counts ``ovq.x.y`` if a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        for target in targets:
            if target == "ovq" or target.startswith("ovq."):
                while target not in known and "." in target:
                    target = target.rpartition(".")[0]
                found.add(target)
    found.discard(name)
    return found


def stage_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "__init__"
    return parts[1]


def rank(stage: str) -> int:
    return STAGES.index(stage) if stage in STAGES else len(STAGES)


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(path, name, known) for name, path in mods.items()}


def test_every_module_lives_in_a_stage_folder():
    loose = [n for n in modules() if stage_of(n) not in (*STAGES, *TOP)]
    assert not loose, f"modules outside the stage folders: {loose}"


def test_no_stage_imports_a_later_stage(graph):
    upward = sorted(
        f"{src} imports {dst}"
        for src, targets in graph.items()
        for dst in targets
        if rank(stage_of(dst)) > rank(stage_of(src))
    )
    assert not upward, "imports against the stage order " + " < ".join(STAGES) + ":\n" + "\n".join(upward)


def test_nothing_inside_imports_the_facade(graph):
    users = sorted(src for src, targets in graph.items() if "ovq" in targets and stage_of(src) in STAGES)
    assert not users, f"stages must import the module that defines a name, not the ovq facade: {users}"


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle in ``graph`` (as a path that returns to its start), or ``None``."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def test_no_import_circles(graph):
    # the facade and the package inits are entry points, not part of any stage's graph
    inner = {k: {t for t in v if t != "ovq"} for k, v in graph.items() if k != "ovq"}
    cycle = find_cycle(inner)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_circle_finder_finds_circles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_function_level_imports_are_seen(tmp_path):
    src = tmp_path / "ovq_fake.py"
    src.write_text("def f():\n    from ovq.core import errors\n    import ovq.data.images\n")
    known = {"ovq.core.errors", "ovq.data.images", "ovq.core"}
    assert imports_of(src, "ovq.model.fake", known) == {"ovq.core.errors", "ovq.data.images"}


def test_modules_and_functions_stay_small():
    big_modules, big_functions = [], []
    for name, path in modules().items():
        text = path.read_text(encoding="utf-8")
        lines = text.count("\n") + 1
        if lines > MAX_MODULE_LINES:
            big_modules.append(f"{name}: {lines} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    big_functions.append(f"{name}.{node.name}: {length} lines")
    assert not big_modules, f"modules over {MAX_MODULE_LINES} lines: {big_modules}"
    assert not big_functions, f"functions over {MAX_FUNCTION_LINES} lines: {big_functions}"
