"""The set the parts lie in: belt or roller-bed surface, side rails and machine frame, the lighting, and the
camera that turns a drawn scene into an 8-bit frame (blur, sensor noise).

A :class:`Layout` is fixed for a camera: a still image makes a new one, a live stream keeps one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

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
class Layout:
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


def belt_texture(rng: np.random.Generator, height: int, length: int, kind: str) -> np.ndarray:
    """A belt (or roller bed) surface ``height x length``, float32 BGR; x runs along the motion."""
    tex = _roller_bed(rng, height, length) if kind == "rollers" else _belt_surface(rng, height, length)
    tex += rng.standard_normal((height, length, 1), dtype=np.float32) * 2.0  # fine grain
    return tex


def _roller_bed(rng: np.random.Generator, height: int, length: int) -> np.ndarray:
    base = np.array(_RAIL_PAINTS[int(rng.integers(len(_RAIL_PAINTS)))], np.float32) * rng.uniform(0.8, 1.1)
    period = rng.uniform(14.0, 30.0)
    gap = rng.uniform(0.12, 0.25)
    phase = (np.arange(length, dtype=np.float32) / period) % 1.0
    profile = np.where(phase < gap, 0.18, 0.55 + 0.6 * np.sin(math.pi * (phase - gap) / (1.0 - gap)))
    return np.broadcast_to(profile[None, :, None] * base, (height, length, 3)).copy()


def _belt_surface(rng: np.random.Generator, height: int, length: int) -> np.ndarray:
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
    return tex


def make_layout(rng: np.random.Generator, width: int, height: int) -> Layout:
    """A camera's view of a belt running along x: belt edges, rails, light direction, lighting field."""
    margin = rng.uniform(0.02, 0.18)
    belt_y0 = int(height * margin)
    belt_y1 = height - int(height * rng.uniform(0.02, 0.18))
    rail_h = max(4, int(height * rng.uniform(0.04, 0.08)))
    angle = rng.uniform(0.0, 2.0 * math.pi)
    light = np.array([math.cos(angle), math.sin(angle)], np.float32)
    rails, rail_rows = _rails(rng, width, height, belt_y0, belt_y1, rail_h)
    lighting = _lighting(rng, width, height)
    return Layout(
        width=width, height=height, belt_y0=belt_y0, belt_y1=belt_y1, rail_h=rail_h, light=light,
        shadow=float(rng.uniform(0.25, 0.55)), lighting=lighting, rails=rails, rail_rows=rail_rows,
        parts_scale=max(width, height) / 320.0,  # parts look the same size once letterboxed to 320
    )


def _rails(
    rng: np.random.Generator, width: int, height: int, belt_y0: int, belt_y1: int, rail_h: int
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The machine frame beyond each belt edge and the bolted rail over it; returns the image and its rows."""
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
    return rails, rail_rows


def _lighting(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A multiplicative ``(H, W, 1)`` field: a gradient across the scene, a vignette, an overall level."""
    ys = (np.arange(height, dtype=np.float32) / height - 0.5)[:, None]
    xs = (np.arange(width, dtype=np.float32) / width - 0.5)[None, :]
    gx, gy = rng.uniform(-0.35, 0.35, 2)
    vignette = rng.uniform(0.0, 0.6)
    lighting = 1.0 + gx * xs + gy * ys - vignette * (xs**2 + ys**2)
    return (lighting * rng.uniform(0.85, 1.15)).astype(np.float32)[..., None]


def apply_rails(canvas: np.ndarray, instance_map: np.ndarray, layout: Layout) -> None:
    """Draw the rails and frame over the scene (they hide what lies under them) and their shadow on the belt."""
    for r0, r1 in layout.rail_rows:
        canvas[r0:r1] = layout.rails[r0:r1]
        instance_map[r0:r1] = -1
    # soft shadow strip under the rail lips
    for edge, sign in ((layout.belt_y0 + layout.rail_h // 2, 1), (layout.belt_y1 - layout.rail_h // 2, -1)):
        for k in range(4):
            y = edge + sign * k if sign > 0 else edge - 1 - k
            if 0 <= y < layout.height:
                canvas[y] *= 0.6 + 0.1 * k


def expose(canvas: np.ndarray, rng: np.random.Generator, layout: Layout, *, motion_px: float | None) -> np.ndarray:
    """Lighting, optics and sensor: blur, noise, then to uint8.

    ``motion_px`` is the belt's travel during the exposure (a live stream); ``None`` draws a random focus or
    motion blur, as a still taken by a different camera would have.
    """
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
