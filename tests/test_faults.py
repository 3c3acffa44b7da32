"""Fault injection: every case of issue N, reproduced, so each stays fixed.

Each fault must end as one line naming the file, URL or key and the problem, exit code 2, no traceback; earlier
results intact; nothing reported as written that is not complete. A full disk is a 2 MB tmpfs and a read-only
folder a read-only tmpfs (both need root, as CI has: skipped with that reason otherwise).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ovq.cli import main

ROOT = Path(__file__).resolve().parents[1]
VIDEO = "videos/one-by-one-person-detection.mp4"


def run_cli(capsys, *argv: str) -> tuple[int, str, list[str]]:
    """``ovq ARGV`` in this process: (exit code, stdout, stderr lines that are not log lines)."""
    code = main([*argv])
    out, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip() and " INFO " not in ln and " WARNING " not in ln]
    return code, out, lines


def one_error_line(capsys, *argv: str) -> str:
    """Run ``ovq ARGV``; it must fail with exit code 2 and exactly one line on stderr (returned)."""
    code, out, lines = run_cli(capsys, *argv)
    assert code == 2, (out, lines)
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    assert "wrote" not in out
    return lines[0]


# -- mounts: a full disk and a read-only folder ------------------------------------------------------------------
def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")


@contextlib.contextmanager
def tmpfs(path: Path, *options: str):
    _need_root()
    path.mkdir(parents=True, exist_ok=True)
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(path)],
                           capture_output=True, text=True, check=False)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


@pytest.fixture
def full_disk(tmp_path):
    """A 2 MB file system."""
    with tmpfs(tmp_path / "full", "size=2m") as path:
        yield path


@pytest.fixture
def read_only(tmp_path):
    with tmpfs(tmp_path / "ro", "size=1m", "ro") as path:
        yield path


def fill(folder: Path, leave: int) -> None:
    """Fill ``folder``'s file system until ``leave`` bytes are free."""
    st = os.statvfs(folder)
    free = st.f_bavail * st.f_frsize
    (folder / "filler").write_bytes(b"\0" * max(0, free - leave))


# -- YAML: bounded, typed, one line ------------------------------------------------------------------------------
BILLION_LAUGHS = "\n".join(
    ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
)


def test_a_billion_laughs_dataset_yaml_is_refused_before_it_expands(tmp_path, capsys, tiny):
    data = tmp_path / "bomb.yaml"
    data.write_text(BILLION_LAUGHS + "\npath: .\ntrain: *a8\nval: *a8\nnames: *a8\n")
    line = one_error_line(capsys, "eval", str(tiny), "--data", str(data), "--no-progress")
    assert line.startswith(f"ovq eval: error: {data}: line ") and "aliases expand to more than 100,000 values" in line


def test_a_billion_laughs_pipeline_yaml_is_refused(tmp_path, capsys):
    pipe = tmp_path / "bomb.yaml"
    pipe.write_text(BILLION_LAUGHS + "\nmodel: m\nsources: *a8\n")
    line = one_error_line(capsys, "pipeline", str(pipe), "--check")
    assert f"{pipe}: line " in line and "aliases expand to more than" in line


def test_a_20000_deep_pipeline_yaml_is_one_line(tmp_path, capsys):
    pipe = tmp_path / "deep.yaml"
    pipe.write_text("model: m\nsources: " + "[" * 20000 + "]" * 20000 + "\n")
    line = one_error_line(capsys, "pipeline", str(pipe), "--check")
    assert line == f"ovq pipeline: error: {pipe}: line 2: nested deeper than 64 levels"


def test_long_values_and_large_files_are_refused(tmp_path, capsys):
    pipe = tmp_path / "long.yaml"
    pipe.write_text("model: m\nsources: [" + "x" * 5000 + "]\n")
    line = one_error_line(capsys, "pipeline", str(pipe), "--check")
    assert line.endswith(f"{pipe}: line 2: a value of 5000 characters (at most 4096)")
    big = tmp_path / "big.yaml"
    big.write_text("model: m\n# " + "x" * 2_000_000 + "\n")
    assert "is too large for a configuration file" in one_error_line(capsys, "pipeline", str(big), "--check")


@pytest.mark.parametrize(("entry", "message"), [
    ("nc: abc\n", "nc: expected the number of classes (an integer >= 1), got 'abc'"),
    ("nc: 2\n", None),
])
def test_dataset_yaml_values_are_type_checked(tmp_path, capsys, tiny, assets, entry, message):
    data = tmp_path / "data.yaml"
    data.write_text(f"path: {assets / 'coco128'}\nval: images/val2017\n{entry}names: [a, b]\n")
    if message is None:  # the same file with a good value goes past the check (to the class-id check)
        code, _, lines = run_cli(capsys, "eval", str(tiny), "--data", str(data), "--no-progress")
        assert code == 2 and "nc:" not in lines[-1]
        return
    assert one_error_line(capsys, "eval", str(tiny), "--data", str(data)) == f"ovq eval: error: {data}: {message}"


def test_a_dataset_entry_too_long_for_the_file_system(tmp_path, capsys, tiny):
    data = tmp_path / "data.yaml"
    data.write_text(f"path: .\ntrain: images\nval: {'x' * 300}\nnames: [a, b]\n")
    line = one_error_line(capsys, "eval", str(tiny), "--data", str(data))
    assert line.startswith(f"ovq eval: error: {data}: val: xxxx") and line.endswith("(300 characters): File name too long")


def test_helpers_run_in_a_clean_interpreter():
    """The fault suite's CLI helper runs ovq in this process; this checks the real entry point once."""
    proc = subprocess.run([sys.executable, "-m", "ovq", "pipeline", "/nonexistent/p.yaml", "--check"],
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2 and proc.stderr == "ovq pipeline: error: /nonexistent/p.yaml: no such file\n"
