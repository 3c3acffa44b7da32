"""Writing outputs so that nothing is ever half-written: write to a temporary path, then rename.

Outputs get the permissions a plain ``open``/``mkdir`` would give them: files 0666 and folders 0777 less the
process umask (0644 and 0755 under the usual 022, 0600 and 0700 under 077), so a service user can read a
model another user converted whenever their umask says so. The temporary paths are created with those modes
(``os.open``/``os.mkdir``) and the kernel applies the umask, or the folder's default ACL where it has one,
exactly as for any other file. ``tempfile.mkstemp``/``mkdtemp`` are not used: they make 0600/0700 whatever
the umask (right for private scratch space, wrong for outputs), and widening the mode afterwards would need
the umask, which a process can read portably only by changing it, and would override a default ACL.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

_TRIES = 100  # random names to try before giving up; with 32 random bits a clash is already rare

_T = TypeVar("_T")


def _create_new(parent: Path, prefix: str, create: Callable[[Path], _T]) -> tuple[Path, _T]:
    """Call ``create`` (which must fail with FileExistsError on an existing path) on random names in ``parent``
    until it makes a new one; returns that path and what ``create`` returned."""
    for _ in range(_TRIES):
        path = parent / f"{prefix}{secrets.token_hex(4)}"
        try:
            return path, create(path)
        except FileExistsError:
            continue
    raise FileExistsError(f"{parent}: no free name for a temporary '{prefix}*' in {_TRIES} tries")


def make_temp_dir(parent: str | Path, prefix: str) -> Path:
    """Create a new folder ``parent/<prefix><random>`` with the permissions of a plain ``mkdir`` and return it.

    For building an output that is renamed into place when complete: unlike ``tempfile.mkdtemp`` it is not
    private, and it is not removed for you.
    """
    path, _ = _create_new(Path(parent), prefix, lambda p: os.mkdir(p, 0o777))  # less the umask, by the kernel
    return path


def _create_temp_file(parent: Path, prefix: str) -> tuple[int, Path]:
    """A new file ``parent/<prefix><random>`` open for writing, with the permissions of a plain ``open``."""
    # O_EXCL: never open an existing file, nor follow a symlink planted at the name
    path, fd = _create_new(parent, prefix, lambda p: os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    return fd, path


@contextlib.contextmanager
def atomic_output_dir(out_dir: str | Path) -> Iterator[Path]:
    """Yield a temporary folder; on success move its files into ``out_dir`` (created if needed).

    On an exception the temporary folder is removed and ``out_dir`` is left as it was. A new ``out_dir`` and
    the files written into the temporary folder keep the permissions they were created with (0777/0666 less
    the umask for plain ``mkdir``/``open`` and for OpenVINO's ``save_model``); an existing ``out_dir`` keeps its
    own.
    """
    out_dir = Path(out_dir)
    parent = out_dir.parent if str(out_dir.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(parent, f".{out_dir.name}.tmp-")
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        if not out_dir.exists():
            os.replace(tmp, out_dir)
            return
        for item in sorted(tmp.rglob("*")):
            rel = item.relative_to(tmp)
            target = out_dir / rel
            if item.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(item, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file renamed over it: readers see the old contents
    or the new, never a part, and on any error the old file is untouched and no temporary file is left.

    A new file gets 0666 less the umask; an existing one keeps its permission bits, as it would when written
    in place (so a file someone made private stays private).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        keep_mode: int | None = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        keep_mode = None
    fd, tmp = _create_temp_file(path.parent, f".{path.name}.tmp-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        if keep_mode is not None:
            os.chmod(tmp, keep_mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json_atomic(path: str | Path, data: Any) -> None:
    """:func:`write_text_atomic` of ``data`` as indented JSON (nothing is written when it does not serialize)."""
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")
