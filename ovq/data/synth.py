"""Procedural industrial scenes: metal parts lying on a moving conveyor belt, with exact boxes.

Everything is drawn with OpenCV and numpy from a seeded ``numpy.random.Generator``, so a seed gives the same
images on every machine. Three entry points:

- :func:`render_scene` - one still image with its ground truth (tight boxes taken from the drawn masks);
- :func:`write_yolo_dataset` - train / val / calib splits in Ultralytics YOLO layout with a ``data.yaml``;
- :class:`ConveyorStream` - an endless live source whose parts ride across the frame with the belt.

Boxes are ``xyxy`` in pixel-edge coordinates: a part covering pixel columns 3..7 has ``x1 = 3`` and
``x2 = 8``. A box covers the part's *visible* pixels (after occlusion by other parts and the side rails,
clipped to the image); a part that is mostly hidden is drawn but not labelled.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import cv2
import numpy as np

logger = logging.getLogger(__name__)

CLASSES: tuple[str, ...] = ("nut", "bolt", "washer", "gear", "screw")

MIN_VISIBLE_FRACTION = 0.4  # parts with less of their area visible are drawn but not labelled
MIN_BOX_SIDE = 4.0  # pixels; smaller visible boxes are not labelled
_SHIFT = 4  # sub-pixel bits for cv2 polygon drawing
_ONE = 1 << _SHIFT

# BGR base colours of part finishes (each is jittered per part).
_FINISHES: tuple[tuple[float, float, float], ...] = (
    (185.0, 185.0, 180.0),  # bright zinc
    (150.0, 150.0, 148.0),  # plain steel
    (118.0, 120.0, 122.0),  # dark steel
    (205.0, 200.0, 195.0),  # stainless, polished
    (60.0, 150.0, 195.0),  # brass
    (70.0, 110.0, 185.0),  # copper / bronze
    (52.0, 50.0, 50.0),  # black oxide
    (75.0, 185.0, 205.0),  # yellow zinc passivation
)
# BGR belt surfaces.
_BELTS: tuple[tuple[float, float, float], ...] = (
    (58.0, 58.0, 60.0),  # black rubber
    (92.0, 94.0, 96.0),  # worn grey rubber
    (70.0, 115.0, 62.0),  # green PVC
    (140.0, 92.0, 48.0),  # blue PU
    (170.0, 172.0, 170.0),  # light grey PU
    (205.0, 210.0, 212.0),  # white food-grade
)
_RAIL_PAINTS: tuple[tuple[float, float, float], ...] = (
    (165.0, 165.0, 160.0),  # bare steel
    (40.0, 175.0, 215.0),  # safety yellow
    (150.0, 100.0, 40.0),  # machine blue
    (70.0, 120.0, 70.0),  # machine green
    (95.0, 95.0, 95.0),  # grey paint
)


@dataclass
class _Part:
    """One part: its shape is fixed when it is made; only the position changes as the belt moves."""

    class_id: int
    cx: float
    cy: float
    size: float  # radius for round parts, half-length for bolts and screws (pixels)
    angle: float  # radians
    colour: np.ndarray  # (3,) float32 BGR
    polys: list[np.ndarray]  # filled outlines in part units (centre 0, radius 1), each (K, 2)
    holes: list[np.ndarray]  # outlines cut back out of the mask
    lines: list[np.ndarray]  # detail polylines (threads, edges, slots), drawn darker
    highlights: list[np.ndarray]  # detail polylines drawn lighter
    cylinder: bool  # shade as a cylinder lying along the part's x axis
    sheen: float  # strength of the radial (turned-metal) highlight
    seed: int  # for the per-part surface grain

    def radius(self) -> float:
        return self.size * 1.05


@dataclass
class _Layout:
    """Where the belt and rails are, and how the scene is lit (fixed for a camera)."""

    width: int
    height: int
    belt_y0: int
    belt_y1: int
    rail_h: int
    light: np.ndarray  # (2,) unit vector pointing from the light along the image plane
    shadow: float
    lighting: np.ndarray  # (H, W, 1) float32 multiplicative field
    rails: np.ndarray  # (H, W, 3) float32 rails and frame, used in the rows of rail_rows
    rail_rows: list[tuple[int, int]]  # [start, stop) row spans covered by rails and machine frame
    parts_scale: float = 1.0
    extra: dict = field(default_factory=dict)


def _circle(r: float, n: int = 28, phase: float = 0.0) -> np.ndarray:
    t = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False) + phase
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def _rect(x0: float, x1: float, y0: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


def _thread_lines(x0: float, x1: float, half_w: float, pitch: float, slant: float) -> list[np.ndarray]:
    xs = np.arange(x0, x1 - slant, pitch)
    return [np.array([[x, -half_w], [x + slant, half_w]]) for x in xs]


def _make_part(rng: np.random.Generator, class_id: int, cx: float, cy: float, size: float) -> _Part:
    finish = np.array(_FINISHES[int(rng.integers(len(_FINISHES)))], dtype=np.float32)
    colour = np.clip(finish * rng.uniform(0.85, 1.12) + rng.normal(0.0, 6.0, 3), 20, 250).astype(np.float32)
    polys: list[np.ndarray] = []
    holes: list[np.ndarray] = []
    lines: list[np.ndarray] = []
    highlights: list[np.ndarray] = []
    cylinder = False
    sheen = 0.0
    name = CLASSES[class_id]
    if name == "nut":
        hexagon = _circle(1.0, 6, phase=math.pi / 6)
        hole_r = rng.uniform(0.42, 0.55)
        polys.append(hexagon)
        holes.append(_circle(hole_r))
        lines += [np.vstack([hexagon, hexagon[:1]]), _circle(hole_r + 0.07)]
        highlights.append(_circle(rng.uniform(0.82, 0.9), 36))
        sheen = rng.uniform(0.05, 0.18)
    elif name == "washer":
        hole_r = rng.uniform(0.45, 0.62)
        polys.append(_circle(1.0, 40))
        holes.append(_circle(hole_r, 32))
        lines.append(_circle(hole_r + 0.04, 32))
        highlights.append(_circle(rng.uniform(0.7, 0.92), 40))
        sheen = rng.uniform(0.15, 0.35)
    elif name == "gear":
        teeth = int(rng.integers(8, 17))
        root = rng.uniform(0.74, 0.84)
        step = 2.0 * math.pi / teeth
        pts = []
        for k in range(teeth):
            a = k * step
            for frac, rad in ((0.0, root), (0.18, 1.0), (0.5, 1.0), (0.68, root)):
                pts.append((rad * math.cos(a + frac * step), rad * math.sin(a + frac * step)))
        outline = np.array(pts)
        polys.append(outline)
        hole_r = rng.uniform(0.18, 0.3)
        holes.append(_circle(hole_r, 20))
        if rng.random() < 0.5:  # lightening holes in the web
            n_holes = int(rng.integers(3, 7))
            ring = rng.uniform(0.48, 0.56)
            small = min(0.14, ring * math.sin(math.pi / n_holes) * 0.6)
            for k in range(n_holes):
                a = 2.0 * math.pi * k / n_holes
                holes.append(_circle(small, 16) + [ring * math.cos(a), ring * math.sin(a)])
        lines += [np.vstack([outline, outline[:1]]), _circle(hole_r + 0.12, 24)]
        highlights.append(_circle(root - 0.08, 40))
        sheen = rng.uniform(0.05, 0.2)
    elif name == "bolt":
        head_len = rng.uniform(0.3, 0.45)
        head_w = rng.uniform(0.38, 0.5)
        shank_w = head_w * rng.uniform(0.45, 0.6)
        hx = -1.0 + head_len
        chamfer = shank_w * 0.35
        head = _rect(-1.0, hx, -head_w, head_w)
        shank = np.array(
            [[hx - 0.02, -shank_w], [1.0 - chamfer, -shank_w], [1.0, -shank_w + chamfer],
             [1.0, shank_w - chamfer], [1.0 - chamfer, shank_w], [hx - 0.02, shank_w]]
        )
        polys += [head, shank]
        face = head_w * rng.uniform(0.35, 0.55)
        lines += [np.array([[-1.0, -face], [hx, -face]]), np.array([[-1.0, face], [hx, face]])]
        thread_start = rng.uniform(hx + 0.05, 0.4)
        lines += _thread_lines(thread_start, 1.0, shank_w * 0.92, rng.uniform(0.07, 0.1), shank_w * 0.3)
        lines.append(np.vstack([head, head[:1]]))
        cylinder = True
    else:  # screw
        head_len = rng.uniform(0.16, 0.24)
        head_w = rng.uniform(0.26, 0.36)
        shank_w = head_w * rng.uniform(0.32, 0.42)
        hx = -1.0 + head_len
        tip = rng.uniform(0.65, 0.8)
        if rng.random() < 0.5:  # pan head: half ellipse
            t = np.linspace(math.pi / 2, 3 * math.pi / 2, 17)
            head = np.stack([hx + head_len * np.cos(t), head_w * np.sin(t)], axis=1)
            head = np.vstack([head, [[hx + 0.02, -head_w], [hx + 0.02, head_w]]])
        else:  # countersunk head: trapezoid
            head = np.array([[-1.0, -head_w], [hx, -shank_w], [hx, shank_w], [-1.0, head_w]])
        polys.append(head)
        pitch = rng.uniform(0.11, 0.15)
        upper = []
        lower = []
        xs = np.arange(hx, tip, pitch / 2)
        for k, x in enumerate(xs):
            w = shank_w * (1.0 if k % 2 == 0 else 1.28)
            upper.append((x, -w))
            lower.append((x, w))
        shank = np.array(upper + [(1.0, 0.0)] + lower[::-1])
        polys.append(shank)
        slot_w = head_w * rng.uniform(0.16, 0.24)
        holes.append(_rect(-1.05, -1.0 + head_len * 0.45, -slot_w, slot_w))
        lines += _thread_lines(hx + pitch, tip, shank_w, pitch, shank_w * 0.4)
        cylinder = True
    return _Part(
        class_id=class_id, cx=cx, cy=cy, size=size, angle=float(rng.uniform(0.0, 2.0 * math.pi)), colour=colour,
        polys=polys, holes=holes, lines=lines, highlights=highlights, cylinder=cylinder, sheen=float(sheen),
        seed=int(rng.integers(2**31)),
    )


def _to_pixels(pts: np.ndarray, part: _Part, ox: float, oy: float) -> np.ndarray:
    c, s = math.cos(part.angle), math.sin(part.angle)
    x = pts[:, 0] * part.size
    y = pts[:, 1] * part.size
    px = part.cx + c * x - s * y - ox
    py = part.cy + s * x + c * y - oy
    return np.round(np.stack([px, py], axis=1) * _ONE).astype(np.int32)


def _draw_part(
    canvas: np.ndarray, instance_map: np.ndarray, part: _Part, index: int, layout: _Layout
) -> tuple[int, tuple[int, int, int, int]]:
    """Draw ``part`` (with its shadow) onto ``canvas`` and mark its pixels ``index`` in ``instance_map``.

    Returns the part's full area (before occlusion and clipping) and the image region it was drawn in.
    """
    height, width = canvas.shape[:2]
    r = part.radius()
    margin = int(0.3 * part.size) + 4
    ox = math.floor(part.cx - r) - margin
    oy = math.floor(part.cy - r) - margin
    pw = ph = math.ceil(2 * r) + 2 * margin + 1
    x0, y0 = max(ox, 0), max(oy, 0)
    x1, y1 = min(ox + pw, width), min(oy + ph, height)
    mask = np.zeros((ph, pw), np.uint8)
    cv2.fillPoly(mask, [_to_pixels(p, part, ox, oy) for p in part.polys], 255, cv2.LINE_8, _SHIFT)
    if part.holes:
        cv2.fillPoly(mask, [_to_pixels(p, part, ox, oy) for p in part.holes], 0, cv2.LINE_8, _SHIFT)
    full_area = int(np.count_nonzero(mask))
    if x1 <= x0 or y1 <= y0 or full_area == 0:
        return full_area, (0, 0, 0, 0)

    # Shadow cast away from the light, soft-edged, darkening whatever is already there.
    shift = (0.06 * part.size + 1.0) * -layout.light
    blur = 0.08 * part.size + 1.0
    shadow = cv2.warpAffine(mask, np.float32([[1, 0, shift[0]], [0, 1, shift[1]]]), (pw, ph))
    shadow = cv2.GaussianBlur(shadow, (0, 0), blur)
    crop = (slice(y0 - oy, y1 - oy), slice(x0 - ox, x1 - ox))
    region = canvas[y0:y1, x0:x1]
    region *= 1.0 - (layout.shadow / 255.0) * shadow[crop][..., None].astype(np.float32)

    # Surface shading in the part's own frame.
    ys, xs = np.mgrid[oy:oy + ph, ox:ox + pw].astype(np.float32)
    dx = (xs - part.cx) / part.size
    dy = (ys - part.cy) / part.size
    shade = 0.92 - 0.22 * (dx * layout.light[0] + dy * layout.light[1])
    if part.cylinder:
        c, s = math.cos(part.angle), math.sin(part.angle)
        across = -s * dx + c * dy  # distance from the part axis, in part units
        spec_at = -0.12 * (-s * layout.light[0] + c * layout.light[1])
        shade = 0.78 + 0.55 * np.exp(-((across - spec_at) / 0.11) ** 2) - 0.9 * across**2
    if part.sheen:
        ang = np.arctan2(dy, dx)
        shade = shade + part.sheen * np.cos(2.0 * (ang - math.atan2(layout.light[1], layout.light[0])))
    grain = np.random.default_rng(part.seed).normal(0.0, 0.025, (ph, pw)).astype(np.float32)
    colour = (shade + grain)[..., None] * part.colour
    dark = (part.colour * 0.45).tolist()
    light = np.minimum(part.colour * 1.35 + 25, 255).tolist()
    thickness = 1 if part.size < 28 else 2
    if part.lines:
        cv2.polylines(colour, [_to_pixels(p, part, ox, oy) for p in part.lines], False, dark, thickness,
                      cv2.LINE_AA, _SHIFT)
    if part.highlights:
        cv2.polylines(colour, [_to_pixels(p, part, ox, oy) for p in part.highlights], False, light, 1,
                      cv2.LINE_AA, _SHIFT)
    inside = mask[crop] > 0
    region[inside] = colour[crop][inside]
    instance_map[y0:y1, x0:x1][inside] = index
    return full_area, (x0, y0, x1, y1)


def _belt_texture(rng: np.random.Generator, height: int, length: int, kind: str) -> np.ndarray:
    """A belt (or roller bed) surface ``height x length``, float32 BGR; x runs along the motion."""
    if kind == "rollers":
        base = np.array(_RAIL_PAINTS[int(rng.integers(len(_RAIL_PAINTS)))], np.float32) * rng.uniform(0.8, 1.1)
        period = rng.uniform(14.0, 30.0)
        gap = rng.uniform(0.12, 0.25)
        phase = (np.arange(length, dtype=np.float32) / period) % 1.0
        profile = np.where(phase < gap, 0.18, 0.55 + 0.6 * np.sin(math.pi * (phase - gap) / (1.0 - gap)))
        tex = np.broadcast_to(profile[None, :, None] * base, (height, length, 3)).copy()
    else:
        base = np.array(_BELTS[int(rng.integers(len(_BELTS)))], np.float32) * rng.uniform(0.85, 1.1)
        tex = np.broadcast_to(base, (height, length, 3)).copy()
        low = rng.normal(0.0, 1.0, (max(2, height // 16), max(2, length // 16))).astype(np.float32)
        tex += cv2.resize(low, (length, height), interpolation=cv2.INTER_CUBIC)[..., None] * rng.uniform(2.0, 8.0)
        tex += rng.normal(0.0, rng.uniform(1.0, 5.0), (height, 1, 1)).astype(np.float32)  # wear streaks
        if rng.random() < 0.5:  # woven fabric ribs across the belt
            period = rng.uniform(3.0, 7.0)
            tex += (np.cos(2.0 * math.pi * np.arange(length, dtype=np.float32) / period) * rng.uniform(2, 6))[
                None, :, None]
        for _ in range(int(rng.integers(0, 6))):  # scuffs and stains
            centre = (int(rng.integers(length)), int(rng.integers(height)))
            axes = (int(rng.integers(6, 40)), int(rng.integers(2, 12)))
            x0, y0 = max(centre[0] - axes[0] - 10, 0), max(centre[1] - axes[0] - 10, 0)
            x1, y1 = min(centre[0] + axes[0] + 10, length), min(centre[1] + axes[0] + 10, height)
            stain = np.zeros((y1 - y0, x1 - x0), np.float32)
            cv2.ellipse(stain, (centre[0] - x0, centre[1] - y0), axes, float(rng.uniform(-20, 20)), 0, 360, 1.0, -1)
            tex[y0:y1, x0:x1] += cv2.GaussianBlur(stain, (0, 0), 3.0)[..., None] * rng.uniform(-18.0, 18.0)
        seam_every = int(rng.uniform(0.5, 1.5) * max(length, 64))
        for x in range(int(rng.integers(seam_every)), length, seam_every):  # spliced seams
            cv2.line(tex, (x, 0), (x + int(rng.integers(-6, 7)), height), (base * 0.55).tolist(), 2, cv2.LINE_AA)
            cv2.line(tex, (x + 3, 0), (x + 3, height), np.minimum(base * 1.2, 255).tolist(), 1, cv2.LINE_AA)
    tex += rng.standard_normal((height, length, 1), dtype=np.float32) * 2.0  # fine grain
    return tex


def _make_layout(rng: np.random.Generator, width: int, height: int) -> _Layout:
    margin = rng.uniform(0.02, 0.18)
    belt_y0 = int(height * margin)
    belt_y1 = height - int(height * rng.uniform(0.02, 0.18))
    rail_h = max(4, int(height * rng.uniform(0.04, 0.08)))
    angle = rng.uniform(0.0, 2.0 * math.pi)
    light = np.array([math.cos(angle), math.sin(angle)], np.float32)

    rails = np.zeros((height, width, 3), np.float32)
    rail_rows: list[tuple[int, int]] = []
    frame = np.array(_BELTS[int(rng.integers(2))], np.float32) * rng.uniform(0.4, 0.8)
    paint = np.array(_RAIL_PAINTS[int(rng.integers(len(_RAIL_PAINTS)))], np.float32) * rng.uniform(0.8, 1.1)
    bolt_every = int(rng.integers(40, 90))
    for top in (True, False):
        edge = belt_y0 if top else belt_y1
        r0, r1 = (0, edge + rail_h // 2) if top else (edge - rail_h // 2, height)
        if r1 <= r0:
            continue
        rails[r0:r1] = frame + rng.standard_normal((r1 - r0, width, 1), dtype=np.float32) * 3.0
        rail_rows.append((r0, r1))
        a0, a1 = (max(0, edge - rail_h // 2), edge + rail_h // 2) if top else (edge - rail_h // 2, edge + rail_h // 2)
        a1 = min(a1, height)
        if a1 > a0:
            t = (np.arange(a0, a1, dtype=np.float32) - a0 + 0.5) / (edge + rail_h // 2 - (edge - rail_h // 2))
            profile = 0.55 + 0.55 * np.sin(math.pi * t) + rng.normal(0.0, 0.03, a1 - a0)
            rails[a0:a1] = profile[:, None, None].astype(np.float32) * paint
            rails[a0:a1] += rng.normal(0.0, 2.5, (a1 - a0, 1, 1)).astype(np.float32)  # brushed along the rail
            cy = (a0 + a1) // 2
            for x in range(int(rng.integers(bolt_every)), width, bolt_every):
                cv2.circle(rails, (x, cy), max(1, rail_h // 5), (paint * 0.5).tolist(), -1, cv2.LINE_AA)
                cv2.circle(rails, (x - 1, cy - 1), max(1, rail_h // 8), np.minimum(paint * 1.3, 255).tolist(), -1,
                           cv2.LINE_AA)
    ys = (np.arange(height, dtype=np.float32) / height - 0.5)[:, None]
    xs = (np.arange(width, dtype=np.float32) / width - 0.5)[None, :]
    gx, gy = rng.uniform(-0.35, 0.35, 2)
    vignette = rng.uniform(0.0, 0.6)
    lighting = 1.0 + gx * xs + gy * ys - vignette * (xs**2 + ys**2)
    lighting = (lighting * rng.uniform(0.85, 1.15)).astype(np.float32)[..., None]
    return _Layout(
        width=width, height=height, belt_y0=belt_y0, belt_y1=belt_y1, rail_h=rail_h, light=light,
        shadow=float(rng.uniform(0.25, 0.55)), lighting=lighting, rails=rails, rail_rows=rail_rows,
        parts_scale=max(width, height) / 320.0,  # parts look the same size once letterboxed to 320
    )


def _finish(canvas: np.ndarray, rng: np.random.Generator, layout: _Layout, *, motion_px: float | None) -> np.ndarray:
    """Lighting, optics and sensor: blur, noise, then to uint8."""
    canvas *= layout.lighting
    if motion_px is not None:
        k = max(1, round(motion_px))
        if k > 1:
            canvas = cv2.blur(canvas, (k, 1))
    else:
        choice = rng.random()
        if choice < 0.35:
            canvas = cv2.GaussianBlur(canvas, (0, 0), rng.uniform(0.4, 1.1))
        elif choice < 0.6:
            canvas = cv2.blur(canvas, (int(rng.integers(2, 6)), 1))
    sigma = rng.uniform(1.0, 6.0)
    canvas += rng.standard_normal(canvas.shape[:2], dtype=np.float32)[..., None] * sigma
    return np.clip(canvas, 0, 255).astype(np.uint8)


def _apply_rails(canvas: np.ndarray, instance_map: np.ndarray, layout: _Layout) -> None:
    for r0, r1 in layout.rail_rows:
        canvas[r0:r1] = layout.rails[r0:r1]
        instance_map[r0:r1] = -1
    # soft shadow strip under the rail lips
    for edge, sign in ((layout.belt_y0 + layout.rail_h // 2, 1), (layout.belt_y1 - layout.rail_h // 2, -1)):
        for k in range(4):
            y = edge + sign * k if sign > 0 else edge - 1 - k
            if 0 <= y < layout.height:
                canvas[y] *= 0.6 + 0.1 * k


def _labels(
    parts: list[_Part], drawn: list[tuple[int, tuple[int, int, int, int]]], instance_map: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
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


def _draw_scene(parts: list[_Part], background: np.ndarray, layout: _Layout) -> tuple[np.ndarray, np.ndarray, list]:
    canvas = background.copy()
    instance_map = np.full(canvas.shape[:2], -1, np.int16)
    drawn = [_draw_part(canvas, instance_map, part, i, layout) for i, part in enumerate(parts)]
    _apply_rails(canvas, instance_map, layout)
    return canvas, instance_map, drawn


def _part_size(rng: np.random.Generator, class_id: int, scale: float) -> float:
    elongated = CLASSES[class_id] in ("bolt", "screw")
    return float(rng.uniform(18.0, 46.0) if elongated else rng.uniform(10.0, 30.0)) * scale


def _place(rng: np.random.Generator, parts: list[_Part], r: float, xr: tuple[float, float],
           yr: tuple[float, float], overlap: float) -> tuple[float, float] | None:
    for _ in range(12):
        x = float(rng.uniform(*xr))
        y = float(rng.uniform(*yr))
        if all(math.hypot(x - p.cx, y - p.cy) > overlap * (r + p.radius()) for p in parts):
            return x, y
    return None


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
    layout = _make_layout(rng, w, h)
    background = _belt_texture(rng, h, w, "rollers" if rng.random() < 0.2 else "belt")
    parts: list[_Part] = []
    overlap = rng.uniform(0.55, 0.95)
    for _ in range(int(rng.integers(2, 13))):
        class_id = int(rng.integers(len(CLASSES)))
        size = _part_size(rng, class_id, layout.parts_scale)
        y_pad = 0.3 * size
        spot = _place(rng, parts, size, (-0.6 * size, w + 0.6 * size),
                      (layout.belt_y0 + y_pad, layout.belt_y1 - y_pad), overlap)
        if spot is not None:
            parts.append(_make_part(rng, class_id, spot[0], spot[1], size))
    canvas, instance_map, drawn = _draw_scene(parts, background, layout)
    image = _finish(canvas, rng, layout, motion_px=None)
    xyxy, class_id = _labels(parts, drawn, instance_map)
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


def _yolo_lines(xyxy: np.ndarray, class_id: np.ndarray, width: int, height: int) -> str:
    lines = []
    for (x1, y1, x2, y2), c in zip(xyxy.tolist(), class_id.tolist(), strict=True):
        lines.append(
            f"{c} {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} {(x2 - x1) / width:.6f} "
            f"{(y2 - y1) / height:.6f}"
        )
    return "\n".join(lines) + ("\n" if lines else "")


SPLIT_SEED_OFFSETS = {"train": 0, "val": 1, "calib": 2}


def write_yolo_dataset(
    out_dir: str | Path,
    *,
    n_train: int,
    n_val: int,
    n_calib: int,
    seed: int = 0,
    width: int = 320,
    height: int = 320,
    jpeg_quality: int = 92,
) -> Path:
    """Write an Ultralytics YOLO dataset of conveyor scenes to ``out_dir`` and return ``out_dir/data.yaml``.

    Layout: ``images/{train,val,calib}/*.jpg``, ``labels/{split}/*.txt`` (``class cx cy w h``, normalized)
    and ``data.yaml``. Each split draws from its own seed sequence (``SeedSequence([seed, split])``), so
    images never repeat across splits. The dataset is built in a temporary folder next to ``out_dir`` and
    moved into place at the end; an existing ``out_dir`` is replaced only then.
    """
    counts = {"train": n_train, "val": n_val, "calib": n_calib}
    for split, n in counts.items():
        if n < 0:
            raise ValueError(f"n_{split} must be >= 0, got {n}")
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        start = time.monotonic()
        for split, n in counts.items():
            img_dir = tmp / "images" / split
            lbl_dir = tmp / "labels" / split
            img_dir.mkdir(parents=True)
            lbl_dir.mkdir(parents=True)
            rng = np.random.default_rng(np.random.SeedSequence([seed, SPLIT_SEED_OFFSETS[split]]))
            for i in range(n):
                image, xyxy, class_id = render_scene(rng, width=width, height=height)
                stem = f"{split}_{i:06d}"
                if not cv2.imwrite(str(img_dir / f"{stem}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]):
                    raise OSError(f"could not write {img_dir / stem}.jpg")
                (lbl_dir / f"{stem}.txt").write_text(_yolo_lines(xyxy, class_id, width, height), encoding="utf-8")
        names = "\n".join(f"  {i}: {name}" for i, name in enumerate(CLASSES))
        (tmp / "data.yaml").write_text(
            f"# conveyor scenes made by ovq.data.synth (seed {seed}, {width}x{height})\n"
            f"path: {out_dir.resolve()}\ntrain: images/train\nval: images/val\ncalib: images/calib\n"
            f"names:\n{names}\n",
            encoding="utf-8",
        )
        if out_dir.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            os.replace(out_dir, trash / "old")
            os.replace(tmp, out_dir)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
        logger.info("wrote %d images to %s in %.1f s", sum(counts.values()), out_dir, time.monotonic() - start)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir / "data.yaml"


class ConveyorStream:
    """An endless live camera over a conveyor: parts enter on the left and ride to the right.

    ``read()`` returns the next BGR frame, or ``None`` once closed. With ``realtime=True`` frames are paced
    to ``fps`` (``time.monotonic``); a consumer that falls behind gets the current frame, not a backlog.
    With ``realtime=False`` frames come as fast as they can be drawn.
    """

    def __init__(
        self,
        *,
        width: int = 640,
        height: int = 480,
        fps: float = 30.0,
        seed: int = 0,
        realtime: bool = True,
        speed: float | None = None,
        spawn_rate: float = 1.2,
    ) -> None:
        if width < 32 or height < 32:
            raise ValueError(f"frame must be at least 32x32 pixels, got {width}x{height}")
        if fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.width = width
        self.height = height
        self.fps = float(fps)
        self.realtime = realtime
        self._rng = np.random.default_rng(seed)
        self._layout = _make_layout(self._rng, width, height)
        self._layout.lighting = np.ones_like(self._layout.lighting) + 0.5 * (self._layout.lighting - 1.0)
        belt_h = height
        self._period = width * 2
        self._belt = _belt_texture(self._rng, belt_h, self._period, "belt")
        self.speed = float(speed) if speed is not None else width / 5.0  # pixels per second
        self._step = self.speed / self.fps  # pixels per frame
        self._spawn_per_frame = spawn_rate * self.speed / (self._layout.parts_scale * 60.0) / self.fps
        self._offset = 0.0
        self._parts: list[_Part] = []
        self._frame_index = 0
        self._next_time: float | None = None
        self._closed = False
        self._last_truth = (np.zeros((0, 4), np.float32), np.zeros(0, np.int64))
        # start with a belt already carrying parts
        for _ in range(int(min(width / max(self._step, 1e-6), 10_000))):
            self._advance()

    def _advance(self) -> None:
        self._offset = (self._offset + self._step) % self._period
        for part in self._parts:
            part.cx += self._step
        self._parts = [p for p in self._parts if p.cx - p.radius() < self.width]
        if self._rng.random() < self._spawn_per_frame:
            class_id = int(self._rng.integers(len(CLASSES)))
            size = _part_size(self._rng, class_id, self._layout.parts_scale)
            pad = 0.3 * size
            spot = _place(self._rng, self._parts, size, (-size * 1.1, -size * 1.05),
                          (self._layout.belt_y0 + pad, self._layout.belt_y1 - pad), 0.9)
            if spot is not None:
                self._parts.append(_make_part(self._rng, class_id, spot[0], spot[1], size))

    def read(self) -> np.ndarray | None:
        """The next frame (BGR uint8), or ``None`` after :meth:`close`."""
        if self._closed:
            return None
        if self.realtime:
            now = time.monotonic()
            if self._next_time is None or now - self._next_time > 1.0 / self.fps:
                self._next_time = now  # first frame, or the consumer fell behind: resync, no backlog
            elif self._next_time > now:
                time.sleep(self._next_time - now)
            self._next_time += 1.0 / self.fps
        if self._frame_index > 0:
            self._advance()
        self._frame_index += 1
        cols = (np.arange(self.width) - round(self._offset)) % self._period
        background = self._belt[:, cols]
        canvas, instance_map, drawn = _draw_scene(self._parts, background, self._layout)
        frame = _finish(canvas, self._rng, self._layout, motion_px=self._step * 0.5)
        self._last_truth = _labels(self._parts, drawn, instance_map)
        return frame

    def ground_truth(self) -> tuple[np.ndarray, np.ndarray]:
        """``(xyxy float32 (N, 4), class_id int64 (N,))`` of the last frame returned by :meth:`read`."""
        return self._last_truth

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
