"""``ovq demo``: the whole main job on assets the project ships, with no network.

Generates conveyor-belt calibration and validation data, quantizes the shipped demo detector with an
accuracy budget, compares FP and INT8 (accuracy and speed), and runs the video pipeline on a live
synthetic conveyor stream, writing an annotated mp4, the quantization report and a summary table.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2

from ovq.core.errors import ModelError
from ovq.core.fileio import check_output_dir, write_json_atomic, write_text_atomic
from ovq.model.paths import refuse_urls

logger = logging.getLogger(__name__)

DEMO_MODEL = Path(__file__).resolve().parents[1] / "data" / "demo_model"


@dataclass
class DemoSummary:
    out_dir: str
    fp_map: float | None
    int8_map: float | None
    drop: float | None
    max_drop: float
    reverted_layers: int
    precision: str
    throughput: dict[str, Any]
    pipeline: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)
    rank_by: str = "accuracy"
    latency: dict[str, Any] | None = None
    budget_met: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def find_demo_model(model: str | Path | None = None) -> Path:
    path = Path(model) if model else DEMO_MODEL
    if not (path / "model.xml").exists() and not path.is_file():
        raise ModelError(f"{path}: demo model not found (it ships in the source tree's data/demo_model)")
    return path


def run_demo(
    out_dir: str | Path = "ovq-demo",
    *,
    model: str | Path | None = None,
    n_calib: int = 160,
    n_val: int = 160,
    frames: int = 300,
    max_drop: float = 0.002,
    rank_by: str = "accuracy",
    seed: int = 0,
    bench_seconds: float = 3.0,
    progress: bool = True,
) -> DemoSummary:
    from ovq.data.synth import write_yolo_dataset
    from ovq.quantization.options import AdvancedQuantizeOptions
    from ovq.quantization.workflow import quantize
    from ovq.streaming.pipeline import Pipeline
    from ovq.streaming.sinks import JsonlSink, VideoSink

    refuse_urls([model], "the demo quantizes and runs a local model; give the demo model's folder (or leave --model out)")
    model_path = find_demo_model(model)  # before the output folder is made: a wrong --model left it behind empty
    out = check_output_dir(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    seconds: dict[str, float] = {}

    logger.info("[1/4] generating %d calibration and %d validation conveyor images", n_calib, n_val)
    data_yaml = write_yolo_dataset(out / "data", n_train=0, n_val=n_val, n_calib=n_calib, seed=seed)
    seconds["data"] = round(time.perf_counter() - t0, 1)

    logger.info("[2/4] quantizing %s to INT8 with accuracy control (max mAP drop %.3f, reverts by %s)",
                model_path, max_drop, rank_by)
    t = time.perf_counter()
    result = quantize(
        model_path, data_yaml, out / "int8", max_drop=max_drop, calib_split="calib", val_split="val",
        subset_size=n_calib, rank_by=rank_by, progress=progress,
        # at most 8 revert steps keeps the demo within its 3 minutes whatever the machine's numerics
        advanced=AdvancedQuantizeOptions(bench_seconds=bench_seconds, ranking_subset_size=48, max_num_iterations=8),
    )
    seconds["quantize_eval_bench"] = round(time.perf_counter() - t, 1)
    report = result.report

    logger.info("[3/4] running the INT8 model on a live synthetic conveyor stream for %d frames", frames)
    t = time.perf_counter()
    from ovq.model.detector import Detector

    detector = Detector(out / "int8", device="CPU", hint="throughput")
    labels = detector.labels
    video = out / "conveyor_int8.mp4"
    import importlib.util

    track = importlib.util.find_spec("trackers") is not None
    if not track:
        logger.info("tracking off: install the 'track' extra (pip install 'ovq[track]') for track IDs")
    pipeline = Pipeline(
        detector, ["synth://conveyor?fps=30&width=640&height=480&seed=1"], names=["conveyor"],
        sinks=[VideoSink(video, labels=labels), JsonlSink(out / "detections.jsonl", labels=labels)],
        max_frames=frames, track=track, stats_interval=5.0,
    )
    run = pipeline.run().to_dict()
    seconds["pipeline"] = round(time.perf_counter() - t, 1)
    _save_frame(video, out / "frame.png", index=frames // 2)

    logger.info("[4/4] writing the summary")
    summary = DemoSummary(
        out_dir=str(out), fp_map=result.fp_map, int8_map=result.int8_map, drop=result.drop, max_drop=max_drop,
        budget_met=result.budget_met,
        reverted_layers=len(report["quantization"].get("reverted_layers", [])), rank_by=rank_by,
        latency=report.get("latency"),
        precision=report["deployment_precision"], throughput=report["throughput"], pipeline=run,
        seconds={**seconds, "total": round(time.perf_counter() - t0, 1)},
    )
    write_json_atomic(out / "summary.json", summary.to_dict())
    write_text_atomic(out / "summary.md", render_summary(summary))
    return summary


def _save_frame(video: Path, png: Path, *, index: int) -> None:
    cap = cv2.VideoCapture(str(video))
    try:
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        cap.set(cv2.CAP_PROP_POS_FRAMES, min(index, max(count - 1, 0)))
        ok, frame = cap.read()
    finally:
        cap.release()
    if ok:
        cv2.imwrite(str(png), frame)


def render_summary(s: DemoSummary) -> str:
    sp = s.throughput or {}
    stream = next(iter(s.pipeline.get("streams", {}).values()), {})

    def f(v: Any, nd: int = 4) -> str:
        return "n/a" if v is None else f"{v:.{nd}f}" if isinstance(v, float) else str(v)

    rows = [
        "| | FP (device default) | FP (f32) | INT8 |",
        "|---|---|---|---|",
        f"| mAP50-95 on {s.precision} (generated val set) | {f(s.fp_map)} | | {f(s.int8_map)} |",
    ]
    if sp:
        rows.append(
            f"| throughput, FPS (benchmark, {sp['fp_default']['precision']} / f32 / INT8) | {sp['fp_default']['fps']} | "
            f"{sp['fp_f32']['fps']} | {sp['int8_deploy']['fps']} |"
        )
    lines = [
        "# ovq demo summary",
        "",
        *rows,
        "",
        f"- mAP drop {f(s.drop)} (budget {s.max_drop}{'' if s.budget_met is not False else ', NOT met'}); layers reverted to float: {s.reverted_layers}, chosen by {s.rank_by}",
        *([(f"- batch-1 latency ({s.latency['precision']}): FP {s.latency['fp_ms']} ms, all layers INT8 "
           f"{s.latency['int8_all_layers_ms']} ms, final INT8 {s.latency['final_ms']} ms")] if s.latency else []),
        (f"- pipeline: {stream.get('frames', 'n/a')} frames of a live synthetic conveyor (640x480, 30 fps), "
        f"{f(stream.get('fps'), 1)} FPS, latency p50 {f(stream.get('latency_p50_ms'), 1)} ms / p95 "
        f"{f(stream.get('latency_p95_ms'), 1)} ms, dropped {stream.get('dropped', 'n/a')}"),
        f"- time: {s.seconds}",
        "",
        ("Files: `int8/` (model, report.md, report.json, sensitivity.png), `conveyor_int8.mp4`, `detections.jsonl`, "
        "`frame.png`, `data/` (generated calib/val sets)."),
    ]
    return "\n".join(lines) + "\n"
