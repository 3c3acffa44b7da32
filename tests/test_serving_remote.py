"""The edge's side of serving on real servers: a run stopped during an outage, a URL at the other protocol's
port, what a server says reported as it said it, options that a served model cannot take (FastestDet)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.test_serving import ROOT, OvqServe


@pytest.fixture(scope="module")
def fastestdet(assets: Path) -> Path:
    return assets / "models" / "fastestdet" / "FastestDet.onnx"


@pytest.mark.slow
@pytest.mark.parametrize(("scheme", "sig"), [("http", signal.SIGINT), ("grpc", signal.SIGTERM)],
                         ids=["http-sigint", "grpc-sigterm"])
def test_stopping_a_run_during_an_outage_keeps_its_results(fastestdet: Path, assets: Path, tmp_path: Path,
                                                            scheme: str, sig: int) -> None:
    """Ctrl-C (or SIGTERM) while the server was away was 'inference failed on frame 240: ... Connection refused',
    exit 2, the JSONL left partial and no summary; now it stops as a local run's Ctrl-C does."""
    srv = OvqServe(fastestdet, name="fd")
    srv.start()
    jsonl, summary = tmp_path / "r.jsonl", tmp_path / "r.json"
    run = subprocess.Popen([sys.executable, "-m", "ovq", "run", srv.url(scheme), "--source",
                            str(assets / "videos" / "one-by-one-person-detection.mp4"), "--jsonl", str(jsonl),
                            "--summary-json", str(summary), "--no-progress", "--realtime"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(run.stderr), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any("served at" in ln for ln in lines):
            time.sleep(0.1)
        time.sleep(3)  # a hundred frames or so (--realtime: the video's 25 fps)
        srv.kill()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any("retrying until it is back" in ln for ln in lines):
            time.sleep(0.1)
        time.sleep(1)
        started = time.monotonic()
        run.send_signal(sig)
        out, _ = run.communicate(timeout=60)
        stopped_in = time.monotonic() - started
    finally:
        run.kill()
        srv.kill()
    reader.join(5)
    stderr = "".join(lines)
    assert run.returncode == 0, stderr
    assert "inference failed" not in stderr and "Traceback" not in stderr
    assert stopped_in < 10, stopped_in  # the retry loop hears the stop, not after its sleep
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(records) > 20 and [r["frame_index"] for r in records] == list(range(len(records)))
    result = json.loads(summary.read_text())
    assert result["stopped"] is True
    assert f"wrote {jsonl}" in out
