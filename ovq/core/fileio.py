"""Writing outputs so that nothing is ever half-written: write to a temporary path, then rename.

Before long work, :func:`check_output_file` / :func:`check_output_dir` say whether an output can be written at all
(a path through a regular file, an existing folder where a file goes, a read-only or full file system, a symlink
loop): one :class:`~ovq.core.errors.OutputError` naming the path, before a model is compiled or a dataset read.
A write that fails anyway (the disk filled up meanwhile) raises :class:`~ovq.core.errors.OutputError` naming the
output, never the temporary name, and leaves the output as it was.

A file output that is a pipe or a character device (a FIFO another program reads, ``/dev/stdout``, ``/dev/null``)
is written straight through (:func:`is_stream`): renaming a file over it would replace the pipe or the device
node itself. A symlink to a file stays a symlink: the file it points to is the one replaced
(:func:`replaced_path`).

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
import errno
import json
import os
import secrets
import shutil
import stat
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from ovq.core.errors import OutputError, os_error_message

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


def _reason(exc: OSError) -> str:
    return exc.strerror or os_error_message(exc)


def _existing_ancestor(path: Path) -> Path:
    """The nearest folder at or above ``path``'s parent that exists; :class:`OutputError` when one of them is not
    a folder, or cannot be looked at (a symlink loop, no permission)."""
    for folder in [path.parent, *path.parent.parents]:
        try:
            info = folder.stat()
        except (FileNotFoundError, NotADirectoryError):  # missing, or below a file (found further up)
            continue
        except OSError as exc:
            raise OutputError(f"{path}: {folder}: {_reason(exc)}") from None
        if not stat.S_ISDIR(info.st_mode):
            raise OutputError(f"{path}: {folder} is not a folder")
        return folder
    return Path(".")  # not reached for relative paths (the working directory exists)


def _probe(path: Path, folder: Path, need_bytes: int) -> None:
    """Create (and remove) a file in ``folder``: the only test that holds for root, read-only mounts and ACLs;
    then compare its free space with ``need_bytes``."""
    try:
        fd, tmp = create_temp_file(folder, ".ovq-write-test-")
    except OSError as exc:
        raise OutputError(f"{path}: cannot write in {folder}: {_reason(exc)}") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(tmp)
    if need_bytes > 0:
        free = free_bytes(folder)
        if free < need_bytes:
            raise OutputError(
                f"{path}: not enough free space: needs about {_mb(need_bytes)}, {_mb(free)} free in {folder}"
            )


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.0f} kB"


def free_bytes(path: str | Path) -> int:
    """Bytes an unprivileged process may still write on ``path``'s file system."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def vanished(path: str | Path) -> str | None:
    """What became of a file a run was writing, when it is no longer there: ``"the folder out was removed"`` (the
    outermost folder gone: ``rm -rf out`` of ``out/cam/x.mp4`` names ``out``) or ``"out/x.mp4 was removed"``;
    ``None`` while it is there."""
    path = Path(path)
    if os.path.lexists(path):
        return None
    if os.path.isdir(path.parent):
        return f"{path} was removed"
    gone = path.parent
    while gone.parent != gone and not os.path.lexists(gone.parent):
        gone = gone.parent
    return f"the folder {gone} was removed"


def _stat_or_none(path: Path) -> os.stat_result | None:
    """``path``'s stat, ``None`` when nothing is there; any other failure (a symlink loop, no permission) is an
    :class:`OutputError` naming it."""
    try:
        return path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise OutputError(f"{path}: {_reason(exc)}") from None


def unreadable(path: str | Path) -> str | None:
    """Why ``path`` cannot be opened for reading (the system's words: "Permission denied"...), or ``None``."""
    try:
        with open(path, "rb"):
            return None
    except OSError as exc:
        return _reason(exc)


