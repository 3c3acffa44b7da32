"""Atomic outputs (ovq.core.fileio): never half-written, and with the permissions the umask asks for."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

import cv2
import numpy as np
import pytest

from ovq.core import fileio
from ovq.core.errors import OutputError
from ovq.core.fileio import atomic_output_dir, make_temp_dir, write_json_atomic, write_text_atomic


@contextlib.contextmanager
def umask(mask: int):
    """Run the block under ``mask``; the process umask is put back whatever happens."""
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize(("mask", "dir_mode", "file_mode"), [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600),
                                                               (0o002, 0o775, 0o664)], ids=["022", "077", "002"])
def test_atomic_output_dir_follows_the_umask(tmp_path, mask, dir_mode, file_mode):
    out = tmp_path / "model"
    with umask(mask), atomic_output_dir(out) as tmp:
        (tmp / "model.xml").write_text("<net/>")
        (tmp / "sub").mkdir()
        cv2.imwrite(str(tmp / "sub" / "a.png"), np.zeros((2, 2, 3), np.uint8))
        write_json_atomic(tmp / "report.json", {"ok": True})
    assert (mode(out), mode(out / "sub")) == (dir_mode, dir_mode)
    assert [mode(out / f) for f in ("model.xml", "sub/a.png", "report.json")] == [file_mode] * 3
    assert names(tmp_path) == ["model"]  # the temporary folder became it


def test_atomic_output_dir_into_an_existing_folder_keeps_its_mode(tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    out.chmod(0o750)
    (out / "old.txt").write_text("old")
    with umask(0o022), atomic_output_dir(out) as tmp:
        (tmp / "new.txt").write_text("new")
    assert mode(out) == 0o750 and mode(out / "new.txt") == 0o644
    assert names(out) == ["new.txt", "old.txt"] and names(tmp_path) == ["model"]


@pytest.mark.parametrize("exists", [True, False])
def test_atomic_output_dir_failure_leaves_the_output_as_it_was(tmp_path, exists):
    out = tmp_path / "model"
    if exists:
        out.mkdir()
        (out / "model.xml").write_text("old")
    with pytest.raises(RuntimeError, match="converter crashed"), atomic_output_dir(out) as tmp:
        (tmp / "model.xml").write_text("half")
        raise RuntimeError("converter crashed")
    assert names(tmp_path) == (["model"] if exists else [])
    if exists:
        assert names(out) == ["model.xml"] and (out / "model.xml").read_text() == "old"


@pytest.mark.parametrize(("mask", "dir_mode", "file_mode"), [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600)],
                         ids=["022", "077"])
def test_write_text_atomic_follows_the_umask(tmp_path, mask, dir_mode, file_mode):
    path = tmp_path / "new" / "summary.md"
    with umask(mask):
        write_text_atomic(path, "naïve café\n")
    assert path.read_text(encoding="utf-8") == "naïve café\n"
    assert (mode(path.parent), mode(path)) == (dir_mode, file_mode)
    assert names(path.parent) == ["summary.md"]


def test_write_text_atomic_keeps_the_mode_of_the_file_it_replaces(tmp_path):
    path = tmp_path / "secrets.json"
    path.write_text("old")
    path.chmod(0o640)
    with umask(0o022):
        write_text_atomic(path, "new")
    assert path.read_text() == "new" and mode(path) == 0o640


def test_write_text_atomic_failure_while_writing_keeps_the_old_contents(tmp_path):
    path = tmp_path / "report.md"
    path.write_text("old")
    with pytest.raises(UnicodeEncodeError):
        write_text_atomic(path, "x" * 100_000 + "\ud800")  # a lone surrogate cannot be encoded
    assert path.read_text() == "old" and names(tmp_path) == ["report.md"]


def test_write_text_atomic_failure_to_rename_keeps_the_old_contents(tmp_path, monkeypatch):
    path = tmp_path / "report.md"
    path.write_text("old")

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied", str(dst))

    monkeypatch.setattr(fileio.os, "replace", refuse)
    with pytest.raises(OutputError, match=r"report.md: Permission denied; the old file is untouched"):
        write_text_atomic(path, "new")
    monkeypatch.undo()
    assert path.read_text() == "old" and names(tmp_path) == ["report.md"]


def test_write_json_atomic_writes_nothing_when_the_data_does_not_serialize(tmp_path):
    path = tmp_path / "r.json"
    path.write_text("{}\n")
    with pytest.raises(TypeError):
        write_json_atomic(path, {"when": object()})
    assert path.read_text() == "{}\n" and names(tmp_path) == ["r.json"]


def test_temporary_names_in_use_are_skipped_and_the_search_ends(tmp_path, monkeypatch):
    tokens = iter(["aaaa", "aaaa", "bbbb"])
    monkeypatch.setattr(fileio.secrets, "token_hex", lambda n: next(tokens))
    (tmp_path / ".x-aaaa").mkdir()
    assert make_temp_dir(tmp_path, ".x-") == tmp_path / ".x-bbbb"
    monkeypatch.setattr(fileio.secrets, "token_hex", lambda n: "aaaa")
    with pytest.raises(FileExistsError, match=r"no free name for a temporary '\.x-\*' in 100 tries"):
        make_temp_dir(tmp_path, ".x-")


def test_write_text_atomic_never_writes_through_a_symlink_at_its_temporary_name(tmp_path, monkeypatch):
    victim = tmp_path / "victim"
    victim.write_text("safe")
    tokens = iter(["aaaa", "bbbb"])
    monkeypatch.setattr(fileio.secrets, "token_hex", lambda n: next(tokens))
    (tmp_path / ".out.txt.tmp-aaaa").symlink_to(victim)
    write_text_atomic(tmp_path / "out.txt", "data")
    assert victim.read_text() == "safe" and (tmp_path / "out.txt").read_text() == "data"


def test_predict_output_follows_the_umask(tmp_path):
    from conftest import tiny_yolo_ir

    from ovq.evaluation.prediction import predict

    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "a.png"), np.full((64, 64, 3), 128, np.uint8))
    model = tiny_yolo_ir(tmp_path)
    out = tmp_path / "pred"
    with umask(0o022):
        predict(model, [images], out_dir=out, device="CPU")
    assert mode(out) == 0o755
    assert {p.name: mode(p) for p in out.iterdir()} == {"a.jpg": 0o644, "predictions.json": 0o644}


# -- can an output be written at all (checked before long work) -------------------------------------------------
def test_check_output_file_refuses_a_path_through_a_regular_file(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputError, match=r"afile/sub/r.jsonl: .*afile is not a folder"):
        fileio.check_output_file(tmp_path / "afile" / "sub" / "r.jsonl")
    assert names(tmp_path) == ["afile"]


def test_check_output_file_refuses_a_folder_and_accepts_a_file_to_replace(tmp_path):
    with pytest.raises(OutputError, match="is a folder"):
        fileio.check_output_file(tmp_path)
    (tmp_path / "old.json").write_text("{}")
    assert fileio.check_output_file(tmp_path / "old.json") == tmp_path / "old.json"
    assert fileio.check_output_file(tmp_path / "new" / "deeper" / "x.json")  # folders to be made: fine
    assert names(tmp_path) == ["old.json"]  # and nothing was created, nor left behind by the probe


def test_check_output_dir_refuses_a_file_and_a_symlink_loop(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputError, match="afile: exists and is not a folder"):
        fileio.check_output_dir(tmp_path / "afile")
    (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
    with pytest.raises(OutputError, match="loop1: Too many levels of symbolic links"):
        fileio.check_output_dir(tmp_path / "loop1")
    with pytest.raises(OutputError, match="Too many levels of symbolic links"):
        atomic_output_dir(tmp_path / "loop1").__enter__()
    assert sorted(names(tmp_path)) == ["afile", "loop1", "loop2"]


def test_check_output_dir_compares_free_space_with_what_is_needed(tmp_path):
    free = fileio.free_bytes(tmp_path)
    fileio.check_output_dir(tmp_path / "m", need_bytes=1000)
    with pytest.raises(OutputError, match=r"m: not enough free space: needs about .* MB, .* free in"):
        fileio.check_output_dir(tmp_path / "m", need_bytes=free + 10**12)


# -- outputs that are not plain files ------------------------------------------------------------------------------
def test_text_outputs_stream_into_a_fifo_and_replace_a_symlinks_file(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    from conftest import read_fifo

    got: list[str] = []
    reader = read_fifo(fifo, got)
    write_json_atomic(fifo, {"a": 1})
    reader.join(10)
    assert got == ['{\n  "a": 1\n}\n'] and stat.S_ISFIFO(os.lstat(fifo).st_mode)
    real = tmp_path / "real.json"
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    write_text_atomic(link, "new")
    assert link.is_symlink() and real.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.json", "pipe", "real.json"]


def test_an_output_folder_through_a_symlink_is_filled_where_it_points(tmp_path):
    real = tmp_path / "models" / "v2"
    real.mkdir(parents=True)
    link = tmp_path / "current"
    link.symlink_to(real)
    with atomic_output_dir(link) as tmp:
        (tmp / "model.xml").write_text("x")
        assert tmp.parent == real  # the moves stay on the disk the folder is on
    assert link.is_symlink() and (real / "model.xml").read_text() == "x"


def test_check_output_file_takes_a_writable_pipe_and_refuses_a_socket(tmp_path):
    import socket

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert fileio.check_output_file(fifo) == fifo
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(tmp_path / "sock"))
        with pytest.raises(OutputError, match="sock: not a file, a pipe or a terminal"):
            fileio.check_output_file(tmp_path / "sock")
    finally:
        sock.close()


def _earlier_result(out: Path) -> dict[str, str]:
    out.mkdir()
    files = {"model.xml": "old xml", "model.bin": "old bin", "report.json": "old report", "notes.txt": "the user's"}
    for name, text in files.items():
        (out / name).write_text(text)
    return files


def _contents(out: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in out.iterdir() if p.is_file()}


def test_replacing_a_result_is_all_or_none_when_one_file_cannot_be_replaced(tmp_path):
    """A folder where report.md goes: the model and report.json were replaced before the error, the plot was not
    (an old report describing a new model)."""
    out = tmp_path / "q"
    before = _earlier_result(out)
    (out / "report.md").mkdir()
    with pytest.raises(OutputError, match="report.md is a folder there"), atomic_output_dir(out) as tmp:
        for name in ("model.xml", "model.bin", "report.json", "report.md"):
            (tmp / name).write_text("new")
    assert _contents(out) == before
    assert names(out) == sorted([*before, "report.md"])  # no temporary folder left either


@pytest.mark.parametrize("fail_at", [1, 2, 3])
def test_an_interrupt_between_two_moves_puts_the_earlier_result_back(tmp_path, monkeypatch, fail_at):
    out = tmp_path / "q"
    before = _earlier_result(out)
    real_replace, calls = os.replace, []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) == 2 * fail_at:  # after one file set aside or moved in: Ctrl-C
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr("ovq.core.fileio.os.replace", replace)
    with pytest.raises(KeyboardInterrupt), atomic_output_dir(out) as tmp:
        for name in ("model.xml", "model.bin", "report.json", "sensitivity.png"):
            (tmp / name).write_text("new")
    monkeypatch.undo()
    assert _contents(out) == before
    assert names(out) == sorted(before)


def test_an_existing_output_folder_gets_its_temporary_folder_inside(tmp_path):
    """A mount point (a container's volume) cannot be renamed into: the files move within its own file system
    ("Invalid cross-device link" after the whole quantization, every time)."""
    out = tmp_path / "vol"
    before = _earlier_result(out)
    with atomic_output_dir(out) as tmp:
        assert tmp.parent == out
        (tmp / "model.xml").write_text("new xml")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "x.txt").write_text("x")
    assert (out / "model.xml").read_text() == "new xml" and (out / "notes.txt").read_text() == "the user's"
    assert (out / "sub" / "x.txt").read_text() == "x" and names(out) == sorted([*before, "sub"])


def test_files_the_new_result_removes_go_with_it_and_come_back_when_it_is_undone(tmp_path, monkeypatch):
    """``remove``: the earlier result's files the new one does not make (predict's annotated images) are taken out in
    the same move; an interrupt after them puts them back with everything else. Names outside the folder, folders and
    files the new result writes anyway are left alone."""
    out = tmp_path / "q"
    _earlier_result(out)
    (out / "old.jpg").write_text("old")
    (out / "sub").mkdir()
    (tmp_path / "outside.jpg").write_text("outside")
    before = _contents(out)
    remove = ["old.jpg", "sub", "../outside.jpg", "model.xml", "absent.jpg"]
    real_replace = os.replace

    def replace(src, dst):
        if Path(dst).parent.name.startswith(".gone-"):  # the removal done: Ctrl-C before the move ends
            real_replace(src, dst)
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr("ovq.core.fileio.os.replace", replace)
    with pytest.raises(KeyboardInterrupt), atomic_output_dir(out, remove=remove) as tmp:
        (tmp / "model.xml").write_text("new")
    monkeypatch.undo()
    assert _contents(out) == before and (tmp_path / "outside.jpg").read_text() == "outside"
    with atomic_output_dir(out, remove=remove) as tmp:
        (tmp / "model.xml").write_text("new")
    assert (out / "model.xml").read_text() == "new" and not (out / "old.jpg").exists() and (out / "sub").is_dir()
    assert (tmp_path / "outside.jpg").read_text() == "outside" and not [p for p in out.iterdir() if p.name[0] == "."]
