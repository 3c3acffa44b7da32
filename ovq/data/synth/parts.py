"""The parts on the belt: their classes, how each shape is made from the random generator, and how one part is
drawn (shadow, turned-metal shading, edges) into a scene.

A part's outline is built once, in *part units* (centre 0, radius or half-length 1), and placed in the image
by :func:`to_pixels` with its size, angle and position. Every random number a part needs is drawn in
:func:`make_part`, in a fixed order: a seed gives the same parts on every machine.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

CLASSES: tuple[str, ...] = ("nut", "bolt", "washer", "gear", "screw")

SHIFT = 4  # sub-pixel bits for cv2 polygon drawing
_ONE = 1 << SHIFT

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


@dataclass
class Part:
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
class _Shape:
    """What a shape builder makes: the outline and details of one part, in part units."""

    polys: list[np.ndarray] = field(default_factory=list)
    holes: list[np.ndarray] = field(default_factory=list)
    lines: list[np.ndarray] = field(default_factory=list)
    highlights: list[np.ndarray] = field(default_factory=list)
    cylinder: bool = False
    sheen: float = 0.0


def _circle(r: float, n: int = 28, phase: float = 0.0) -> np.ndarray:
    t = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False) + phase
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def _rect(x0: float, x1: float, y0: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


def _closed(outline: np.ndarray) -> np.ndarray:
    return np.vstack([outline, outline[:1]])


def _thread_lines(x0: float, x1: float, half_w: float, pitch: float, slant: float) -> list[np.ndarray]:
    xs = np.arange(x0, x1 - slant, pitch)
    return [np.array([[x, -half_w], [x + slant, half_w]]) for x in xs]


# --- one builder per class; each draws its random numbers in the order written ---------------------------------


def _nut(rng: np.random.Generator) -> _Shape:
    hexagon = _circle(1.0, 6, phase=math.pi / 6)
    hole_r = rng.uniform(0.42, 0.55)
    shape = _Shape(polys=[hexagon], holes=[_circle(hole_r)], lines=[_closed(hexagon), _circle(hole_r + 0.07)])
    shape.highlights.append(_circle(rng.uniform(0.82, 0.9), 36))
    shape.sheen = rng.uniform(0.05, 0.18)
    return shape


def _washer(rng: np.random.Generator) -> _Shape:
    hole_r = rng.uniform(0.45, 0.62)
    shape = _Shape(polys=[_circle(1.0, 40)], holes=[_circle(hole_r, 32)], lines=[_circle(hole_r + 0.04, 32)])
    shape.highlights.append(_circle(rng.uniform(0.7, 0.92), 40))
    shape.sheen = rng.uniform(0.15, 0.35)
    return shape


def _gear(rng: np.random.Generator) -> _Shape:
    teeth = int(rng.integers(8, 17))
    root = rng.uniform(0.74, 0.84)
    step = 2.0 * math.pi / teeth
    pts = []
    for k in range(teeth):
        a = k * step
        for frac, rad in ((0.0, root), (0.18, 1.0), (0.5, 1.0), (0.68, root)):
            pts.append((rad * math.cos(a + frac * step), rad * math.sin(a + frac * step)))
    outline = np.array(pts)
    hole_r = rng.uniform(0.18, 0.3)
    shape = _Shape(polys=[outline], holes=[_circle(hole_r, 20)])
    if rng.random() < 0.5:  # lightening holes in the web
        n_holes = int(rng.integers(3, 7))
        ring = rng.uniform(0.48, 0.56)
        small = min(0.14, ring * math.sin(math.pi / n_holes) * 0.6)
        for k in range(n_holes):
            a = 2.0 * math.pi * k / n_holes
            shape.holes.append(_circle(small, 16) + [ring * math.cos(a), ring * math.sin(a)])
    shape.lines += [_closed(outline), _circle(hole_r + 0.12, 24)]
    shape.highlights.append(_circle(root - 0.08, 40))
    shape.sheen = rng.uniform(0.05, 0.2)
    return shape


def _bolt(rng: np.random.Generator) -> _Shape:
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
    shape = _Shape(polys=[head, shank], cylinder=True)
    face = head_w * rng.uniform(0.35, 0.55)
    shape.lines += [np.array([[-1.0, -face], [hx, -face]]), np.array([[-1.0, face], [hx, face]])]
    thread_start = rng.uniform(hx + 0.05, 0.4)
    shape.lines += _thread_lines(thread_start, 1.0, shank_w * 0.92, rng.uniform(0.07, 0.1), shank_w * 0.3)
    shape.lines.append(_closed(head))
    return shape


def _screw(rng: np.random.Generator) -> _Shape:
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
    pitch = rng.uniform(0.11, 0.15)
    upper = []
    lower = []
    for k, x in enumerate(np.arange(hx, tip, pitch / 2)):  # the thread's crests and roots along the shank
        w = shank_w * (1.0 if k % 2 == 0 else 1.28)
        upper.append((x, -w))
        lower.append((x, w))
    shank = np.array(upper + [(1.0, 0.0)] + lower[::-1])
    shape = _Shape(polys=[head, shank], cylinder=True)
    slot_w = head_w * rng.uniform(0.16, 0.24)
    shape.holes.append(_rect(-1.05, -1.0 + head_len * 0.45, -slot_w, slot_w))
    shape.lines += _thread_lines(hx + pitch, tip, shank_w, pitch, shank_w * 0.4)
    return shape


# Every class in CLASSES, by name, with the function that shapes it.
SHAPES: dict[str, Callable[[np.random.Generator], _Shape]] = {
    "nut": _nut, "bolt": _bolt, "washer": _washer, "gear": _gear, "screw": _screw,
}


def make_part(rng: np.random.Generator, class_id: int, cx: float, cy: float, size: float) -> Part:
    """A new part of class ``class_id`` centred at ``(cx, cy)``: finish, shape, angle and grain from ``rng``."""
    finish = np.array(_FINISHES[int(rng.integers(len(_FINISHES)))], dtype=np.float32)
    colour = np.clip(finish * rng.uniform(0.85, 1.12) + rng.normal(0.0, 6.0, 3), 20, 250).astype(np.float32)
    shape = SHAPES[CLASSES[class_id]](rng)
    angle = float(rng.uniform(0.0, 2.0 * math.pi))
    return Part(
        class_id=class_id, cx=cx, cy=cy, size=size, angle=angle, colour=colour, polys=shape.polys,
        holes=shape.holes, lines=shape.lines, highlights=shape.highlights, cylinder=shape.cylinder,
        sheen=float(shape.sheen), seed=int(rng.integers(2**31)),
    )


def part_size(rng: np.random.Generator, class_id: int, scale: float) -> float:
    """A random size (pixels) for a part of ``class_id``: bolts and screws are longer than they are wide."""
    elongated = CLASSES[class_id] in ("bolt", "screw")
    return float(rng.uniform(18.0, 46.0) if elongated else rng.uniform(10.0, 30.0)) * scale


def to_pixels(pts: np.ndarray, part: Part, ox: float, oy: float) -> np.ndarray:
    """Points in part units to fixed-point pixels (``SHIFT`` fraction bits) relative to ``(ox, oy)``."""
    c, s = math.cos(part.angle), math.sin(part.angle)
    x = pts[:, 0] * part.size
    y = pts[:, 1] * part.size
    px = part.cx + c * x - s * y - ox
    py = part.cy + s * x + c * y - oy
    return np.round(np.stack([px, py], axis=1) * _ONE).astype(np.int32)


def draw_part(
    canvas: np.ndarray, instance_map: np.ndarray, part: Part, index: int, *, light: np.ndarray, shadow: float
) -> tuple[int, tuple[int, int, int, int]]:
    """Draw ``part`` (with its shadow) onto ``canvas`` and mark its pixels ``index`` in ``instance_map``.

    ``light`` is the unit vector the light points along in the image plane, ``shadow`` how dark a shadow is
    (0..255). Returns the part's full area (before occlusion and clipping) and the image region it was drawn in.
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
    cv2.fillPoly(mask, [to_pixels(p, part, ox, oy) for p in part.polys], 255, cv2.LINE_8, SHIFT)
    if part.holes:
        cv2.fillPoly(mask, [to_pixels(p, part, ox, oy) for p in part.holes], 0, cv2.LINE_8, SHIFT)
    full_area = int(np.count_nonzero(mask))
    if x1 <= x0 or y1 <= y0 or full_area == 0:
        return full_area, (0, 0, 0, 0)

    # Shadow cast away from the light, soft-edged, darkening whatever is already there.
    shift = (0.06 * part.size + 1.0) * -light
    blur = 0.08 * part.size + 1.0
    cast = cv2.warpAffine(mask, np.float32([[1, 0, shift[0]], [0, 1, shift[1]]]), (pw, ph))
    cast = cv2.GaussianBlur(cast, (0, 0), blur)
    crop = (slice(y0 - oy, y1 - oy), slice(x0 - ox, x1 - ox))
    region = canvas[y0:y1, x0:x1]
    region *= 1.0 - (shadow / 255.0) * cast[crop][..., None].astype(np.float32)

    colour = _surface(part, ox, oy, pw, ph, light)
    inside = mask[crop] > 0
    region[inside] = colour[crop][inside]
    instance_map[y0:y1, x0:x1][inside] = index
    return full_area, (x0, y0, x1, y1)


