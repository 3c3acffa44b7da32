"""Start-up time with and without OpenVINO's compiled-model cache (``CACHE_DIR``), per model and device.

Each start is a fresh Python process (as a service restart is) that builds an ``ovq.Detector`` (read the IR,
compile) and runs one inference. Three kinds of start:

- ``no-cache``: caching off (``cache=False``): what every start costs without it;
- ``first``: caching on, empty cache folder: compile, and write the blob;
- ``cached``: caching on, the blob from ``first`` there: the second and later starts.

Run ``python benchmarks/bench_startup.py --help``. The models default to the shared YOLOX-Nano and FastestDet
(converted to ovq IR in a temporary folder first). :func:`main` returns the measurements.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT.parent / "shared" / "assets"
DEFAULT_MODELS = {
    "yolox_nano": ASSETS / "models" / "yolox_nano" / "yolox_nano.onnx",
    "fastestdet": ASSETS / "models" / "fastestdet" / "FastestDet.onnx",
}

# One start, in a child process: prints one JSON line.
_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import ovq
t1 = time.perf_counter()
model, device, cache = sys.argv[1], sys.argv[2], sys.argv[3]
det = ovq.Detector(model, device=device, cache=False if cache == "-" else cache)
t2 = time.perf_counter()
h, w = det.info.input_size
det(np.zeros((h, w, 3), np.uint8))
t3 = time.perf_counter()
try:
    hit = bool(det.compiled.get_property("LOADED_FROM_CACHE"))
except Exception:
    hit = None
print(json.dumps({"import_s": t1 - t0, "detector_s": t2 - t1, "first_infer_s": t3 - t2,
                  "precision": det.inference_precision, "loaded_from_cache": hit}))
"""


def _start(model_xml: Path, device: str, cache: str) -> dict[str, Any]:
    import time

    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(model_xml), device, cache],
                          capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"start failed ({model_xml}): {proc.stderr.strip().splitlines()[-1:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_s"] = wall
    return result


def main(
    models: dict[str, Path] | None = None,
    *,
    device: str = "CPU",
    repeats: int = 3,
    work_dir: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Measure ``repeats`` starts of each kind per model; returns one row per (model, kind) with medians."""
    import ovq

    models = models or DEFAULT_MODELS
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ovq-bench-startup-", dir=work_dir) as tmp:
        tmp_path = Path(tmp)
        for name, src in models.items():
            xml = Path(src)
            if xml.suffix != ".xml" and not xml.is_dir():
                xml = ovq.convert(src, tmp_path / name / "ir")
            runs: dict[str, list[dict[str, Any]]] = {"no-cache": [], "first": [], "cached": []}
            for i in range(repeats):
                runs["no-cache"].append(_start(xml, device, "-"))
                cache = tmp_path / name / f"cache{i}"
                runs["first"].append(_start(xml, device, str(cache)))
                runs["cached"].append(_start(xml, device, str(cache)))
            for kind, results in runs.items():
                rows.append({
                    "model": name,
                    "device": device,
                    "kind": kind,
                    "precision": results[0]["precision"],
                    "loaded_from_cache": [r["loaded_from_cache"] for r in results],
                    "detector_s": round(statistics.median(r["detector_s"] for r in results), 3),
                    "first_infer_ms": round(1000 * statistics.median(r["first_infer_s"] for r in results), 1),
                    "import_s": round(statistics.median(r["import_s"] for r in results), 3),
                    "process_s": round(statistics.median(r["process_s"] for r in results), 3),
                    "repeats": repeats,
                })
    return rows


def format_rows(rows: list[dict[str, Any]]) -> str:
    head = f"{'model':<12} {'device':<6} {'start':<9} {'precision':<9} {'read+compile s':>14} {'1st infer ms':>12} " \
           f"{'import s':>8} {'process s':>9}  from cache"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['model']:<12} {r['device']:<6} {r['kind']:<9} {r['precision']:<9} {r['detector_s']:>14.3f} "
            f"{r['first_infer_ms']:>12.1f} {r['import_s']:>8.3f} {r['process_s']:>9.3f}  {r['loaded_from_cache']}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="models as NAME=PATH (default: shared YOLOX-Nano and FastestDet)")
    parser.add_argument("--device", default="CPU")
    parser.add_argument("--repeats", type=int, default=3, help="starts of each kind per model (medians reported)")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = parser.parse_args()
    chosen = None
    if args.models:
        chosen = {}
        for item in args.models:
            name, _, path = item.partition("=")
            chosen[name if path else Path(name).stem] = Path(path or name)
    elif not all(p.exists() for p in DEFAULT_MODELS.values()):
        sys.exit(f"shared assets not found at {ASSETS}; pass models as NAME=PATH")
    result = main(chosen, device=args.device, repeats=args.repeats)
    print(format_rows(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
