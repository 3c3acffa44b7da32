"""Rolling outputs: video segments and rotated JSON Lines, named by their start time, pruned by ``keep``.

A service that runs for months wrote one MP4 (its index only at close: a SIGKILL lost all of it) and one JSON
Lines file that grew until the disk was full. These tests take the series apart: frames split by their
timestamps, names that sort and parse, what a kill leaves, what ``keep`` deletes and what it never touches.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from test_sinks import count_frames, make_result

from ovq.cli import main
from ovq.core.errors import ConfigError
from ovq.deployment.loader import parse_pipeline_config
from ovq.streaming.mp4 import mp4_frame_count
from ovq.streaming.rolling import Series, format_duration, parse_duration, parse_rotate, segment_glob
from ovq.streaming.sinks import JsonlSink, VideoSink

ROOT = Path(__file__).resolve().parents[1]
SYNTH = "synth://conveyor?fps=30&width=320&height=240"
T0 = 1_790_000_000.0  # 2026-09-21T14:13:20Z: frame i of a test stream at T0 + i / 10


def stamp_of(path: Path) -> datetime:
    """The start time a series file's name holds (``cam.20261203T063000Z[_N].mp4``)."""
    text = path.name.split(".")[-2].split("_")[0]
    return datetime.strptime(text, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def series_order(path: Path) -> tuple[str, int]:
    text = path.name.split(".")[-2]
    when, _, n = text.partition("_")
    return when, int(n or 0)


def at(i: int, stream: str = "s0", t0: float = T0):
    result = make_result(stream, i)
    result.timestamp = t0 + i / 10
    return result


def groups(timestamps: list[float], seconds: float) -> list[int]:
    """How many frames each file holds when a new one starts at the first frame ``seconds`` after the current
    one's first (the rule of VideoSink and JsonlSink)."""
    counts: list[int] = []
    start = None
    for ts in timestamps:
        if start is None or not 0 <= ts - start < seconds:
            counts.append(0)
            start = ts
        counts[-1] += 1
    return counts


# -- values ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("10m", 600), ("1h", 3600), ("1.5h", 5400), (45, 45),
                                               ("2", 2), (" 1D ", 86400), (1, 1)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("bad", [0, "0s", 0.5, "-1m", "5 parsecs", "10 minutes", float("nan"), float("inf"), True,
                                 None, "1h30m"])
def test_bad_durations(bad):
    with pytest.raises(ConfigError, match="expected"):
        parse_duration(bad)


def test_rotation_limits():
    assert parse_rotate("1h") == (3600, None) and parse_rotate(60) == (60, None)
    assert parse_rotate("100MB") == (None, 100_000_000) and parse_rotate("2kb") == (None, 2000)
    assert parse_rotate("1.5GB") == (None, 1_500_000_000)
    for bad, says in (("5 parsecs", "or a size (500KB, 100MB, 1GB), got '5 parsecs'"), ("10B", "at least 1000"),
                      ("0MB", "at least 1000"), ("MB", "expected a duration")):
        with pytest.raises(ConfigError, match=says.replace("(", r"\(").replace(")", r"\)")):
            parse_rotate(bad)


def test_series_names_sort_by_time_and_never_reuse_a_deleted_number(tmp_path):
    series = Series(tmp_path / "cam.mp4", partials=True)
    first = series.new_name(T0)
    assert first.name == "cam.20260921T141320Z.mp4" and segment_glob(first) == str(tmp_path / "cam.*.mp4")
    first.write_bytes(b"x")
    second = series.new_name(T0 + 0.5)  # the same second
    assert second.name == "cam.20260921T141320Z_1.mp4"
    second.write_bytes(b"x")
    series.partial_of(series.new_name(T0)).write_bytes(b"x")  # a segment in progress holds _2
    assert series.new_name(T0).name == "cam.20260921T141320Z_3.mp4"
    first.unlink()  # keep deleted the oldest: its name is not given to a newer file, which would sort before _1
    assert series.new_name(T0).name == "cam.20260921T141320Z_3.mp4"
    assert series.finished() == [second]
    assert segment_glob(tmp_path / "cam.mp4") is None and segment_glob(tmp_path / "camera.2026.mp4") is None


# -- video segments ----------------------------------------------------------------------------------------------
def test_video_segments_split_by_frame_time_each_complete(tmp_path):
    out = tmp_path / "cam.mp4"
    sink = VideoSink(out, segment=1.0)
    for i in range(35):
        sink.write(at(i))
        if i == 12:  # the first segment is finished and in place while the run goes on
            deadline = time.monotonic() + 30
            while not list(tmp_path.glob("cam.*.mp4")) and time.monotonic() < deadline:
                time.sleep(0.05)
            [done] = tmp_path.glob("cam.*.mp4")
            assert count_frames(done)[0] == 10
    sink.close()
    segments = sorted(tmp_path.glob("cam.*.mp4"), key=series_order)
    assert [p.name for p in segments] == [f"cam.20260921T1413{s}Z.mp4" for s in (20, 21, 22, 23)]
    assert [stamp_of(p).timestamp() for p in segments] == [T0, T0 + 1, T0 + 2, T0 + 3]
    assert [count_frames(p)[0] for p in segments] == [10, 10, 10, 5] == [mp4_frame_count(p) for p in segments]
    assert sink.written == {p: f"{n} frames" for p, n in zip(segments, (10, 10, 10, 5), strict=True)}
    assert sorted(p.name for p in tmp_path.iterdir()) == [p.name for p in segments]  # no partial, no cam.mp4


def test_each_stream_is_a_series_of_its_own_and_keep_counts_per_stream(tmp_path):
    sink = VideoSink(tmp_path / "out.mp4", segment=1.0, keep=2)
    sink.start(["a", "b"])
    for i in range(40):
        sink.write(at(i, "a"))
        sink.write(at(i, "b"))
    sink.close()
    for stream in ("a", "b"):
        kept = sorted(tmp_path.glob(f"out_{stream}.*.mp4"), key=series_order)
        assert [p.name for p in kept] == [f"out_{stream}.20260921T14132{s}Z.mp4" for s in (2, 3)]
        assert [count_frames(p)[0] for p in kept] == [10, 10]
    assert len(sink.written) == 4


def test_keep_deletes_the_oldest_segments_and_nothing_else(tmp_path, ovq_log):
    unrelated = ["cam.mp4", "cam.notes.txt", "cam.20200101T000000Z.mp4.bak", "camera.20200101T000000Z.mp4",
                 "cam_s1.20200101T000000Z.mp4", "cam.20200101T000000Z.webm", "cam.2020-01-01.mp4",
                 ".cam.20200101T000000Z.partial.webm"]
    for name in unrelated:
        (tmp_path / name).write_bytes(b"not ours")
    (tmp_path / "cam.20200101T000001Z.mp4").mkdir()  # a folder with a segment's name: not a segment
    (tmp_path / "cam.20200101T000002Z.mp4").symlink_to(tmp_path / "cam.mp4")  # nor is a link
    old = tmp_path / "cam.20200101T000003Z.mp4"  # a segment of an earlier run
    old.write_bytes(b"old segment")
    killed = tmp_path / ".cam.20200101T000004Z.partial.mp4"  # what a killed run left in progress
    killed.write_bytes(b"no index")
    sink = VideoSink(tmp_path / "cam.mp4", segment=1.0, keep=2)
    for i in range(45):
        sink.write(at(i))
    sink.close()
    kept = sorted(tmp_path.glob("cam.2026*.mp4"), key=series_order)
    assert [p.name for p in kept] == ["cam.20260921T141323Z.mp4", "cam.20260921T141324Z.mp4"]
    assert [count_frames(p)[0] for p in kept] == [10, 5] and list(sink.written) == kept
    assert not old.exists() and not killed.exists()
    for name in unrelated:
        assert (tmp_path / name).read_bytes() == b"not ours", name
    assert (tmp_path / "cam.20200101T000001Z.mp4").is_dir() and (tmp_path / "cam.20200101T000002Z.mp4").is_symlink()
    deleted = [m for m in ovq_log.messages(logging.INFO) if ": deleted" in m]
    assert len(deleted) == 5 and any(str(old) in m for m in deleted) and any(str(killed) in m for m in deleted)
    assert all(r.levelno == logging.INFO for r in ovq_log.records if ": deleted" in r.getMessage())


def test_a_segment_that_cannot_be_deleted_is_a_warning(tmp_path, ovq_log, monkeypatch):
    stuck = tmp_path / "cam.20200101T000000Z.mp4"
    stuck.write_bytes(b"root's")
    real_unlink = Path.unlink

    def unlink(self, missing_ok=False):
        if self == stuck:
            raise PermissionError(13, "Permission denied", str(self))
        return real_unlink(self, missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    sink = VideoSink(tmp_path / "cam.mp4", segment=1.0, keep=1)
    for i in range(25):
        sink.write(at(i))
    sink.close()  # no error: the run goes on
    assert stuck.exists() and [p.name for p in sorted(tmp_path.glob("cam.2026*.mp4"))] == ["cam.20260921T141322Z.mp4"]
    warnings = ovq_log.messages(logging.WARNING)
    assert any(f"{stuck}: could not delete it" in m and "Permission denied" in m for m in warnings), warnings


def test_a_clock_set_back_starts_a_new_segment_and_replaces_nothing(tmp_path):
    sink = VideoSink(tmp_path / "cam.mp4", segment=1.0)
    for i in range(25):  # 141320Z, 141321Z, then 141322Z in progress
        sink.write(at(i))
    for i in range(5):  # NTP stepped the clock back 1.9 s (more than a segment): into the first file's second
        sink.write(at(i, t0=T0 + 0.6))
    for i in range(3):  # a step back of less than a segment is no new file (streams come a little out of order)
        sink.write(at(i, t0=T0 + 0.2))
    sink.close()
    segments = sorted(tmp_path.glob("cam.*.mp4"), key=series_order)
    assert [p.name for p in segments] == [f"cam.20260921T1413{s}.mp4" for s in ("20Z", "20Z_1", "21Z", "22Z")]
    assert [count_frames(p)[0] for p in segments] == [10, 8, 10, 5]


def test_jsonl_of_several_streams_a_little_out_of_order_is_one_file(tmp_path):
    sink = JsonlSink(tmp_path / "det.jsonl", rotate_seconds=1)
    for i in range(8):
        sink.write(at(i, "a"))
        sink.write(at(i, "b", t0=T0 - 0.05))  # b's frames, captured earlier, come after a's
    sink.close()
    assert [len(recs) for _, recs in records_of(tmp_path)] == [16]


def test_a_failed_run_puts_the_finished_segment_in_place(tmp_path):
    sink = VideoSink(tmp_path / "cam.mp4", segment=60.0)
    for i in range(7):
        sink.write(at(i))
    sink.abort()  # a segment replaces nothing, so the frames so far go into place, checked
    [segment] = tmp_path.iterdir()
    assert segment.name == "cam.20260921T141320Z.mp4" and count_frames(segment)[0] == 7


@pytest.mark.parametrize(("kwargs", "says"), [
    ({"segment": 0}, "segment must be a number of seconds >= 1, got 0"),
    ({"segment": float("nan")}, "segment must be a number of seconds >= 1, got nan"),
    ({"segment": "10m"}, "segment must be a number of seconds >= 1, got '10m'"),
    ({"keep": 3}, "keep=3 keeps the newest files of a series; give segment too"),
    ({"segment": 60, "keep": 0}, "keep must be an integer >= 1, got 0"),
    ({"segment": 60, "keep": -2}, "keep must be an integer >= 1, got -2"),
])
def test_video_sink_refuses_bad_rolling_options(tmp_path, kwargs, says):
    with pytest.raises(ConfigError) as err:
        VideoSink(tmp_path / "cam.mp4", **kwargs)
    assert str(err.value) == f"{tmp_path / 'cam.mp4'}: {says}"


# -- JSON Lines rotation -----------------------------------------------------------------------------------------
def records_of(folder: Path, stem: str = "det") -> list[tuple[Path, list[dict]]]:
    files = sorted(folder.glob(f"{stem}.*.jsonl"), key=series_order)
    return [(p, [json.loads(line) for line in p.read_text().splitlines()]) for p in files]


def test_jsonl_rotates_by_size_every_record_once(tmp_path):
    path = tmp_path / "det.jsonl"
    sink = JsonlSink(path, rotate_bytes=2000)
    for i in range(100):
        sink.write(at(i))
        if i == 5:  # the file in progress is path itself, written through (tail -F path)
            assert len(path.read_text().splitlines()) == 6
    sink.close()
    files = records_of(tmp_path)
    assert len(files) >= 10 and not path.exists()
    assert all(p.stat().st_size <= 2000 for p, _ in files)
    assert [r["frame_index"] for _, recs in files for r in recs] == list(range(100))  # none lost, none twice
    assert sink.written == {p: f"{len(recs)} records" for p, recs in files}
    for p, recs in files:  # each named by its first record's time
        assert stamp_of(p).timestamp() == int(recs[0]["timestamp"])


def test_jsonl_rotates_by_time_and_keeps_the_newest(tmp_path, ovq_log):
    (tmp_path / "det.20000101T000000Z.jsonl.bak").write_text("keep me\n")
    (tmp_path / "det.jsonl.20000101T000000Z").write_text("keep me\n")
    sink = JsonlSink(tmp_path / "det.jsonl", rotate_seconds=1, keep=3)
    for i in range(55):
        sink.write(at(i))
    sink.close()
    files = records_of(tmp_path)
    assert [p.name for p, _ in files] == [f"det.20260921T14132{s}Z.jsonl" for s in (3, 4, 5)]
    assert [[r["frame_index"] for r in recs] for _, recs in files] == [
        list(range(30, 40)), list(range(40, 50)), list(range(50, 55))]
    assert list(sink.written) == [p for p, _ in files]
    assert (tmp_path / "det.20000101T000000Z.jsonl.bak").read_text() == "keep me\n"
    assert (tmp_path / "det.jsonl.20000101T000000Z").read_text() == "keep me\n"
    assert sum(": deleted" in m for m in ovq_log.messages(logging.INFO)) == 3


def test_jsonl_left_by_a_killed_run_is_named_at_the_next_start(tmp_path, ovq_log):
    path = tmp_path / "det.jsonl"
    left = [json.dumps({"frame_index": i, "timestamp": T0 - 3600 + i}) for i in range(3)]
    path.write_text("\n".join(left) + '\n{"frame_index": 3, "time')  # the kill cut the last line
    sink = JsonlSink(path, rotate_seconds=3600)
    sink.start(["s0"])
    named = tmp_path / "det.20260921T131320Z.jsonl"
    assert named.read_text().splitlines() == left  # whole lines only, named by its first record
    sink.write(at(0))
    sink.close()
    assert sink.written == {tmp_path / "det.20260921T141320Z.jsonl": "1 records"}  # the leftover was not this run's
    assert any("last line is incomplete" in m for m in ovq_log.messages(logging.WARNING))


@pytest.mark.parametrize(("kwargs", "says"), [
    ({"rotate_seconds": 0}, "rotate_seconds: expected at least 1 s"),
    ({"rotate_bytes": 999}, "rotate_bytes: expected an integer >= 1000, got 999"),
    ({"keep": 2}, "keep=2 keeps the newest files of a series; give rotate_seconds or rotate_bytes too"),
    ({"rotate_seconds": 60, "keep": -1}, "keep must be an integer >= 1, got -1"),
    ({"rotate_seconds": 60, "append": True}, "not rotated: append: a rotating file adds to its series"),
])
def test_jsonl_sink_refuses_bad_rotation(tmp_path, kwargs, says):
    with pytest.raises(ConfigError) as err:
        JsonlSink(tmp_path / "det.jsonl", **kwargs)
    assert str(err.value).startswith(f"{tmp_path / 'det.jsonl'}: {says}")


def test_a_pipe_is_not_rotated(tmp_path):
    fifo = tmp_path / "records"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="not rotated: a pipe or a device"):
        JsonlSink(fifo, rotate_bytes=10_000)


# -- the command line and pipeline files -------------------------------------------------------------------------
def test_run_writes_one_second_segments_of_a_live_source(tiny, tmp_path, capsys):
    out, jsonl = tmp_path / "cam.mp4", tmp_path / "det.jsonl"
    code = main(["run", str(tiny), "--source", SYNTH, "--device", "CPU", "--max-frames", "105", "--out", str(out),
                 "--segment", "1s", "--jsonl", str(jsonl), "--no-progress", "--stats-interval", "0", "-q"])
    printed = capsys.readouterr().out.splitlines()
    assert code == 0
    stamps = [json.loads(line)["timestamp"] for line in jsonl.read_text().splitlines()]
    expected = groups(stamps, 1.0)
    assert len(stamps) == 105 and len(expected) >= 4  # 105 frames at 30 fps span 3.5 s at least
    segments = sorted(tmp_path.glob("cam.*.mp4"), key=series_order)
    assert [count_frames(p)[0] for p in segments] == expected  # every frame written once, in its segment
    assert sum(mp4_frame_count(p) for p in segments) == 105
    assert [stamp_of(p) for p in segments] == sorted(stamp_of(p) for p in segments)
    assert stamp_of(segments[0]).timestamp() == int(stamps[0])
    assert f"wrote {len(segments)} segments {tmp_path / 'cam.*.mp4'}, the last {segments[-1]} " \
           f"({expected[-1]} frames)" in printed
    assert not out.exists() and not list(tmp_path.glob(".*"))


@pytest.mark.parametrize("how", ["cli", "api"])
def test_sigkill_keeps_every_finished_segment_playable(tiny, tmp_path, how):
    """The defect: a service killed by the watchdog (SIGKILL) lost its whole video, whose index comes last."""
    out, jsonl = tmp_path / "cam.mp4", tmp_path / "det.jsonl"
    if how == "cli":
        cmd = [sys.executable, "-m", "ovq", "run", str(tiny), "--source", SYNTH, "--device", "CPU", "--out", str(out),
               "--segment", "1s", "--jsonl", str(jsonl), "--jsonl-rotate", "1s", "--no-progress", "-q"]
    else:
        cmd = [sys.executable, "-c", ("import ovq, sys; ovq.Pipeline(sys.argv[1], [sys.argv[2]], device='CPU', sinks=["
               "ovq.VideoSink(sys.argv[3], segment=1), ovq.JsonlSink(sys.argv[4], rotate_seconds=1)]).run()"),
               str(tiny), SYNTH, str(out), str(jsonl)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 120
        while len(list(tmp_path.glob("cam.*.mp4"))) < 3 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert proc.poll() is None, proc.stderr.read().decode()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    segments = sorted(tmp_path.glob("cam.*.mp4"), key=series_order)
    assert len(segments) >= 3
    for p in segments:  # every file under a final name is finished: its index lists every frame, and they play
        listed = mp4_frame_count(p)
        assert listed and count_frames(p)[0] == listed, p
    for p in tmp_path.glob(".cam.*.partial.mp4"):  # the one in progress, hidden, is all that was lost
        assert mp4_frame_count(p) is None
    rotated = records_of(tmp_path)
    indexes = [r["frame_index"] for _, recs in rotated for r in recs]
    assert len(rotated) >= 2 and indexes == sorted(set(indexes))
    # the next run names the file in progress the kill left, and keep deletes what the kill left unfinished
    left = [json.loads(line) for line in jsonl.read_text().split("\n")[:-1]]  # its complete lines
    code = main(["run", str(tiny), "--source", SYNTH, "--device", "CPU", "--max-frames", "3", "--out", str(out),
                 "--segment", "1s", "--keep", "1", "--jsonl", str(jsonl), "--jsonl-rotate", "1s", "-q",
                 "--no-progress"])
    assert code == 0 and not list(tmp_path.glob(".*")) and not jsonl.exists()
    assert len(list(tmp_path.glob("cam.*.mp4"))) == 1
    assert not left or left in [recs for _, recs in records_of(tmp_path)]


def _pipeline_file(tmp_path: Path, sinks: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(f"model: m.xml\nsources: [synth://conveyor]\nsinks: {sinks}\n")
    return path


@pytest.mark.parametrize(("sinks", "says"), [
    ("{video: {path: v.mp4, segment: 0}}", ("sinks.video.segment: expected at least 1 s (files are named to the "
                                           "second), got 0")),
    ("{video: {path: v.mp4, segment: 10 minutes}}", ("sinks.video.segment: expected a duration (30s, 10m, 1h, or "
                                                    "seconds), got '10 minutes'")),
    ("{video: {path: v.mp4, segment: 10m, keep: -1}}", "sinks.video.keep: expected an integer >= 1, got -1"),
    ("{video: {path: v.mp4, keep: 3}}", ("sinks.video.keep: keeps the newest files of a series, which "
                                        "sinks.video.segment makes: give it too")),
    ("{video: {path: v.mp4, segmnet: 10m}}", "sinks.video: unknown key 'segmnet'; did you mean 'segment'?"),
    ("{jsonl: {path: r.jsonl, rotate: 5 parsecs}}", ("sinks.jsonl.rotate: expected a duration (30s, 10m, 1h, or "
                                                    "seconds) or a size (500KB, 100MB, 1GB), got '5 parsecs'")),
    ("{jsonl: {path: r.jsonl, rotate: 1h, keep: 0}}", "sinks.jsonl.keep: expected an integer >= 1, got 0"),
    ("{jsonl: {path: r.jsonl, keep: 4}}", ("sinks.jsonl.keep: keeps the newest files of a series, which "
                                          "sinks.jsonl.rotate makes: give it too")),
    ("{jsonl: {path: r.jsonl, append: true, rotate: 1h}}", ("sinks.jsonl.rotate: not with sinks.jsonl.append: a "
                                                           "rotating file adds to its series, replacing nothing")),
])
def test_pipeline_file_errors_name_the_file_and_key(tmp_path, capsys, sinks, says):
    path = _pipeline_file(tmp_path, sinks)
    assert main(["pipeline", str(path), "--check"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"ovq pipeline: error: {path}: {says}"), err


@pytest.mark.parametrize(("flags", "says"), [
    (["--out", "v.mp4", "--segment", "0"], "--segment: expected at least 1 s (files are named to the second), got '0'"),
    (["--out", "v.mp4", "--segment", "5 parsecs"], ("--segment: expected a duration (30s, 10m, 1h, or seconds), got "
                                                   "'5 parsecs'")),
    (["--out", "v.mp4", "--segment", "1m", "--keep", "-1"], "--keep: expected an integer >= 1, got -1"),
    (["--out", "v.mp4", "--keep", "3"], ("--keep: keeps the newest files of a series, which --segment makes: give it "
                                        "too")),
    (["--segment", "1m"], "--segment: give the video file with --out FILE.mp4"),
    (["--jsonl", "r.jsonl", "--jsonl-rotate", "5 parsecs"], ("--jsonl-rotate: expected a duration (30s, 10m, 1h, or "
                                                            "seconds) or a size (500KB, 100MB, 1GB), got '5 parsecs'")),
    (["--jsonl", "r.jsonl", "--jsonl-keep", "2"], ("--jsonl-keep: keeps the newest files of a series, which "
                                                  "--jsonl-rotate makes: give it too")),
    (["--jsonl-rotate", "1h"], "--jsonl-rotate: give the file with --jsonl FILE"),
    (["--jsonl", "r.jsonl", "--jsonl-rotate", "1h", "--jsonl-append"], "--jsonl-rotate: not with --jsonl-append"),
])
def test_run_flag_errors_are_one_line(tiny, tmp_path, capsys, monkeypatch, flags, says):
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(tiny), "--source", "synth://conveyor", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"ovq run: error: {says}"), err
    assert not list(tmp_path.iterdir())


def test_check_prints_the_rolling_keys_and_they_load_again(tmp_path, capsys):
    path = _pipeline_file(tmp_path, "{video: {path: v.mp4, segment: 600, keep: 144}, "
                                    "jsonl: {path: r.jsonl, rotate: 100MB, keep: 48}}")
    cfg = parse_pipeline_config(__import__("yaml").safe_load(path.read_text()), path)
    s = cfg.sinks
    assert (s.video_segment, s.video_keep, s.jsonl_rotate_bytes, s.jsonl_rotate_seconds, s.jsonl_keep) == (
        600, 144, 100_000_000, None, 48)
    printed = cfg.to_dict()["sinks"]
    assert printed["video"] == {"path": str(tmp_path / "v.mp4"), "fps": None, "segment": "10m", "keep": 144}
    assert printed["jsonl"] == {"path": str(tmp_path / "r.jsonl"), "append": False, "rotate": "100MB", "keep": 48}
    again = parse_pipeline_config({**cfg.to_dict(), "sources": ["synth://conveyor"]}, path)
    assert again.sinks == cfg.sinks
