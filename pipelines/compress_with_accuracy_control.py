"""Accuracy-aware INT8 compression through ovq's Python API, with a budget on the mAP drop.

NNCF quantizes the model, validates it on labelled images, and puts the layers that cost the most accuracy back
to float until the drop is within ``max_drop``. The result is an IR carrying its own provenance (budget, data,
reverted layers, the precision it was validated at) plus ``report.json``/``report.md`` in ``out``.

Run ``python pipelines/compress_with_accuracy_control.py --help``; :func:`main` returns the metrics, so a test
can run it on small data.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ovq.quantization.options import AdvancedQuantizeOptions
from ovq.quantization.workflow import quantize

ROOT = Path(__file__).resolve().parents[1]

logger = logging.getLogger("pipelines.compress_with_accuracy_control")


def main(
    model: str | Path = ROOT / "data" / "demo_model",
    data: str | Path = ROOT / "data" / "conveyor" / "data.yaml",
    out: str | Path = ROOT / "out" / "demo_model_int8_ac",
    *,
    max_drop: float = 0.01,
    drop_type: str = "absolute",
    calib_split: str = "calib",
    val_split: str = "val",
    subset_size: int = 300,
    precision: str = "default",
    device: str = "CPU",
    rank_by: str = "accuracy",
    bench_seconds: float = 5.0,
    progress: bool = True,
) -> dict[str, Any]:
    """Quantize ``model`` with accuracy control on ``data``; write the IR and report to ``out``.

    Returns the metrics: FP and INT8 mAP50-95 at the deployment precision, the drop, whether it is within
    ``max_drop``, how many layers went back to float, and the throughput when ``bench_seconds`` > 0.
    """
    result = quantize(
        model, data, out, max_drop=max_drop, drop_type=drop_type, calib_split=calib_split, val_split=val_split,
        subset_size=subset_size, device=device, precision=precision, rank_by=rank_by,
        advanced=AdvancedQuantizeOptions(bench_seconds=bench_seconds), progress=progress,
    )
    rep = result.report
    kept = [step for step in rep["reverted"] if step["kept"]]
    drop = result.drop
    budget = max_drop if drop_type == "absolute" else max_drop * (result.fp_map or 0.0)
    metrics: dict[str, Any] = {
        "model_xml": str(result.model_xml),
        "precision": rep["deployment_precision"],
        "fp_map50_95": result.fp_map,
        "int8_map50_95": result.int8_map,
        "drop": drop,
        "max_drop": max_drop,
        "drop_type": drop_type,
        "within_budget": drop is not None and drop <= budget + 1e-9,
        "reverted_layers": sum(len(step["layers"]) for step in kept),
        "val_images": rep["accuracy"]["images"],
        "rank_by": rank_by,
        "est_latency_ms": rep.get("latency_estimate"),
        "throughput": rep["throughput"],
        "seconds": rep["seconds"],
    }
    logger.info("metrics: %s", json.dumps(metrics))
    return metrics


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "data" / "demo_model"), help="float model (folder/.xml/.onnx)")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "conveyor" / "data.yaml",
                        help="labelled dataset: YOLO data.yaml or folder, or COCO JSON")
    parser.add_argument("--out", default=str(ROOT / "out" / "demo_model_int8_ac"), help="output folder")
    parser.add_argument("--max-drop", type=float, default=0.01, help="largest allowed mAP50-95 drop")
    parser.add_argument("--drop-type", choices=("absolute", "relative"), default="absolute")
    parser.add_argument("--calib-split", default="calib")
    parser.add_argument("--val-split", default="val")
    parser.add_argument("--subset-size", type=int, default=300, help="calibration images")
    parser.add_argument("--precision", choices=("default", "f32", "bf16"), default="default",
                        help="inference precision to validate and deploy at (default: the device's, bf16 on AMX)")
    parser.add_argument("--device", default="CPU")
    parser.add_argument("--rank-by", choices=("accuracy", "accuracy-per-latency"), default="accuracy",
                        help="order of reverts: most mAP restored first, or most mAP restored per ms of latency added")
    parser.add_argument("--bench-seconds", type=float, default=5.0, help="per throughput measurement (0: skip)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    import sys

    from ovq.cli._common import refuse_empty_folder
    from ovq.core.errors import OvqError

    try:
        # as ovq quantize -o: "" (an unset variable) was the working folder, "-" a folder named '-'
        refuse_empty_folder("--out", args.out, "the output folder (--out . for this one)")
        result = main(
            args.model, args.data, args.out, max_drop=args.max_drop, drop_type=args.drop_type,
            calib_split=args.calib_split, val_split=args.val_split, subset_size=args.subset_size,
            precision=args.precision, device=args.device, rank_by=args.rank_by, bench_seconds=args.bench_seconds,
        )
    except OvqError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:  # Ctrl-C: one line, not a traceback through NNCF and OpenVINO; out/ is left as it was
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    print(json.dumps(result, indent=2))