def is_stream(path: str | Path) -> bool:
    """Whether ``path`` is (or links to) a FIFO or a character device: written straight through, never replaced."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)


def open_stream(path: str | Path, *, append: bool = False) -> int:
    """Open a pipe or a device (:func:`is_stream`) for writing; returns the file descriptor (blocking writes: a
    full pipe holds the writer back). A FIFO nobody reads yet is an :class:`OutputError` at once: waiting for a
    reader would hang the command where Ctrl-C cannot reach it (the kernel retries the open)."""
    flags = os.O_WRONLY | os.O_NONBLOCK | (os.O_APPEND if append else 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise OutputError(f"{path}: a pipe nobody reads; start its reader first") from None
        raise OutputError(f"{path}: {_reason(exc)}") from None
    os.set_blocking(fd, True)
    return fd


def is_stdout(path: str | Path) -> bool:
    """Whether ``path`` is this process's standard output (``/dev/stdout``, or the file or pipe it goes to)."""
    try:
        return os.path.samestat(os.stat(path), os.fstat(1))
    except (OSError, ValueError):
        return False


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two output paths name one file (after ``..`` and symlinks), whether or not it exists yet."""
    return os.path.realpath(a) == os.path.realpath(b)


def replaced_path(path: str | Path) -> Path:
    """The path a write to ``path`` replaces: the file a symlink points to (so the link stays), else ``path``."""
    path = Path(path)
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def check_output_file(path: str | Path, *, need_bytes: int = 0) -> Path:
    """Raise :class:`OutputError` unless ``path`` can be written as a file (replacing a file there is fine).

    Checks, without creating ``path`` or any folder: that ``path`` is not a folder (nor a symlink loop), that its
    nearest existing parent is a folder a file can be created in, and that it has ``need_bytes`` free. A pipe or a
    character device (:func:`is_stream`) needs only to be writable; a block device or a socket is refused.
    """
    path = Path(path)
    info = _stat_or_none(path)
    if info is not None and stat.S_ISDIR(info.st_mode):
        raise OutputError(f"{path}: is a folder; expected a file name")
    if info is not None and (stat.S_ISFIFO(info.st_mode) or stat.S_ISCHR(info.st_mode)):
        if not os.access(path, os.W_OK):
            raise OutputError(f"{path}: {os.strerror(errno.EACCES)}")
        return path
    if info is not None and not stat.S_ISREG(info.st_mode):
        raise OutputError(f"{path}: not a file, a pipe or a terminal")
    _probe(path, _existing_ancestor(replaced_path(path)), need_bytes)
    return path


def check_output_dir(path: str | Path, *, need_bytes: int = 0) -> Path:
    """Raise :class:`OutputError` unless ``path`` can be made (or filled) as an output folder with ``need_bytes``
    free: not an existing file, not a symlink loop, in a writable place. Creates nothing."""
    path = Path(path)
    info = _stat_or_none(path)
    if info is not None and not stat.S_ISDIR(info.st_mode):
        raise OutputError(f"{path}: exists and is not a folder")
    _probe(path, path if info is not None else _existing_ancestor(path), need_bytes)
    return path


def make_temp_dir(parent: str | Path, prefix: str) -> Path:
    """Create a new folder ``parent/<prefix><random>`` with the permissions of a plain ``mkdir`` and return it.

    For building an output that is renamed into place when complete: unlike ``tempfile.mkdtemp`` it is not
    private, and it is not removed for you.
    """
    path, _ = _create_new(Path(parent), prefix, lambda p: os.mkdir(p, 0o777))  # less the umask, by the kernel
    return path


def create_temp_file(parent: Path, prefix: str) -> tuple[int, Path]:
    """A new file ``parent/<prefix><random>`` open for writing (a raw descriptor), with the permissions of a
    plain ``open``."""
    # O_EXCL: never open an existing file, nor follow a symlink planted at the name
    path, fd = _create_new(parent, prefix, lambda p: os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    return fd, path


@contextlib.contextmanager
def atomic_output_dir(out_dir: str | Path, *, remove: Iterable[str] = ()) -> Iterator[Path]:
    """Yield a temporary folder; on success move its files into ``out_dir`` (created if needed), all or none.

    A new ``out_dir`` is the temporary folder renamed. Into an existing one (an earlier result, which may hold the
    user's other files, or be a mount point) the files move one by one from a temporary folder inside it (one
    file system, whatever is mounted where), each file there first set aside; if any move fails, or Ctrl-C
    comes in between, the ones done are undone, so ``out_dir`` never mixes an old result with a new one. On an
    exception in the block the temporary folder is removed and ``out_dir`` is left as it was; an ``OSError`` (a
    full disk) becomes :class:`OutputError` naming ``out_dir``. A new ``out_dir`` and the files written keep the
    permissions they were created with (0777/0666 less the umask); an existing ``out_dir`` keeps its own.
    ``remove``: names of files in an existing ``out_dir`` that the earlier result made and this one does not
    (the caller decides which are its own): taken out in the same move, and put back if it is undone.
    """
    check_output_dir(out_dir)
    out_dir = replaced_path(out_dir)  # a symlink to a folder: filled where it points
    existed = out_dir.is_dir()
    where = out_dir if existed else (out_dir.parent if str(out_dir.parent) else Path("."))
    try:
        where.mkdir(parents=True, exist_ok=True)
        tmp = make_temp_dir(where, f".{out_dir.name}.tmp-")
    except OSError as exc:
        raise OutputError(f"{out_dir}: {_reason(exc)}") from None
    try:
        yield tmp
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(f"{out_dir}: {_reason(exc)}; nothing was written") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        if not existed:
            os.replace(tmp, out_dir)
            return
        _move_all_or_none(tmp, out_dir, remove)
    except OSError as exc:
        raise OutputError(f"{out_dir}: {_reason(exc)}; it was left as it was") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _move_all_or_none(tmp: Path, out_dir: Path, remove: Iterable[str] = ()) -> None:
    """Move every file below ``tmp`` to the same place below ``out_dir``, and the files ``remove`` names out of
    it (those that are files there, nothing new takes their place); on any failure put everything back."""
    files = [p for p in sorted(tmp.rglob("*")) if not p.is_dir()]
    new = {p.relative_to(tmp).as_posix() for p in files}
    gone = [name for name in dict.fromkeys(remove) if name not in new and name not in ("", "..") and Path(name).name == name
            and (out_dir / name).is_file() and not (out_dir / name).is_symlink()]  # a file of out_dir itself, no link
    for item in files:  # what cannot be replaced is found before anything moves
        target = out_dir / item.relative_to(tmp)
        if target.is_dir() and not target.is_symlink():
            raise OSError(errno.EISDIR, f"{target.name} is a folder there, where a file goes")
    aside = make_temp_dir(tmp, ".old-")  # in the temporary folder: removed with it
    moved: list[tuple[Path, Path | None]] = []  # (target, the earlier file set aside, if there was one)
    made: list[Path] = []  # folders this made, removed again on failure
    try:
        for item in files:
            rel = item.relative_to(tmp)
            target = out_dir / rel
            for folder in reversed(target.relative_to(out_dir).parents[:-1]):
                if not (out_dir / folder).is_dir():
                    os.mkdir(out_dir / folder)
                    made.append(out_dir / folder)
            earlier = None
            if target.exists() or target.is_symlink():
                earlier = aside / rel
                earlier.parent.mkdir(parents=True, exist_ok=True)
            moved.append((target, earlier))
            if earlier is not None:
                os.replace(target, earlier)
            os.replace(item, target)
        removed = make_temp_dir(tmp, ".gone-") if gone else aside
        for name in gone:
            moved.append((out_dir / name, removed / name))
            os.replace(out_dir / name, removed / name)
    except BaseException:
        for target, earlier in reversed(moved):
            with contextlib.suppress(OSError):
                if earlier is not None and (earlier.exists() or earlier.is_symlink()):
                    os.replace(earlier, target)
                elif earlier is None:
                    target.unlink(missing_ok=True)
        for folder in reversed(made):
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file renamed over it: readers see the old contents
    or the new, never a part, and on any error the old file is untouched and no temporary file is left.

    A new file gets 0666 less the umask; an existing one keeps its permission bits, as it would when written
    in place (so a file someone made private stays private). An ``OSError`` (no space, read-only) becomes
    :class:`OutputError` naming ``path``. A pipe or a device is written straight through; through a symlink, the
    file it points to is replaced.
    """
    path = Path(path)
    if is_stream(path):  # a pipe or a device: written through
        fd = open_stream(path)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
        except OSError as exc:
            raise OutputError(f"{path}: {_reason(exc)}") from None
        return
    target = replaced_path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            keep_mode: int | None = stat.S_IMODE(os.stat(target).st_mode)
        except FileNotFoundError:
            keep_mode = None
        fd, tmp = create_temp_file(target.parent, f".{target.name}.tmp-")
    except OSError as exc:
        raise OutputError(f"{path}: {_reason(exc)}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        if keep_mode is not None:
            os.chmod(tmp, keep_mode)
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            kept = "the old file is untouched" if keep_mode is not None else "nothing was written"
            raise OutputError(f"{path}: {_reason(exc)}; {kept}") from exc
        raise


def write_json_atomic(path: str | Path, data: Any) -> None:
    """:func:`write_text_atomic` of ``data`` as indented JSON (nothing is written when it does not serialize)."""
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")
