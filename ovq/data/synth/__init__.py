"""Procedural industrial scenes: metal parts lying on a moving conveyor belt, with exact boxes.

Everything is drawn with OpenCV and numpy from a seeded ``numpy.random.Generator``, so a seed gives the same
images on every machine. Three entry points:

- :func:`render_scene` - one still image with its ground truth (tight boxes taken from the drawn masks);
- :func:`write_yolo_dataset` - train / val / calib splits in Ultralytics YOLO layout with a ``data.yaml``;
- :class:`ConveyorStream` - an endless live source whose parts ride across the frame with the belt.

Boxes are ``xyxy`` in pixel-edge coordinates: a part covering pixel columns 3..7 has ``x1 = 3`` and
``x2 = 8``. A box covers the part's *visible* pixels (after occlusion by other parts and the side rails,
clipped to the image); a part that is mostly hidden is drawn but not labelled.

The names below are the API. The modules hold the pieces, lowest first: ``parts`` (part classes, shapes,
drawing one part), ``belt`` (belt, rails, lighting, camera), ``scene`` (a still scene and its boxes),
``dataset`` (the YOLO writer) and ``conveyor`` (the live stream).
"""

from ovq.data.synth.conveyor import ConveyorStream
from ovq.data.synth.dataset import SPLIT_SEED_OFFSETS, write_yolo_dataset
from ovq.data.synth.parts import CLASSES
from ovq.data.synth.scene import MIN_BOX_SIDE, MIN_VISIBLE_FRACTION, Scene, render_scene, render_scene_detailed

__all__ = [
    "CLASSES",
    "MIN_BOX_SIDE",
    "MIN_VISIBLE_FRACTION",
    "SPLIT_SEED_OFFSETS",
    "ConveyorStream",
    "Scene",
    "render_scene",
    "render_scene_detailed",
    "write_yolo_dataset",
]
