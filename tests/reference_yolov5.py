"""The YOLOv5 reference, run in its own interpreter with the PyPI package ``yolov5`` on ``PYTHONPATH`` (tests only).

``python reference_yolov5.py OUT IMGSZ IMAGE...``: builds a random-init YOLOv5n with three named classes (scores
spread), exports it with YOLOv5's own ONNX exporter to ``OUT/yolov5n.onnx`` and writes what YOLOv5's own pipeline
(letterbox, forward, ``non_max_suppression`` at conf 0.25 / IoU 0.45, ``scale_boxes``) finds in each image to
``OUT/reference.json``.
"""

from __future__ import annotations

import functools
import json
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch


def main(out: Path, imgsz: int, images: list[str]) -> None:
    warnings.filterwarnings("ignore")
    torch.onnx.export = functools.partial(torch.onnx.export, dynamo=False)  # YOLOv5's exporter predates dynamo
    from spread import he_init, spread_scores
    from yolov5.export import export_onnx
    from yolov5.models.yolo import Detect, Model
    from yolov5.utils.augmentations import letterbox
    from yolov5.utils.general import non_max_suppression, scale_boxes

    cfg = Path(sys.modules["yolov5"].__file__).parent / "models" / "yolov5n.yaml"
    model = Model(str(cfg), nc=3).eval()
    model.names = ["bolt", "hex nut", "washer"]
    detect = model.model[-1]
    no = detect.no  # 5 + nc per anchor

    def prepare(path: str) -> tuple[torch.Tensor, np.ndarray]:
        image = cv2.imread(path)
        boxed = letterbox(image, imgsz, auto=False)[0]
        return torch.from_numpy(boxed[..., ::-1].transpose(2, 0, 1).copy())[None].float() / 255, image

    gen = he_init(model, seed=3)
    with torch.no_grad():
        spread_scores(list(detect.m), lambda: model(prepare(images[0])[0]), gen, share=0.02, target=0.7,
                      channels=lambda layer: [c for c in range(layer.out_channels) if c % no >= 4])
    for m in model.modules():
        if isinstance(m, Detect):
            m.inplace, m.export = False, True
    export_onnx(model, torch.zeros(1, 3, imgsz, imgsz), out / "yolov5n.pt", 12, False, False)
    for m in model.modules():
        if isinstance(m, Detect):
            m.export = False
    found = {}
    with torch.no_grad():
        for path in images:
            tensor, image = prepare(path)
            det = non_max_suppression(model(tensor)[0], 0.25, 0.45, max_det=300)[0]
            det[:, :4] = scale_boxes(tensor.shape[2:], det[:, :4], image.shape).round(decimals=3)
            found[path] = {"xyxy": det[:, :4].tolist(), "conf": det[:, 4].tolist(), "cls": det[:, 5].int().tolist()}
    (out / "reference.json").write_text(json.dumps(found))


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:])
