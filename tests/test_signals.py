"""Ctrl-C / SIGTERM: the first drains and closes the outputs (exit 0), the second stops at once (exit 130)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import pytest

from ovq.deployment.signals import SAME_REQUEST_S, stop_on_signals


@pytest.fixture
def guarded():
    """Handlers of this test's own in place of the defaults, so a helper that failed to install its handler
    records the signal here instead of killing (SIGTERM) or interrupting (SIGINT) the test session."""
    seen: list[int] = []

    def record(signum, frame):
        seen.append(signum)

    old = {s: signal.signal(s, record) for s in (signal.SIGINT, signal.SIGTERM)}
    yield seen, record
    for s, h in old.items():
        signal.signal(s, h)


@pytest.mark.parametrize("capture", ["capfd", "capsys"])  # stderr as a file descriptor, or replaced in Python
def test_first_signal_stops_the_second_interrupts_then_handlers_come_back(guarded, capture, request):
    cap = request.getfixturevalue(capture)
    seen, record = guarded
    stops = []
    with stop_on_signals(lambda: stops.append(time.monotonic()), name="ovq test"):
        signal.raise_signal(signal.SIGTERM)
        assert len(stops) == 1
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):  # and any after it
            signal.raise_signal(signal.SIGTERM)
    assert len(stops) == 1 and seen == []
    assert signal.getsignal(signal.SIGINT) is record and signal.getsignal(signal.SIGTERM) is record
    err = cap.readouterr().err
    assert err.splitlines() == [("ovq test: SIGTERM, stopping: finishing the frames in flight and closing the outputs "
                                "(again to stop at once)")]


def test_the_same_signal_again_within_a_second_is_the_same_request(guarded, capsys):
    seen, _ = guarded
    stops, at_once = [], []
    with stop_on_signals(lambda: stops.append(1), name="ovq test", at_once=lambda: at_once.append(1)):
        signal.raise_signal(signal.SIGTERM)  # `timeout`: to the child, then to its process group
        signal.raise_signal(signal.SIGTERM)
        assert (len(stops), len(at_once)) == (1, 0)
        time.sleep(SAME_REQUEST_S + 0.05)
        signal.raise_signal(signal.SIGTERM)  # later: a second request
        assert (len(stops), len(at_once)) == (1, 1)
    with stop_on_signals(lambda: stops.append(1), name="ovq test", at_once=lambda: at_once.append(1)):
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGTERM)  # another signal is another request, however soon
        signal.raise_signal(signal.SIGINT)  # and once stopping at once, every one counts
        assert (len(stops), len(at_once)) == (2, 3)
    assert seen == [] and len(capsys.readouterr().err.splitlines()) == 2


def test_handlers_come_back_when_the_block_raises(guarded):
    _, record = guarded
    with pytest.raises(RuntimeError), stop_on_signals(lambda: None, name="x"):
        raise RuntimeError("the run failed")
    assert signal.getsignal(signal.SIGINT) is record and signal.getsignal(signal.SIGTERM) is record


# --- the real command ---------------------------------------------------------------------------------------


def _start(tiny: Path, tmp_path: Path) -> tuple[subprocess.Popen, dict[str, Path]]:
    files = {"out": tmp_path / "x.mp4", "jsonl": tmp_path / "x.jsonl", "summary": tmp_path / "s.json"}
    cmd = [sys.executable, "-m", "ovq", "run", str(tiny), "--source", "synth://conveyor?width=160&height=120&fps=30",
           "--device", "CPU", "--out", str(files["out"]), "--jsonl", str(files["jsonl"]),
           "--summary-json", str(files["summary"])]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # the records go to a temporary file that replaces x.jsonl when the run ends: wait for 10 of them there
    # (waiting for x.jsonl itself waited out the whole minute, every time, and signalled late)
    deadline = time.monotonic() + 60
    records = 0
    while time.monotonic() < deadline and proc.poll() is None and records < 10:
        partial = list(tmp_path.glob(".x.jsonl.partial-*"))
        records = len(partial[0].read_text().splitlines()) if partial else 0
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    assert records >= 10, f"the run wrote {records} records in 60 s"
    return proc, files


def _frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    return n


def test_one_sigint_drains_closes_the_outputs_and_exits_0(tiny, tmp_path):
    proc, files = _start(tiny, tmp_path)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert [ln for ln in stderr.splitlines() if "stopping" in ln] == [
        "ovq run: SIGINT, stopping: finishing the frames in flight and closing the outputs (again to stop at once)"]
    records = len(files["jsonl"].read_text().splitlines())
    summary = json.loads(files["summary"].read_text())
    assert records >= 10 and _frames(files["out"]) == records == summary["frames"]  # a playable, complete MP4
    assert summary["stopped"] is True
    assert f"{records} frames from 1 stream(s)" in stdout and f"wrote {files['out']}" in stdout
    assert not list(tmp_path.glob(".*partial*"))


def test_a_second_signal_stops_at_once_with_130(tiny, tmp_path):
    proc, files = _start(tiny, tmp_path)
    said = threading.Event()
    lines: list[str] = []

    def read_stderr() -> None:
        for line in proc.stderr:
            lines.append(line)
            if "stopping" in line:
                said.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    proc.send_signal(signal.SIGINT)
    # the second one right after the first was handled (the line says so), while the pipeline drains: two
    # signals sent back to back could merge into one before Python's handler runs. A SIGTERM: the same SIGINT
    # again this soon is the same request (SAME_REQUEST_S), and the drain is over in well under a second
    assert said.wait(30), "".join(lines)
    proc.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    stdout = proc.stdout.read()
    proc.wait(timeout=60)
    reader.join(10)
    assert proc.returncode == 130, "".join(lines)
    assert time.monotonic() - t0 < 5
    assert lines[-1].strip() == "ovq run: interrupted again, stopping at once (outputs in progress are not finished)"
    assert "terminate called" not in "".join(lines)  # no C++ abort from native threads left running (was exit 134)
    assert "Traceback" not in "".join(lines) and "frames from" not in stdout  # no summary: it did not finish
    assert not files["summary"].exists()


def test_the_same_sigterm_twice_in_a_row_drains_and_exits_0(tiny, tmp_path):
    # what `timeout` does: the signal to the child, then to its whole process group, a few ms apart; here sent
    # again right after the first was handled, so the second is surely handled on its own
    proc, files = _start(tiny, tmp_path)
    proc.send_signal(signal.SIGTERM)
    said = proc.stderr.readline()
    while said and "stopping" not in said:
        said = proc.stderr.readline()
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, said + stderr
    assert "interrupted again" not in stderr and "frames from 1 stream(s)" in stdout
    assert json.loads(files["summary"].read_text())["stopped"] is True


@pytest.mark.skipif(shutil.which("timeout") is None, reason="needs coreutils' timeout")
def test_runs_ended_by_timeout_drain_and_exit_0(tiny, tmp_path, assets):
    # `timeout --preserve-status N ovq run ...` ended 5 of 10 runs with "interrupted again" and exit 130: its
    # SIGTERM comes twice (child, then process group)
    for seconds in (5, 6, 7):
        out = tmp_path / f"t{seconds}.mp4"
        proc = subprocess.run(["timeout", "--preserve-status", str(seconds), sys.executable, "-m", "ovq", "run",
                               str(tiny), "--source", str(assets / "videos/one-by-one-person-detection.mp4"),
                               "--source", "synth://conveyor?width=160&height=120", "--device", "CPU", "--out",
                               str(out), "--no-progress"], capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0 and "interrupted again" not in proc.stderr, (seconds, proc.stderr[-2000:])
        assert "frames from 2 stream(s)" in proc.stdout, proc.stderr[-2000:]
        assert _frames(out.with_name(f"t{seconds}_s0.mp4")) > 0 and _frames(out.with_name(f"t{seconds}_s1.mp4")) > 0


_SLOW_COMMAND = """
import argparse, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_DFL)  # as a shell starts a command, whatever the test runner set
import ovq.cli as cli
from ovq.core.fileio import atomic_output_dir

def slow(args):  # a command part-way through writing its output folder (bundle, quantize, convert, export...)
    with atomic_output_dir(sys.argv[1]) as tmp:
        (tmp / "half").write_text("written so far")
        print("ready", flush=True)
        time.sleep(60)
    return 0

class Parser:
    def parse_known_args(self, argv):
        return argparse.Namespace(command="slow", func=slow, verbose=0, quiet=False), []

cli.build_parser = Parser
cli.entry()
"""


def test_sigterm_takes_back_what_a_command_was_writing_then_ends_it_by_the_signal(tmp_path):
    """Killed outright by SIGTERM (systemd, `timeout`, a cancelled CI job), `ovq bundle --offline` left its ~260 MB
    temporary folder behind. Now the command cleans up as for Ctrl-C, says so, and dies of the signal its sender
    sent (so systemd counts a clean stop)."""
    out = tmp_path / "out"
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_COMMAND, str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=root)
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGTERM
    assert err == "ovq slow: terminated\n"
    assert list(tmp_path.iterdir()) == []  # neither the output nor its temporary twin
