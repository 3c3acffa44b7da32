"""Liveness: sd_notify datagrams on a real ``$NOTIFY_SOCKET`` (no systemd needed), the heartbeat file and
``ovq health``, journald-friendly log lines."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import make_dets

from ovq.cli import main
from ovq.core.errors import ConfigError
from ovq.deployment.notify import LivenessSink, Notifier, notify_address, watchdog_interval
from ovq.streaming.pipeline import FrameResult


def _result(i: int = 0) -> FrameResult:
    return FrameResult(stream="cam", source="synth://conveyor", frame_index=i, timestamp=time.time(),
                       frame=np.zeros((4, 4, 3), np.uint8), detections=make_dets([[0, 0, 1, 1]]), latency_ms=1.0)


@pytest.fixture
def listener(tmp_path):
    """A unix datagram socket bound where systemd's would be, read by a thread as systemd reads it;
    returns (path, a function returning the datagrams received since its last call)."""
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.05)
    got: list[str] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            try:
                got.append(sock.recv(4096).decode())
            except TimeoutError:
                continue

    reader = threading.Thread(target=read, daemon=True)
    reader.start()

    def received() -> list[str]:
        time.sleep(0.2)
        out = got[:]
        del got[:len(out)]
        return out

    yield path, received
    done.set()
    reader.join()
    sock.close()


def test_a_reader_that_lags_does_not_block_the_pipeline(tmp_path):
    path = str(tmp_path / "slow")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)  # never read: its queue fills after a few datagrams
    try:
        notifier = Notifier(path)
        start = time.monotonic()
        sent = [notifier.send("WATCHDOG=1") for _ in range(200)]
        assert time.monotonic() - start < 5 and sent[0] and not sent[-1]  # dropped, not blocked
    finally:
        sock.close()


def test_ready_after_the_first_result_then_watchdog_pings_while_results_flow(listener):
    path, received = listener
    now = [100.0]
    sink = LivenessSink.from_environment({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000"})
    assert sink is not None and sink.watchdog == 2.0  # pings at half the watchdog period
    sink._clock = lambda: now[0]
    assert received() == []  # nothing before a result: systemd keeps the unit "activating"
    sink.write(_result(0))
    assert received() == ["READY=1\nSTATUS=running: first result from cam"]
    for t in (100.5, 101.9):  # within half a period: no datagram per frame
        now[0] = t
        sink.write(_result())
    assert received() == []
    now[0] = 102.1
    sink.write(_result())
    now[0] = 103.0
    sink.write(_result())
    assert received() == ["WATCHDOG=1"]
    sink.close()
    assert received() == ["STOPPING=1\nSTATUS=stopped after 5 results"]


def test_abstract_socket_and_environment_rules(tmp_path):
    name = f"ovq-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    try:
        assert notify_address({"NOTIFY_SOCKET": "@" + name}) == "\0" + name
        assert Notifier("\0" + name).send("READY=1")
        assert sock.recv(100) == b"READY=1"
    finally:
        sock.close()
    assert LivenessSink.from_environment({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}) is None  # meant for another process
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    with pytest.raises(ConfigError, match="NOTIFY_SOCKET=relative/sock: expected an absolute socket path or @name"):
        LivenessSink.from_environment({"NOTIFY_SOCKET": "relative/sock"})


def test_a_supervisor_gone_is_a_warning_not_a_failure(tmp_path, ovq_log):
    sink = LivenessSink.from_environment({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    sink.write(_result())
    sink.close()
    assert any("sd_notify READY=1 to" in m and "gone" in m for m in ovq_log.messages())


def test_a_supervisor_gone_is_said_once_and_its_return_too(tmp_path, ovq_log):
    """A notify socket that went away after READY=1 logged a warning at every watchdog ping for as long as the
    service ran; now once, and once more when the pings get through again."""
    import logging

    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    now = [0.0]
    sink = LivenessSink.from_environment({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"})
    sink._clock = lambda: now[0]
    sink.write(_result(0))
    assert sock.recv(100).startswith(b"READY=1")
    sock.close()
    os.unlink(path)  # systemd gone
    for i in range(1, 21):
        now[0] = 1.5 * i  # each result a watchdog ping (every 1 s)
        sink.write(_result(i))
    warned = ovq_log.messages(logging.WARNING)
    assert len(warned) == 1 and warned[0].startswith(f"sd_notify WATCHDOG=1 to {path} failed: ")
    assert "No such file or directory" in warned[0]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)  # back
    try:
        sock.settimeout(5)
        now[0] += 1.5
        sink.write(_result(21))
        assert sock.recv(100) == b"WATCHDOG=1"
        assert ovq_log.messages(logging.WARNING)[1:] == [f"sd_notify to {path} works again"]
    finally:
        sink.close()
        sock.close()


def test_ovq_run_says_once_that_the_notify_socket_is_missing(tiny, tmp_path):
    """`ovq run` under NOTIFY_SOCKET naming no socket warned 'sd_notify READY=1 ... failed' at every frame (READY=1
    is tried again until it gets through), 60 lines for 60 frames; now one."""
    proc = subprocess.run(
        [sys.executable, "-m", "ovq", "run", str(tiny), "--device", "CPU", "--source",
         "synth://conveyor?width=96&height=64", "--max-frames", "30", "--no-progress", "-q"],
        env=_env(NOTIFY_SOCKET=str(tmp_path / "none"), WATCHDOG_USEC="2"), capture_output=True, text=True,
        check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr
    said = [line for line in proc.stderr.splitlines() if "sd_notify" in line]
    assert len(said) == 1 and f"sd_notify READY=1 to {tmp_path / 'none'} failed: " in said[0], proc.stderr


def _env(**more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "JOURNAL_STREAM")}
    env["PYTHONPATH"] = str(Path(__file__).parents[1])
    return {**env, **more}


def test_ovq_pipeline_notifies_a_real_socket_and_writes_a_heartbeat(tiny, tmp_path, listener, capsys):
    """``ovq pipeline`` as the service runs it: READY=1 once, WATCHDOG=1 while frames flow, STOPPING=1 at the end."""
    path, received = listener
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(f"model: {tiny}\ndevice: CPU\nsources: ['synth://conveyor?width=96&height=64&fps=30']\n")
    beat = tmp_path / "heartbeat.json"
    proc = subprocess.run(
        [sys.executable, "-m", "ovq", "pipeline", str(pipeline), "--max-frames", "45", "-q"],
        env=_env(NOTIFY_SOCKET=path, WATCHDOG_USEC="200000", OVQ_HEARTBEAT_FILE=str(beat)),
        capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr
    got = received()
    assert got[0].startswith("READY=1\n") and got[-1].startswith("STOPPING=1\n"), got
    pings = got[1:-1]
    assert set(pings) == {"WATCHDOG=1"} and len(pings) >= 5, got  # 45 frames at 30 fps, a ping every 0.1 s
    assert json.loads(beat.read_text())["results"] >= 1
    # ovq health reads the heartbeat: fresh, stale, missing
    assert main(["health", str(beat), "--max-age", "120"]) == 0
    assert capsys.readouterr().out.startswith("alive: last result ")
    os.utime(beat, (time.time() - 600, time.time() - 600))
    assert main(["health", str(beat), "--max-age", "120"]) == 1
    assert capsys.readouterr().out.startswith("stale: last result 600")
    assert main(["health", str(tmp_path / "none.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "none.json: no heartbeat" in err[0] and "OVQ_HEARTBEAT_FILE" in err[0]


def test_health_help_names_every_exit_code(tmp_path, capsys):
    """'ovq health --help' said "exit 0 while ... fresh, else 1", but a missing heartbeat file is exit 2."""
    with pytest.raises(SystemExit):
        main(["health", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "is fresh, 1 when it is stale or not a heartbeat, 2 when there is none" in text
    assert main(["health", str(tmp_path / "none.json")]) == 2


def test_health_of_a_folder_is_a_wrong_path_not_a_stale_pipeline(tmp_path, capsys):
    """`ovq health /var/lib/ovq` (the folder, not the file) said "stale" from the folder's time: exit 1, as if the
    pipeline had stopped, where the check itself is wrong."""
    assert main(["health", str(tmp_path), "--max-age", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    want = f"ovq health: error: {tmp_path}: not a file; give the heartbeat file the pipeline writes (OVQ_HEARTBEAT_FILE)"
    assert err == [want]


@pytest.mark.parametrize("journal", [True, False])
def test_log_lines_for_journald_have_a_priority_and_no_timestamp(tmp_path, journal):
    err = tmp_path / "stderr"
    with err.open("w") as f:
        st = os.fstat(f.fileno())
        stream = f"{st.st_dev}:{st.st_ino}" if journal else f"{st.st_dev}:{st.st_ino + 1}"  # another file's
    code = ("import logging, ovq.cli as c; c._setup_logging(0, False); "
            "logging.getLogger('ovq.x').warning('camera lost'); logging.getLogger('ovq.x').info('frames flow')")
    with err.open("w") as f:
        subprocess.run([sys.executable, "-c", code], env=_env(JOURNAL_STREAM=stream), stderr=f, check=True,
                       timeout=60)
    lines = err.read_text().splitlines()
    if journal:
        assert lines == ["<4>WARNING ovq.x: camera lost", "<6>INFO ovq.x: frames flow"]
    else:
        assert [ln.split(" ", 1)[1] for ln in lines] == ["WARNING ovq.x: camera lost", "INFO ovq.x: frames flow"]
        assert all(ln[2] == ":" and ln[5] == ":" for ln in lines)  # HH:MM:SS first


@pytest.mark.parametrize(("content", "future", "says"), [
    ('{"time": %(now)f, "results": 3, "stream": "s0"}\n', 3600,
     "the last result is dated 3600 s in the future: this clock or the file's is wrong"),  # was "alive: -3599.0 s ago"
    ("", 0, "cannot read the heartbeat: empty"),  # was alive
    ("garbage\n", 0, "cannot read the heartbeat: not the JSON a pipeline writes"),
    ('{"results": 3}\n', 0, "not a heartbeat: expected JSON with a 'time' and a 'results' count"),
    ('{"time": %(now)f, "results": true}\n', 0, "not a heartbeat: expected JSON"),
])
def test_health_trusts_only_a_heartbeat_a_pipeline_wrote_in_the_past(tmp_path, capsys, content, future, says):
    beat = tmp_path / "heartbeat.json"
    now = time.time()
    beat.write_text(content % {"now": now + future})
    os.utime(beat, (now + future, now + future))
    assert main(["health", str(beat), "--max-age", "30"]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith(f"not alive: {beat}: {says}"), out


def test_health_max_age_must_be_finite(tmp_path, capsys):
    beat = tmp_path / "heartbeat.json"
    beat.write_text(json.dumps({"time": time.time(), "results": 1, "stream": "s0"}))
    assert main(["health", str(beat), "--max-age", "nan"]) == 2  # NaN compared false: always "stale"
    assert capsys.readouterr().err.strip() == "ovq health: error: --max-age must be a finite number > 0, got nan"
    assert main(["health", str(beat), "--max-age", "5"]) == 0


def test_a_heartbeat_that_cannot_be_written_is_said_once_not_every_second(tmp_path, ovq_log):
    """OVQ_HEARTBEAT_FILE naming a folder (or a full disk) logged 'cannot write the heartbeat' every second for as long
    as the service ran, and left its temporary file behind each time."""
    beat = tmp_path / "hb"
    beat.mkdir()
    clock = iter(range(1000))
    sink = LivenessSink(heartbeat=beat, clock=lambda: float(next(clock)))
    for i in range(20):
        sink.write(_result(i))
    warned = [m for m in ovq_log.messages() if "heartbeat" in m]
    assert len(warned) == 1 and warned[0].startswith(f"{beat}: cannot write the heartbeat: ") and "Is a directory" in warned[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hb"]  # no .hb.tmp left
    beat.rmdir()  # the path is fixed: the heartbeat is written, and the log says so
    sink.write(_result(20))
    assert json.loads(beat.read_text())["results"] == 21
    assert [m for m in ovq_log.messages() if "heartbeat" in m][1:] == [f"{beat}: the heartbeat is written again"]


def test_ovq_run_writes_the_heartbeat_too(tiny, tmp_path, capsys):
    # only `ovq pipeline` wrote it: a container running `ovq run` with OVQ_HEARTBEAT_FILE set never got healthy
    beat = tmp_path / "heartbeat.json"
    proc = subprocess.run(
        [sys.executable, "-m", "ovq", "run", str(tiny), "--device", "CPU", "--source",
         "synth://conveyor?width=96&height=64&fps=30", "--max-frames", "10", "--no-progress", "-q"],
        env=_env(OVQ_HEARTBEAT_FILE=str(beat)), capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(beat.read_text())["results"] >= 1
    assert main(["health", str(beat), "--max-age", "120"]) == 0
    assert capsys.readouterr().out.startswith("alive: last result ")


def test_a_ready_that_fails_is_tried_again_once_a_second_not_at_every_frame(tmp_path, ovq_log):
    """READY=1 to a socket that is not there was sent again at every result: quiet in the log since it is said once,
    but a system call per frame (30 a second) for the whole run. Now at most once a second, and it still gets
    through once the socket is there."""
    import logging

    path = str(tmp_path / "notify")
    now = [0.0]
    sink = LivenessSink.from_environment({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "10000000"})
    sink._clock = lambda: now[0]
    for i in range(90):  # 3 s of results at 30 fps
        now[0] = i / 30
        sink.write(_result(i))
    tries = [m for m in ovq_log.messages(logging.DEBUG) if m.startswith("sd_notify READY=1 to")]
    assert len(tries) == 3, tries  # at 0, 1 and 2 s
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)  # systemd's socket is there now
    try:
        sock.settimeout(5)
        now[0] = 3.0
        sink.write(_result(90))
        assert sock.recv(100).startswith(b"READY=1\n")
        assert ovq_log.messages(logging.WARNING)[-1] == f"sd_notify to {path} works again"
    finally:
        sink.close()
        sock.close()
