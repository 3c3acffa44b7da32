"""Ultralytics ``.pt`` files: loaded only through Ultralytics (which unpickles them), exported to IR by it.

Which head a YOLO26 (or YOLOv10) ``.pt`` gives: ovq asks Ultralytics for the NMS-free one-to-one head
(``nms=False``: ``[1, 300, 6]``, family ``yolo_e2e``), the head these models are meant to be deployed with.
Ultralytics' own default export (``nms=None``, e.g. ``yolo export format=onnx``) gives the one-to-many head
(``[1, 4 + nc, N]``, family ``yolo``, decoded with NMS); ovq converts that ONNX as it is.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

from ovq.core.errors import DependencyError, ModelError
from ovq.model.exporter import ExporterMetadata, read_exporter_metadata
from ovq.model.paths import resolve_model_path
from ovq.runtime.compilation import first_line, read_model

logger = logging.getLogger(__name__)


def export_pt(path: Path, size: int | list[int]) -> tuple[Any, ExporterMetadata]:
    """The OpenVINO model Ultralytics exports from ``path`` (input ``size``) and what it says about it."""
    try:
        from ultralytics import YOLO
    except ImportError:
        raise DependencyError(
            f"{path}: converting .pt files needs Ultralytics; install it with: pip install 'ovq[ultralytics]'"
        ) from None
    logger.warning(
        "%s: loading through Ultralytics, which unpickles the file (only load .pt files you trust)", path
    )
    with tempfile.TemporaryDirectory(prefix="ovq-pt-") as tmp:
        local = Path(tmp) / path.name
        shutil.copyfile(path, local)  # Ultralytics exports beside the source; keep the source folder clean
        try:
            with _quiet("ultralytics"):
                yolo = YOLO(str(local), task="detect")
                names = [str(yolo.names[k]) for k in sorted(yolo.names)]
                head = yolo.model.model[-1]
                options: dict[str, Any] = {}
                if getattr(head, "one2one_cv2", None) is not None:
                    options["nms"] = False  # YOLO26 / YOLOv10: the NMS-free one-to-one head, the deploy mode
                exported = yolo.export(format="openvino", imgsz=size, dynamic=False, verbose=False, **options)
        except Exception as exc:  # Ultralytics raises anything from unpickling to export
            raise ModelError(f"{path}: Ultralytics could not load or export it: {first_line(exc)}") from exc
        xml = resolve_model_path(exported)
        model = read_model(xml)
        meta = read_exporter_metadata(model, xml)
    meta.source = str(path)
    meta.values["names"], meta.where["names"] = repr(names), "the .pt file"
    return model, meta


@contextlib.contextmanager
def _quiet(name: str):
    """Hold a chatty library's logger at WARNING while it works, and torch's tracing deprecation notes back."""
    lib_logger = logging.getLogger(name)
    level = lib_logger.level
    lib_logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.")
            yield
    finally:
        lib_logger.setLevel(level)
