"""Quantization anchors on the shared real models (a benchmark script, not a test).

Runs, each in its own process (so peak memory is per run):
  1. plain INT8 of YOLOX-Nano: accuracy within 0.005 of FP, throughput >= 0.95x FP at the device default
     precision and >= 1.3x FP at f32;
  2. accuracy control on FastestDet with --max-drop 0.002: reverts layers, lands within 0.002 at the
     default precision (independent evaluation of the saved model), <= 5 minutes, <= 4 GB peak RSS;
  3. the same with --rank-by accuracy-per-latency: which reverts, what they cost in estimated latency and
     measured throughput, against NNCF's accuracy-first order;
  4. plain INT8 of the OMZ person detector (calibrated on coco128 images).
Prints a table and writes JSON. Usage: python benchmarks/bench_quantize.py [--out DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from ovq.runtime.capabilities import machine_summary

ASSETS = Path(__file__).resolve().parents[1].parent / "shared" / "assets"


def _run(name: str, args: list[str], out: Path) -> dict:
    target = out / name
    cmd = [sys.executable, "-m", "ovq", "quantize", *args, "-o", str(target), "--no-progress", "-q"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    report = json.loads((target / "report.json").read_text())
    return {"name": name, "wall_s": round(wall, 1), "report": report}


def main(out: Path, *, bench_time: float = 10.0) -> list[dict]:
    if not ASSETS.exists():
        raise SystemExit(f"shared assets not found at {ASSETS}")
    coco = ASSETS / "coco128"
    common = ["--data", str(coco), "--calib-split", "train2017", "--val-split", "val2017", "--bench-time", str(bench_time)]
    runs = [
        _run("yolox_plain", [str(ASSETS / "models/yolox_nano/yolox_nano.onnx"), *common], out),
        _run("fastestdet_max_drop_0.002", [str(ASSETS / "models/fastestdet/FastestDet.onnx"), *common, "--max-drop", "0.002"], out),
        _run("fastestdet_0.002_per_latency", [str(ASSETS / "models/fastestdet/FastestDet.onnx"), *common, "--max-drop", "0.002",
                                              "--rank-by", "accuracy-per-latency"], out),
        _run("omz_person_plain", [str(ASSETS / "models/person-detection-retail-0013-fp32"), "--data",
                                  str(coco / "images/train2017"), "--bench-time", str(bench_time)], out),
    ]
    print(f"{'run':28} {'FP':>7} {'INT8':>7} {'drop':>7} {'reverted':>8} {'FPS fp/f32/int8':>22} {'x dflt':>7} {'x f32':>6} {'wall s':>7} {'RSS MB':>7} {'ms int8->final':>19}")
    for r in runs:
        rep = r["report"]
        acc, sp = rep["accuracy"], rep["throughput"]
        reverted = sum(len(s["layers"]) for s in rep["reverted"] if s["kept"])
        fps = f"{sp['fp_default']['fps']}/{sp['fp_f32']['fps']}/{sp['int8_deploy']['fps']}"
        fmt = lambda v: "n/a" if v is None else f"{v:.4f}"
        lat = rep.get("latency")
        est = f"{lat['int8_all_layers_ms']}->{lat['final_ms']}" if lat else ""
        print(f"{r['name']:28} {fmt(acc['fp']):>7} {fmt(acc['int8']):>7} {fmt(acc['drop']):>7} {reverted:>8} {fps:>22} "
              f"{sp['int8_vs_fp_default']:>7} {sp['int8_vs_fp_f32']:>6} {r['wall_s']:>7} {rep['peak_rss_mb']:>7.0f} {est:>19}")
    machine = f"{machine_summary()}; load {os.getloadavg()}"
    print(f"machine: {machine}")
    for r in runs:
        r["machine"] = machine
    return runs


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("/tmp/ovq-bench-quantize"))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--bench-time", type=float, default=10.0)
    a = parser.parse_args()
    results = main(a.out, bench_time=a.bench_time)
    if a.json:
        a.json.write_text(json.dumps(results, indent=2))