def _surface(part: Part, ox: int, oy: int, pw: int, ph: int, light: np.ndarray) -> np.ndarray:
    """The part's lit surface over the ``pw x ph`` patch at ``(ox, oy)``, float32 BGR, with its details drawn."""
    ys, xs = np.mgrid[oy:oy + ph, ox:ox + pw].astype(np.float32)
    dx = (xs - part.cx) / part.size
    dy = (ys - part.cy) / part.size
    shade = 0.92 - 0.22 * (dx * light[0] + dy * light[1])
    if part.cylinder:
        c, s = math.cos(part.angle), math.sin(part.angle)
        across = -s * dx + c * dy  # distance from the part axis, in part units
        spec_at = -0.12 * (-s * light[0] + c * light[1])
        shade = 0.78 + 0.55 * np.exp(-((across - spec_at) / 0.11) ** 2) - 0.9 * across**2
    if part.sheen:
        ang = np.arctan2(dy, dx)
        shade = shade + part.sheen * np.cos(2.0 * (ang - math.atan2(light[1], light[0])))
    grain = np.random.default_rng(part.seed).normal(0.0, 0.025, (ph, pw)).astype(np.float32)
    colour = (shade + grain)[..., None] * part.colour
    dark = (part.colour * 0.45).tolist()
    bright = np.minimum(part.colour * 1.35 + 25, 255).tolist()
    thickness = 1 if part.size < 28 else 2
    if part.lines:
        cv2.polylines(colour, [to_pixels(p, part, ox, oy) for p in part.lines], False, dark, thickness,
                      cv2.LINE_AA, SHIFT)
    if part.highlights:
        cv2.polylines(colour, [to_pixels(p, part, ox, oy) for p in part.highlights], False, bright, 1,
                      cv2.LINE_AA, SHIFT)
    return colour
