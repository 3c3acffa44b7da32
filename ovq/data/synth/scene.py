"""A still conveyor scene: parts scattered on a belt, drawn, photographed, with tight boxes of what is visible.

Boxes are ``xyxy`` in pixel-edge coordinates: a part covering pixel columns 3..7 has ``x1 = 3`` and
``x2 = 8``. A box covers the part's *visible* pixels (after occlusion by other parts and the side rails,
clipped to the image); a part that is mostly hidden is drawn but not labelled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ovq.data.synth.belt import Layout, apply_rails, belt_texture, expose, make_layout
from ovq.data.synth.parts import CLASSES, Part, draw_part, make_part, part_size

MIN_VISIBLE_FRACTION = 0.4  # parts with less of their area visible are drawn but not labelled
MIN_BOX_SIDE = 4.0  # pixels; smaller visible boxes are not labelled

Drawn = tuple[int, tuple[int, int, int, int]]  # a part's full area and the region it was drawn in


@dataclass(frozen=True)
class Scene:
    """A rendered image with its ground truth and, per pixel, which labelled part is visible there.

    ``instance_map`` is int16 ``(H, W)``: ``i`` where labelled part ``i`` (row ``i`` of ``xyxy``) is
    visible, ``-2`` where an unlabelled (mostly hidden) part is, ``-1`` for belt and rails.
    """

    image: np.ndarray
    xyxy: np.ndarray
    class_id: np.ndarray
    instance_map: np.ndarray


def render_scene_detailed(rng: np.random.Generator, *, width: int = 320, height: int = 320) -> Scene:
    """Like :func:`render_scene`, also returning the visible-part map the boxes were taken from."""
    if width < 32 or height < 32:
        raise ValueError(f"image must be at least 32x32 pixels, got {width}x{height}")
    vertical = rng.random() < 0.3  # some belts run top to bottom: draw sideways, then transpose
    w, h = (height, width) if vertical else (width, height)
    layout = make_layout(rng, w, h)
    background = belt_texture(rng, h, w, "rollers" if rng.random() < 0.2 else "belt")
    parts: list[Part] = []
    overlap = rng.uniform(0.55, 0.95)
    for _ in range(int(rng.integers(2, 13))):
        class_id = int(rng.integers(len(CLASSES)))
        size = part_size(rng, class_id, layout.parts_scale)
        y_pad = 0.3 * size
        spot = place(rng, parts, size, (-0.6 * size, w + 0.6 * size),
                     (layout.belt_y0 + y_pad, layout.belt_y1 - y_pad), overlap)
        if spot is not None:
            parts.append(make_part(rng, class_id, spot[0], spot[1], size))
    canvas, instance_map, drawn = draw_scene(parts, background, layout)
    image = expose(canvas, rng, layout, motion_px=None)
    xyxy, class_id = visible_boxes(parts, drawn, instance_map)
    if vertical:
        image = np.ascontiguousarray(image.transpose(1, 0, 2))
        instance_map = np.ascontiguousarray(instance_map.T)
        xyxy = np.ascontiguousarray(xyxy[:, [1, 0, 3, 2]])
    return Scene(image=image, xyxy=xyxy, class_id=class_id, instance_map=instance_map)


def render_scene(
    rng: np.random.Generator, *, width: int = 320, height: int = 320
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One conveyor image: ``(BGR uint8 (H, W, 3), xyxy float32 (N, 4), class_id int64 (N,))``."""
    scene = render_scene_detailed(rng, width=width, height=height)
    return scene.image, scene.xyxy, scene.class_id


def place(rng: np.random.Generator, parts: list[Part], r: float, xr: tuple[float, float],
          yr: tuple[float, float], overlap: float) -> tuple[float, float] | None:
    """A spot in ``xr`` x ``yr`` for a part of radius ``r`` that overlaps ``parts`` no more than ``overlap``
    allows (1: touching at most), or ``None`` after 12 tries."""
    for _ in range(12):
        x = float(rng.uniform(*xr))
        y = float(rng.uniform(*yr))
        if all(math.hypot(x - p.cx, y - p.cy) > overlap * (r + p.radius()) for p in parts):
            return x, y
    return None


def draw_scene(parts: list[Part], background: np.ndarray, layout: Layout) -> tuple[np.ndarray, np.ndarray, list[Drawn]]:
    """Draw ``parts`` in order (later ones on top) over ``background``, then the rails over everything.

    Returns the float32 canvas, the instance map (part index per pixel, ``-1`` for belt and rails) and, per
    part, what :func:`~ovq.data.synth.parts.draw_part` returned.
    """
    canvas = background.copy()
    instance_map = np.full(canvas.shape[:2], -1, np.int16)
    drawn = [draw_part(canvas, instance_map, part, i, light=layout.light, shadow=layout.shadow)
             for i, part in enumerate(parts)]
    apply_rails(canvas, instance_map, layout)
    return canvas, instance_map, drawn


def visible_boxes(parts: list[Part], drawn: list[Drawn], instance_map: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tight boxes of visible pixels; renumber ``instance_map`` so labelled parts are 0..N-1, others -2."""
    boxes: list[list[float]] = []
    classes: list[int] = []
    remap = np.full(len(parts) + 1, -2, np.int16)  # index len(parts) holds -1 (background) via offset
    remap[-1] = -1
    for i, (part, (area, (x0, y0, x1, y1))) in enumerate(zip(parts, drawn, strict=True)):
        ys, xs = np.nonzero(instance_map[y0:y1, x0:x1] == i)
        if len(xs) == 0 or len(xs) < MIN_VISIBLE_FRACTION * area:
            continue
        box = [float(x0 + xs.min()), float(y0 + ys.min()), float(x0 + xs.max() + 1), float(y0 + ys.max() + 1)]
        if box[2] - box[0] < MIN_BOX_SIDE or box[3] - box[1] < MIN_BOX_SIDE:
            continue
        remap[i] = len(boxes)
        boxes.append(box)
        classes.append(part.class_id)
    instance_map[...] = remap[instance_map]
    return np.array(boxes, np.float32).reshape(-1, 4), np.array(classes, np.int64)
