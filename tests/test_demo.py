"""`ovq demo` end to end on the shipped model, small sizes."""

import json

import cv2
import pytest

from ovq.demo import DEMO_MODEL, run_demo


@pytest.mark.slow
def test_demo_runs_the_main_job(tmp_path):
    if not (DEMO_MODEL / "model.xml").exists():
        pytest.fail("the shipped demo model data/demo_model/model.xml is missing")
    s = run_demo(tmp_path / "d", n_calib=48, n_val=48, frames=40, max_drop=0.02, bench_seconds=0.5, progress=False)
    assert s.fp_map is not None and s.fp_map > 0.4  # the shipped detector really detects on fresh data
    assert s.fp_map - s.int8_map <= 0.02 + 1e-4
    summary = json.loads((tmp_path / "d" / "summary.json").read_text())
    assert summary["pipeline"]["streams"]["conveyor"]["frames"] == 40
    # the budget's verdict reaches the summary (a missed one is said in it: "NOT met")
    assert summary["budget_met"] is s.budget_met is True
    assert "(budget 0.02)" in (tmp_path / "d" / "summary.md").read_text()
    cap = cv2.VideoCapture(str(tmp_path / "d" / "conveyor_int8.mp4"))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 40
    assert (tmp_path / "d" / "int8" / "report.md").exists() and (tmp_path / "d" / "frame.png").exists()


def test_a_demo_model_that_is_not_there_leaves_no_output_folder(tmp_path, capsys):
    """`ovq demo --model nope -o d` said 'nope: demo model not found ...', exit 2, and left an empty folder d
    behind: the output folder was made before the model was looked for."""
    from ovq.cli import main

    out = tmp_path / "d"
    assert main(["demo", "--model", str(tmp_path / "nope"), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [(f"ovq demo: error: {tmp_path / 'nope'}: demo model not found (it ships in the source tree's "
                   "data/demo_model)")]
    assert not out.exists()
