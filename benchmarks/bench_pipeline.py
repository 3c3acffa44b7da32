"""End-to-end pipeline FPS on a video file vs. ``ovq bench`` throughput of the same model (target: >= 90 %).

For each model: ``ovq.evaluation.speed.benchmark`` (an ``AsyncInferQueue`` kept full with one pre-made input: the
device's ceiling) and ``ovq.Pipeline`` on ``one-by-one-person-detection.mp4`` with no sink and no display
(decode, resize, async inference, decoding and NMS, in order, every frame) - same device, same performance
hint, same inference precision, one after the other, ``rounds`` times with the order alternated. The
pipeline's FPS is the stream's results per second from its first result to its last.

Both compete for the same cores: on a 2-core machine video decoding and post-processing take CPU time that
inference would otherwise get, so the ratio says how much of the device the pipeline keeps busy. The machine
is shared; the 1-minute load average before each run is recorded.

    python benchmarks/bench_pipeline.py [--models yolox_nano fastestdet] [--device CPU] [--precision f32]
                                        [--time 10] [--rounds 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

ASSETS = Path(__file__).resolve().parents[1].parent / "shared" / "assets"
MODELS = {
    "yolox_nano": "models/yolox_nano/yolox_nano.onnx",
    "fastestdet": "models/fastestdet/FastestDet.onnx",
    "person-0013": "models/person-detection-retail-0013-fp32/person-detection-retail-0013.xml",
}
VIDEO = "videos/one-by-one-person-detection.mp4"
TARGET = 0.90


@dataclass
class PipelineBench:
    model: str
    device: str
    precision_used: str
    bench_fps: list[float] = field(default_factory=list)
    pipeline_fps: list[float] = field(default_factory=list)
    pipeline_latency_p50_ms: list[float] = field(default_factory=list)
    load_before: list[float] = field(default_factory=list)
    frames: int = 0
    nireq: int = 0

    @property
    def ratio(self) -> float:
        return statistics.median(self.pipeline_fps) / statistics.median(self.bench_fps)

    def line(self) -> str:
        ok = "ok" if self.ratio >= TARGET else "BELOW TARGET"
        return (
            f"{self.model:12s} {self.device} {self.precision_used:5s}"
            f" ovq bench {statistics.median(self.bench_fps):7.1f} fps"
            f" | pipeline {statistics.median(self.pipeline_fps):7.1f} fps ({self.frames} frames, {self.nireq} requests,"
            f" latency p50 {statistics.median(self.pipeline_latency_p50_ms):.0f} ms)"
            f" | ratio {self.ratio:.2f} {ok}"
        )


def main(
    models: list[str] | None = None, *, device: str = "CPU", precision: str | None = None, seconds: float = 10.0,
    rounds: int = 2, video: Path | None = None,
) -> list[PipelineBench]:
    """Run the comparison; returns one :class:`PipelineBench` per model."""
    from ovq.evaluation.speed import benchmark
    from ovq.model.detector import Detector
    from ovq.streaming.pipeline import Pipeline

    if not ASSETS.exists():
        raise SystemExit(f"shared assets not found at {ASSETS}")
    video = video or ASSETS / VIDEO
    results = []
    for name in models or list(MODELS):
        path = ASSETS / MODELS[name]
        detector = Detector(path, device=device, precision=precision, hint="throughput")
        row = PipelineBench(model=name, device=device, precision_used=detector.inference_precision)
        for r in range(rounds):
            order = ("bench", "pipeline") if r % 2 == 0 else ("pipeline", "bench")
            for what in order:
                row.load_before.append(os.getloadavg()[0])
                if what == "bench":
                    res = benchmark(path, device=device, precision=precision, hint="throughput", seconds=seconds)
                    row.bench_fps.append(res.throughput_fps)
                else:
                    summary = Pipeline(detector, [str(video)], stats_interval=0).run()
                    stats = summary.streams["s0"]
                    row.pipeline_fps.append(stats.fps)
                    row.pipeline_latency_p50_ms.append(stats.latency_p50_ms or 0.0)
                    row.frames, row.nireq = stats.frames, summary.nireq
        print(row.line(), flush=True)
        results.append(row)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=None)
    parser.add_argument("--device", default="CPU")
    parser.add_argument("--precision", choices=("default", "f32", "bf16"), default=None)
    parser.add_argument("--time", type=float, default=10.0, help="seconds per ovq bench run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", help="write the results as JSON")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rows = main(args.models, device=args.device, precision=args.precision, seconds=args.time, rounds=args.rounds)
    if args.json:
        Path(args.json).write_text(json.dumps([{**asdict(r), "ratio": r.ratio} for r in rows], indent=2) + "\n")
    sys.exit(0)
