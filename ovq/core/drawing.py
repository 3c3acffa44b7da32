"""Drawing detections on frames."""

from __future__ import annotations

import colorsys

import cv2
import numpy as np

from ovq.core.detections import Detections


def class_color(class_id: int) -> tuple[int, int, int]:
    """A stable, distinct BGR colour per class."""
    hue = (class_id * 0.61803398875) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(b * 255), int(g * 255), int(r * 255)


def annotate(
    frame: np.ndarray,
    dets: Detections,
    labels: list[str] | None = None,
    *,
    overlay: str | None = None,
    thickness: int | None = None,
) -> np.ndarray:
    """A copy of ``frame`` with boxes, labels, confidences, track IDs and an optional text overlay."""
    out = frame.copy()
    h, w = out.shape[:2]
    t = thickness or max(1, round(min(h, w) / 400))
    font_scale = max(0.4, min(h, w) / 1200)
    # beyond the frame a box is drawn the same; clipped, any coordinate fits OpenCV's ints (a plug-in decoder's box
    # at 1e30 or inf raised OverflowError, NaN ValueError, ending the video sink's or the live view's thread)
    lim = 4 * max(h, w)
    boxes = np.clip(np.nan_to_num(np.asarray(dets.xyxy, dtype=np.float64), nan=0.0), -lim, lim).round().astype(int)
    for i in range(len(dets)):
        x1, y1, x2, y2 = (int(v) for v in boxes[i])
        cid = int(dets.class_id[i])
        color = class_color(cid)
        cv2.rectangle(out, (x1, y1), (x2, y2), color, t, cv2.LINE_AA)
        name = labels[cid] if labels and 0 <= cid < len(labels) else str(cid)
        text = f"{name} {dets.confidence[i]:.2f}"
        if dets.tracker_id is not None and dets.tracker_id[i] >= 0:
            text = f"#{int(dets.tracker_id[i])} " + text
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        ty = y1 - 2 if y1 - th - base - 2 >= 0 else y1 + th + base + 2
        cv2.rectangle(out, (x1, ty - th - base), (x1 + tw + 2, ty + 1), color, -1)
        cv2.putText(out, text, (x1 + 1, ty - base + 1), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), 1, cv2.LINE_AA)
    if overlay:
        (tw, th), base = cv2.getTextSize(overlay, cv2.FONT_HERSHEY_SIMPLEX, font_scale * 1.2, 2)
        cv2.rectangle(out, (4, 4), (12 + tw, 12 + th + base), (0, 0, 0), -1)
        cv2.putText(out, overlay, (8, 8 + th), cv2.FONT_HERSHEY_SIMPLEX, font_scale * 1.2, (255, 255, 255), 2, cv2.LINE_AA)
    return out
