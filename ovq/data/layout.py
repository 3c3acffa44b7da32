"""Which files make up a dataset on disk, and when they last changed (to tell whether work built on it is stale).

The layouts are those :func:`ovq.data.datasets.load_dataset` reads: a folder, an Ultralytics ``data.yaml``
(whose ``path:`` names the folder), or a COCO JSON (in an ``annotations/`` folder or beside its images).
"""

from __future__ import annotations

import os
from pathlib import Path

from ovq.core.errors import ConfigError
from ovq.core.yamlio import read_yaml


def dataset_root(data: Path) -> Path:
    """The folder whose files make up a dataset given as a folder, a YOLO ``data.yaml`` or a COCO JSON.

    A YAML's ``path:`` (relative to the YAML) when it has one, else the YAML's folder; the folder above
    ``annotations/`` for a COCO JSON in one, else the JSON's folder. A YAML that cannot be read counts as
    having no ``path:``: loading the dataset reports that problem, this only decides what to watch.
    """
    if data.is_dir():
        return data
    if data.suffix.lower() in (".yaml", ".yml"):
        try:
            doc = read_yaml(data)
        except ConfigError:
            doc = None
        if isinstance(doc, dict) and isinstance(doc.get("path"), str) and doc["path"].strip():
            root = Path(os.path.normpath(data.parent / Path(doc["path"]).expanduser()))
            if root.is_dir():
                return root
        return data.parent
    if data.parent.name == "annotations":
        return data.parent.parent
    return data.parent


def newest_mtime(path: Path) -> float:
    """The newest modification time of a file, or of a folder and anything under it.

    Folder times count too: removing an image from a dataset changes only its folder's time.
    """
    newest = path.stat().st_mtime
    if path.is_file():
        return newest
    for root, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            try:
                newest = max(newest, os.stat(os.path.join(root, name)).st_mtime)
            except OSError:  # removed while walking: it no longer counts
                continue
    return newest
