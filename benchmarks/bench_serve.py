"""What the live view costs: pipeline FPS with ``--serve`` and one MJPEG viewer vs without (target: <= 5 % slower).

One compiled model, ``ovq.Pipeline`` on ``one-by-one-person-detection.mp4`` (every frame, as fast as it goes), run
``rounds`` times in each configuration, interleaved (off, on, on, off, ...) so drifting load from other work hits
both alike. "on" is a :class:`~ovq.streaming.web.LiveServer` sink on 127.0.0.1 and one viewer (a process of its
own, like a browser) reading ``/stream/s0.mjpg`` to the end (JPEG encoding at ``--serve-fps`` happens only because it watches). The
pipeline's FPS is the stream's results per second from its first result to its last. The 1-minute load average
before each run is recorded: the machine may be shared.

    python benchmarks/bench_serve.py [--model yolox_nano] [--device CPU] [--precision f32] [--serve-fps 10]
                                     [--rounds 3] [--frames 600] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
from pathlib import Path

ASSETS = Path(__file__).resolve().parents[1].parent / "shared" / "assets"
MODELS = {
    "yolox_nano": "models/yolox_nano/yolox_nano.onnx",
    "fastestdet": "models/fastestdet/FastestDet.onnx",
}
VIDEO = "videos/one-by-one-person-detection.mp4"
TARGET = 0.05


VIEWER = """
import http.client, sys, time
while True:  # the stream exists once the pipeline started
    conn = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=30)
    conn.request("GET", "/stream/s0.mjpg")
    response = conn.getresponse()
    if response.status == 200:
        break
    conn.close()
    time.sleep(0.05)
parts = 0
try:
    while line := response.readline():
        if line.lower().startswith(b"content-length:"):
            size = int(line.split(b":")[1])
            response.readline()
            response.read(size)
            parts += 1
except (OSError, http.client.HTTPException):
    pass
print(parts)
"""


def run_once(detector, video: Path, frames: int, serve_fps: float | None) -> tuple[float, int]:
    from ovq.streaming.pipeline import Pipeline
    from ovq.streaming.web import LiveServer

    sinks, viewer = [], None
    if serve_fps is not None:  # the viewer is a process of its own, as a browser would be
        server = LiveServer("127.0.0.1", 0, fps=serve_fps)
        sinks.append(server)
        viewer = subprocess.Popen([sys.executable, "-c", VIEWER, str(server.port)], stdout=subprocess.PIPE, text=True)
    summary = Pipeline(detector, [str(video)], sinks=sinks, max_frames=frames, stats_interval=0).run()
    parts = int(viewer.communicate(timeout=30)[0] or 0) if viewer is not None else 0
    return summary.streams["s0"].fps, parts


def main(model: str = "yolox_nano", device: str = "CPU", precision: str | None = None, serve_fps: float = 10.0,
         rounds: int = 3, frames: int = 600) -> dict:
    from ovq.model.detector import Detector
    from ovq.runtime.cpu import cpu_model, int8_kernels

    path = ASSETS / MODELS[model]
    if not path.exists():
        raise SystemExit(f"{path}: the shared assets are not here")
    detector = Detector(path, device=device, precision=precision, hint="throughput")
    off: list[float] = []
    on: list[float] = []
    parts: list[int] = []
    loads: list[float] = []
    for r in range(rounds):
        order = (None, serve_fps) if r % 2 == 0 else (serve_fps, None)
        for fps in order:
            loads.append(os.getloadavg()[0])
            value, received = run_once(detector, ASSETS / VIDEO, frames, fps)
            (off if fps is None else on).append(value)
            if fps is not None:
                parts.append(received)
            print(f"round {r + 1}: {'serve + 1 viewer' if fps else 'no server':>16}: {value:6.1f} fps"
                  + (f" ({received} MJPEG parts received)" if fps else ""), file=sys.stderr)
    slower = 1.0 - statistics.median(on) / statistics.median(off)
    return {
        "cpu": cpu_model(), "int8_kernels": int8_kernels(), "model": model, "device": device, "inference_precision": detector.inference_precision,
        "frames": frames, "serve_fps": serve_fps, "fps_without": off, "fps_with_viewer": on, "mjpeg_parts": parts,
        "load_1min_before": loads, "slower": round(slower, 4), "target": TARGET, "met": slower <= TARGET,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="yolox_nano")
    parser.add_argument("--device", default="CPU")
    parser.add_argument("--precision", default=None)
    parser.add_argument("--serve-fps", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--json", help="write the result as JSON")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    result = main(args.model, args.device, args.precision, args.serve_fps, args.rounds, args.frames)
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
