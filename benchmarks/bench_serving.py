"""Local vs served inference: throughput, latency and bytes per frame, on loopback.

For each model, ``ovq serve`` runs in a subprocess on 127.0.0.1 and ``ovq.evaluation.speed.benchmark_interleaved``
times three configurations taking turns (so a busy spell of the shared machine hits all three): the model
compiled locally, the same model at ``grpc://127.0.0.1:Q/v2/models/NAME`` and at ``http://127.0.0.1:P/...``
(REST with binary tensors). Every configuration sends the same letterboxed u8 input; remote ones keep
``--requests`` requests in flight. Bytes per frame are the tensors on the wire, both directions (the u8 input,
the float outputs), without protocol headers.

On one machine the server and the client share the cores, so "remote" here is the protocol's cost plus the
contention, not a second PC's speed. The 1-minute load average before the run is recorded.

YOLOv8n-class: a random-initialised YOLOv8n built by Ultralytics from its yaml (no download), exported to ONNX
at 640: the same graph and tensor sizes as the trained model (its detections are meaningless, its speed is not).

    python benchmarks/bench_serving.py [--models yolox_nano yolov8n] [--time 12] [--requests 4]
                                       [--protocols grpc http] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT.parent / "shared" / "assets"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def yolov8n_onnx(folder: Path) -> Path:
    from ultralytics import YOLO

    exported = Path(YOLO("yolov8n.yaml").export(format="onnx", imgsz=640))  # written to the working folder
    return Path(shutil.move(exported, folder / exported.name))


def bench_model(name: str, model: Path, seconds: float, requests: int, protocols: list[str]) -> dict:
    from ovq.evaluation.speed import BenchSpec, benchmark_interleaved
    from ovq.serving.remote import open_detector

    http, grpc = free_port(), free_port()
    server = subprocess.Popen([sys.executable, "-m", "ovq", "serve", str(model), "--name", name, "--http-port",
                               str(http), "--grpc-port", str(grpc), "-q"], cwd=ROOT)
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/models/{name}/ready", timeout=2)
                break
            except OSError:
                time.sleep(0.3)
        urls = {"grpc": f"grpc://127.0.0.1:{grpc}/v2/models/{name}", "http": f"http://127.0.0.1:{http}/v2/models/{name}"}
        remote = open_detector(urls["http"])
        h, w = remote.info.input_size
        out_bytes = sum(4 * math.prod(shape) for shape in _output_shapes(urls["http"]))  # FP32 outputs
        load = os.getloadavg()[0]
        specs = [BenchSpec(str(model), device="CPU", requests=requests),
                 *(BenchSpec(urls[p], requests=requests) for p in protocols)]
        results = benchmark_interleaved(specs, seconds=seconds, rounds=3)
    finally:
        server.terminate()
        server.wait(30)
    rows = []
    for label, r in zip(("local", *protocols), results, strict=True):
        rows.append({"model": name, "where": label, "fps": round(r.throughput_fps, 1),
                     "latency_p50_ms": round(r.latency_median_ms, 1), "latency_p95_ms": round(r.latency_p95_ms, 1),
                     "requests": r.requests, "precision": r.precision_used,
                     "bytes_per_frame": 0 if label == "local" else h * w * 3 + out_bytes, "load_before": load,
                     "raw": asdict(r)})
    return {"rows": rows}


def _output_shapes(url: str) -> list[list[int]]:
    with urllib.request.urlopen(url) as f:
        return [o["shape"] for o in json.load(f)["outputs"]]


def main(models: list[str], seconds: float, requests: int, protocols: list[str]) -> list[dict]:
    import platform

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = {"yolox_nano": ASSETS / "models/yolox_nano/yolox_nano.onnx"}
        if "yolov8n" in models:
            paths["yolov8n"] = yolov8n_onnx(Path(tmp))
        for name in models:
            rows += bench_model(name, paths[name], seconds, requests, protocols)["rows"]
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    print(f"CPU: {cpu}, {os.cpu_count()} cores; local precision and server precision: each model's default")
    print(f"{'model':11s} {'where':6s} {'FPS':>7s} {'p50 ms':>8s} {'p95 ms':>8s} {'req':>4s} {'bytes/frame':>12s} load")
    for r in rows:
        print(f"{r['model']:11s} {r['where']:6s} {r['fps']:7.1f} {r['latency_p50_ms']:8.1f} {r['latency_p95_ms']:8.1f}"
              f" {r['requests']:4d} {r['bytes_per_frame']:12,d} {r['load_before']:.1f}")
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["yolox_nano", "yolov8n"], choices=("yolox_nano", "yolov8n"))
    parser.add_argument("--time", type=float, default=12.0, help="seconds per configuration (3 turns)")
    parser.add_argument("--requests", type=int, default=4, help="requests in flight")
    parser.add_argument("--protocols", nargs="+", default=["grpc", "http"], choices=("grpc", "http"))
    parser.add_argument("--json", help="write the rows as JSON")
    args = parser.parse_args()
    out = main(args.models, args.time, args.requests, args.protocols)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
