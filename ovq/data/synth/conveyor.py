"""A live camera over a conveyor: an endless stream of frames whose parts ride across with the belt."""

from __future__ import annotations

import time
from typing import Self

import numpy as np

from ovq.data.synth.belt import belt_texture, expose, make_layout
from ovq.data.synth.parts import CLASSES, Part, make_part, part_size
from ovq.data.synth.scene import draw_scene, place, visible_boxes


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
        self._layout = make_layout(self._rng, width, height)
        self._layout.lighting = np.ones_like(self._layout.lighting) + 0.5 * (self._layout.lighting - 1.0)
        belt_h = height
        self._period = width * 2
        self._belt = belt_texture(self._rng, belt_h, self._period, "belt")
        self.speed = float(speed) if speed is not None else width / 5.0  # pixels per second
        self._step = self.speed / self.fps  # pixels per frame
        self._spawn_per_frame = spawn_rate * self.speed / (self._layout.parts_scale * 60.0) / self.fps
        self._offset = 0.0
        self._parts: list[Part] = []
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
            size = part_size(self._rng, class_id, self._layout.parts_scale)
            pad = 0.3 * size
            spot = place(self._rng, self._parts, size, (-size * 1.1, -size * 1.05),
                          (self._layout.belt_y0 + pad, self._layout.belt_y1 - pad), 0.9)
            if spot is not None:
                self._parts.append(make_part(self._rng, class_id, spot[0], spot[1], size))

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
        canvas, instance_map, drawn = draw_scene(self._parts, background, self._layout)
        frame = expose(canvas, self._rng, self._layout, motion_px=self._step * 0.5)
        self._last_truth = visible_boxes(self._parts, drawn, instance_map)
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
