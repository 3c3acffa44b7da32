"""Where a model is: a folder, an ``.xml``, ``.onnx`` or ``.pt`` file."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from ovq.core.errors import ConfigError, ModelError, OutputError
from ovq.core.fileio import unreadable
from ovq.core.urls import is_serving_url, redact
from ovq.runtime.external_data import data_files

MODEL_XML = "model.xml"
SOURCE_SUFFIXES = (".xml", ".onnx", ".pt")


def resolve_model_path(src: str | Path) -> Path:
    """A model folder (with ``model.xml`` or one ``*.xml``), an ``.xml``, ``.onnx`` or ``.pt`` file."""
    path = Path(src)
    if not path.exists():
        raise ModelError(f"{path}: no such file or folder")
    if path.is_dir():
        if (path / MODEL_XML).exists():
            return path / MODEL_XML
        xmls = sorted(path.glob("*.xml"))
        if len(xmls) == 1:
            return xmls[0]
        if not xmls:
            raise ModelError(f"{path}: folder holds no model (.xml) file{_repository_hint(path)}")
        raise ModelError(f"{path}: folder holds several .xml files; name one of {', '.join(x.name for x in xmls)}")
    if path.suffix.lower() == ".pt2":  # OpenVINO's PyTorch frontend reads one, but as [?, 3, ?, ?]: its size is lost
        raise ModelError(_PROGRAM.format(path=path))
    if path.suffix.lower() not in SOURCE_SUFFIXES:
        raise ModelError(f"{path}: unsupported model file type '{path.suffix}'; expected .xml, .onnx or .pt")
    if path.stat().st_size == 0:
        raise ModelError(f"{path}: file is empty")
    if why := unreadable(path):  # OpenVINO would say "not an ONNX model" or "cannot read" of it
        raise ModelError(f"{path}: {why}")
    if path.suffix.lower() == ".pt" and _is_export_program(path):  # before Ultralytics unpickles it
        raise ModelError(_PROGRAM.format(path=path))
    return path


_PROGRAM = ("{path}: a torch.export program (.pt2), which ovq does not convert; write it as ONNX with "
            "torch.onnx.export(torch.export.load('{path}'), f='model.onnx') and convert that")


def _is_export_program(path: Path) -> bool:
    """Whether ``path`` is an archive ``torch.export.save`` wrote (its ``archive_format`` says ``pt2``), whatever its
    name: saved as ``model.pt``, Ultralytics took it for a broken checkpoint ("empty, truncated or corrupted")."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            formats = [n for n in archive.namelist() if n.rsplit("/", 1)[-1] == "archive_format"]
            return any(archive.read(n).strip() == b"pt2" for n in formats[:1])
    except (OSError, zipfile.BadZipFile):
        return False


def model_files(model: object) -> list[Path]:
    """The files a model given as ``model`` is read from (a folder's ``.xml`` files with their ``.bin``; an ``.xml``
    with its ``.bin``; an ``.onnx`` file with its external data files; a ``.pt`` file), those that exist; none for a
    served model's URL."""
    if not isinstance(model, (str, Path)) or is_serving_url(model):
        return []
    path = Path(model)
    files = sorted(path.glob("*.xml")) if path.is_dir() else [path]
    files += [f.with_suffix(".bin") for f in files if f.suffix.lower() == ".xml"]
    files += [data for f in files for data in data_files(f)]  # an ONNX model's weights beside it
    return [f for f in files if f.is_file()]


def model_digest(src: str | Path) -> str:
    """The SHA-256 of a model's files (an ``.xml`` with its ``.bin``; an ``.onnx`` with its external data files; a
    ``.pt`` file): which model a quantized one was made from, wherever it lies and whatever its files' times say."""
    path = resolve_model_path(src)
    digest = hashlib.sha256()
    for part in (path, path.with_suffix(".bin")) if path.suffix.lower() == ".xml" else (path, *data_files(path)):
        with part.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def refuse_urls(models: Sequence[object], what: str) -> None:
    """A served model's URL among ``models`` is a :class:`ConfigError` saying ``what`` the command needs instead,
    for the commands that read or write model files: taken for a path, the URL read 'http:/HOST:PORT/v2/models/NAME:
    no such file or folder' (one of its slashes gone)."""
    for model in models:
        if is_serving_url(model):
            raise ConfigError(f"{redact(str(model))}: a served model's URL; {what}")


def is_version_name(name: str) -> bool:
    """Whether a folder name is a model version for a server (``1``, ``2``...): ASCII digits. ``str.isdigit`` alone
    also takes '²' or '١', which ``int`` refused or read as a version no server would see."""
    return name.isascii() and name.isdigit()


def repository_version(model: str | Path) -> tuple[str, str] | None:
    """(NAME, VERSION) when ``model`` is a serving repository's version folder ``REPO/NAME/VERSION`` (as ``ovq
    export-serving`` writes it: a numbered folder holding ``model.xml``) or the ``model.xml`` in one; else ``None``."""
    path = Path(model).absolute()  # '1' given from inside REPO/NAME has NAME above it too
    folder = path.parent if path.name == MODEL_XML else path
    if not is_version_name(folder.name) or not (folder / MODEL_XML).is_file() or not folder.parent.name:
        return None
    return folder.parent.name, folder.name


def refuse_replacing_source(src: str | Path, out_dir: str | Path, *, held: str, by: str) -> None:
    """:class:`OutputError` when ``out_dir``'s ``model.xml``/``.bin`` are the files of the model ``src`` names: what
    is written there would replace the model being read (``held``: which model that is, ``by``: what replaces it).
    The write itself is all or nothing; what is lost is the model the user gave."""
    path = resolve_model_path(src)
    try:
        inputs = {path.resolve(), path.with_suffix(".bin").resolve()} if path.suffix.lower() == ".xml" else {path.resolve()}
        outputs = {(Path(out_dir) / name).resolve() for name in (MODEL_XML, Path(MODEL_XML).with_suffix(".bin").name)}
    except (OSError, RuntimeError):  # a symlink loop (RuntimeError in Python 3.11): the output check says so, later
        return
    if inputs & outputs:
        raise OutputError(f"{out_dir}: holds {held} ({path.name}), which {by} would replace; give another output "
                          "folder (-o)")


def _repository_hint(folder: Path) -> str:
    """Where the model is when ``folder`` is part of a serving model repository (``ovq export-serving``: REPO/NAME/
    VERSION/model.xml), else nothing (also when a folder in it cannot be listed: the hint is not the error)."""
    try:
        return _in_repository(folder)
    except OSError:
        return ""


def _in_repository(folder: Path) -> str:
    versions = sorted((int(p.name), p) for p in folder.iterdir() if p.is_dir() and is_version_name(p.name)
                      and (p / MODEL_XML).is_file())
    if versions:
        return (f"; it is a served model's folder with version(s) {', '.join(str(v) for v, _ in versions)}: give one, "
                f"e.g. {versions[-1][1]} (the newest, which a server serves)")
    models = sorted(p.name for p in folder.iterdir() if p.is_dir() and any(
        v.is_dir() and is_version_name(v.name) and (v / MODEL_XML).is_file() for v in p.iterdir()))
    if models:
        return f"; it is a model repository: give a model's version folder, e.g. {folder / models[0]}/VERSION"
    return ""
