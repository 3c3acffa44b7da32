"""Does ``ovq bench`` agree with OpenVINO's ``benchmark_app``? (target: within 10 %)

Converts YOLOX-Nano and FastestDet from ../shared/assets to ovq IRs (in a temporary folder), then for each
model and each precision (the device default, and ``f32``) runs ``ovq bench MODEL --hint throughput --time T``
and ``benchmark_app -m MODEL.xml -d CPU -hint throughput -t T [-infer_precision f32]`` one after the other,
``rounds`` times with the order alternated, and compares the median throughputs. Both tools see the same IR
(u8 NHWC input, preprocessing in the graph).

The machine is shared: other work running at the same time moves both numbers. The 1-minute load average
before each run is recorded so a noisy comparison can be recognised.

    python benchmarks/bench_vs_benchmark_app.py [--time 10] [--rounds 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

ASSETS = Path(__file__).resolve().parents[1].parent / "shared" / "assets"
MODELS = {
    "yolox_nano": "models/yolox_nano/yolox_nano.onnx",
    "fastestdet": "models/fastestdet/FastestDet.onnx",
}
TOLERANCE = 0.10


@dataclass
class Comparison:
    model: str
    precision: str  # what was asked: default or f32
    precision_used: str  # what ovq bench read back from the compiled model
    ovq_fps: float
    app_fps: float
    ovq_runs: list[float] = field(default_factory=list)
    app_runs: list[float] = field(default_factory=list)
    load_avg: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.ovq_fps / self.app_fps if self.app_fps else float("nan")

    @property
    def agrees(self) -> bool:
        return abs(self.ratio - 1.0) <= TOLERANCE


def run_ovq_bench(xml: Path, precision: str, seconds: float, device: str) -> tuple[float, str]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        cmd = [
            sys.executable, "-m", "ovq", "bench", str(xml), "--device", device, "--hint", "throughput",
            "--precision", precision, "--time", str(seconds), "--json", str(out), "-q",
        ]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        result = json.loads(out.read_text())["results"][0]
    return float(result["throughput_fps"]), str(result["precision_used"])


def run_benchmark_app(xml: Path, precision: str, seconds: float, device: str) -> float:
    exe = shutil.which("benchmark_app")
    if exe is None:
        raise SystemExit("benchmark_app not found (it comes with the openvino wheel)")
    cmd = [exe, "-m", str(xml), "-d", device, "-hint", "throughput", "-t", str(int(seconds))]
    if precision != "default":
        cmd += ["-infer_precision", precision]
    proc = subprocess.run(cmd, check=True, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if "Throughput:" in line:
            return float(line.split()[4])
    raise RuntimeError(f"no 'Throughput:' line in benchmark_app output:\n{proc.stdout[-2000:]}")


def main(
    *,
    seconds: float = 10.0,
    rounds: int = 2,
    device: str = "CPU",
    models: tuple[str, ...] = tuple(MODELS),
    precisions: tuple[str, ...] = ("default", "f32"),
    assets: Path = ASSETS,
) -> list[Comparison]:
    from ovq.model.conversion import convert

    if not (assets / "README.md").exists():
        raise SystemExit(f"shared assets not found at {assets}")
    results: list[Comparison] = []
    with tempfile.TemporaryDirectory(prefix="ovq-bench-") as tmp:
        for name in models:
            xml = convert(assets / MODELS[name], Path(tmp) / name)
            for precision in precisions:
                cmp = Comparison(name, precision, "", 0.0, 0.0)
                for r in range(rounds):
                    order = ("ovq", "app") if r % 2 == 0 else ("app", "ovq")
                    for tool in order:
                        cmp.load_avg.append(round(os.getloadavg()[0], 2))
                        if tool == "ovq":
                            fps, used = run_ovq_bench(xml, precision, seconds, device)
                            cmp.ovq_runs.append(fps)
                            cmp.precision_used = used
                        else:
                            cmp.app_runs.append(run_benchmark_app(xml, precision, seconds, device))
                cmp.ovq_fps = statistics.median(cmp.ovq_runs)
                cmp.app_fps = statistics.median(cmp.app_runs)
                results.append(cmp)
                print(_row(cmp), flush=True)
    return results


def _row(c: Comparison) -> str:
    ok = "ok" if c.agrees else f"OFF BY MORE THAN {TOLERANCE:.0%}"
    return (
        f"{c.model:<11} asked {c.precision:<8} used {c.precision_used:<5} "
        f"ovq bench {c.ovq_fps:7.1f} FPS  benchmark_app {c.app_fps:7.1f} FPS  ratio {c.ratio:.3f}  {ok}"
        f"   (runs ovq {[round(x, 1) for x in c.ovq_runs]}, app {[round(x, 1) for x in c.app_runs]}, load {c.load_avg})"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time", type=float, default=10.0, help="seconds per run (default 10)")
    parser.add_argument("--rounds", type=int, default=2, help="runs per tool and setting (default 2)")
    parser.add_argument("--device", default="CPU")
    parser.add_argument("--json", help="write the comparison as JSON")
    args = parser.parse_args()
    rows = main(seconds=args.time, rounds=args.rounds, device=args.device)
    if args.json:
        Path(args.json).write_text(json.dumps([{**asdict(r), "ratio": r.ratio} for r in rows], indent=2) + "\n")
    sys.exit(0 if all(r.agrees for r in rows) else 1)
