"""Benchmark: real timing of a tiny real model; the table and its ratios; the CLI."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from ovq.cli import main
from ovq.core.errors import ConfigError, ModelError
from ovq.core.metadata import read_info, write_info
from ovq.evaluation.speed import BenchResult, BenchSpec, benchmark, benchmark_interleaved, format_table
from ovq.model.conversion import convert
from ovq.runtime import steal


def _conv_net(tmp: Path, name: str, width: int, depth: int) -> Path:
    """A conv net with a YOLO-shaped output, converted to an ovq IR (u8 NHWC input)."""
    rng = np.random.default_rng(0)
    x = ops.parameter([1, 3, 64, 64], ov.Type.f32, name="images")
    w1 = ops.constant(rng.normal(0, 0.2, (width, 3, 3, 3)).astype(np.float32))
    h = ops.relu(ops.convolution(x, w1, [1, 1], [1, 1], [1, 1], [1, 1]))
    for _ in range(depth):
        w = ops.constant(rng.normal(0, 0.05, (width, width, 3, 3)).astype(np.float32))
        h = ops.relu(ops.convolution(h, w, [1, 1], [1, 1], [1, 1], [1, 1]))
    w2 = ops.constant(rng.normal(0, 0.2, (6, width, 8, 8)).astype(np.float32))
    y = ops.convolution(h, w2, [8, 8], [0, 0], [0, 0], [1, 1])  # [1, 6, 8, 8]
    out = ops.reshape(y, ops.constant(np.array([1, 6, 64], np.int64)), special_zero=False)
    src = tmp / f"{name}.xml"
    ov.save_model(ov.Model([out], [x], name), str(src))
    return convert(src, tmp / f"{name}_ovq", family="yolo", labels=["a", "b"])


@pytest.fixture(scope="module")
def tiny_net(tmp_path_factory) -> Path:
    return _conv_net(tmp_path_factory.mktemp("bench"), "tiny", 16, 0)


@pytest.fixture(scope="module")
def heavy(tmp_path_factory) -> Path:
    """The same net with four wide 3x3 convolutions more: many times the work."""
    return _conv_net(tmp_path_factory.mktemp("bench_heavy"), "heavy", 64, 4)


def test_benchmark_returns_sane_numbers(tiny_net):
    r = benchmark(tiny_net, seconds=0.5, hint="throughput")
    assert r.model == "tiny_ovq" and r.device == "CPU" and r.hint == "throughput"
    assert r.precision_requested == "default" and r.precision_used in ("bf16", "f32", "f16")
    assert r.requests >= 1 and r.iterations > 10 and 0.4 < r.seconds < 5
    assert r.throughput_fps == pytest.approx(r.iterations / r.seconds)
    assert 0 < r.latency_min_ms <= r.latency_median_ms <= r.latency_p95_ms <= r.latency_max_ms
    assert r.input_shape == (1, 64, 64, 3)
    # requests in flight cannot finish faster than one at a time allows
    assert r.throughput_fps <= r.requests * 1000.0 / r.latency_min_ms * 1.05


def test_interleaved_configurations_take_turns(tiny_net, heavy):
    light, slow = benchmark_interleaved([BenchSpec(tiny_net), BenchSpec(heavy)], seconds=0.9, rounds=3)
    for r in (light, slow):
        assert len(r.slices_fps) == 3 and all(f > 0 for f in r.slices_fps)
        assert r.throughput_fps == pytest.approx(float(np.median(r.slices_fps)), rel=1e-2)
        assert 0.8 < r.seconds < 3 and r.iterations > 3
    assert (light.model, slow.model) == ("tiny_ovq", "heavy_ovq")
    # the one with many times the work is slower in every slice
    assert max(slow.slices_fps) < min(light.slices_fps)
    with pytest.raises(ConfigError, match="rounds must be at least 1"):
        benchmark_interleaved([BenchSpec(tiny_net)], seconds=0.2, rounds=0)


def test_latency_hint_uses_one_request_and_f32_is_reported(tiny_net):
    r = benchmark(tiny_net, seconds=0.3, hint="latency", precision="f32")
    assert r.requests == 1 and r.precision_requested == "f32" and r.precision_used == "f32"
    # one request at a time: throughput is bounded by the mean latency
    assert r.throughput_fps <= 1000.0 / r.latency_mean_ms * 1.05


def test_precision_stored_in_the_model_is_honoured(tiny_net, tmp_path):
    core = ov.Core()
    model = core.read_model(str(tiny_net))
    info = read_info(model)
    info.compile_config = {"INFERENCE_PRECISION_HINT": "f32"}
    write_info(model, info)
    path = tmp_path / "stored" / "model.xml"
    ov.save_model(model, str(path))
    stored = benchmark(path, seconds=0.2)
    assert stored.precision_requested == "model (f32)" and stored.precision_used == "f32"
    forced = benchmark(path, seconds=0.2, precision="default")
    assert forced.precision_requested == "default"
    assert forced.precision_used == benchmark(tiny_net, seconds=0.2).precision_used  # the device's own again


def test_bad_options_are_typed_errors(tiny_net, tmp_path):
    with pytest.raises(ConfigError, match="unknown performance hint 'fast'"):
        benchmark(tiny_net, hint="fast")
    for seconds in (0, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="must be a positive number of seconds"):
            benchmark(tiny_net, seconds=seconds)
    with pytest.raises(ModelError, match="no such file"):
        benchmark(tmp_path / "nope.xml")


def _result(model, fps, median, hint="throughput", used="bf16", asked="default"):
    return BenchResult(model, "CPU", hint, asked, used, fps, median, median * 1.2, 2, int(fps * 10), 10.0)


def test_format_table_ratios_per_device_and_hint():
    table = format_table(
        [
            _result("fp32", 100.0, 10.0),
            _result("int8", 250.0, 4.0),
            _result("fp32", 50.0, 20.0, hint="latency", used="f32", asked="f32"),
            _result("int8", 80.0, 12.5, hint="latency", used="f32", asked="bf16"),
        ]
    )
    lines = table.splitlines()
    assert lines[0].split()[:4] == ["model", "device", "hint", "precision"] and len(lines) == 6
    assert lines[2].split()[-1] == "1.00x" and lines[3].split()[-1] == "2.50x"
    assert lines[4].split()[-1] == "1.00x" and lines[5].split()[-1] == "1.60x"  # 20 ms / 12.5 ms
    assert "f32 (asked bf16)" in lines[5] and "(asked" not in lines[4]


def test_format_table_compares_served_models_among_themselves():
    """A served model's row read 'CPU  throughput  server ... 0.44x' against a local model: bench's own defaults for
    a model its server ran, and a ratio that mixes the network and the server's queue into the model's speed."""
    served = [BenchResult(url, device, hint, "server", used, fps, 15.0, 30.0, 4, 100, 1.0, served=True)
              for url, device, hint, used, fps in (("http://h:1/v2/models/a", "CPU", "throughput", "bf16", 160.0),
                                                   ("grpc://h:2/v2/models/a", "CPU", "throughput", "bf16", 200.0),
                                                   ("http://o:1/v2/models/a", None, None, None, 90.0))]
    lines = format_table([_result("local", 370.0, 3.3), *served]).splitlines()
    assert lines[2].split()[-1] == "1.00x"
    assert lines[3].split()[1:5] == ["CPU", "(served)", "throughput", "bf16"] and lines[3].split()[-1] == "1.00x"
    assert lines[4].split()[-1] == "1.25x"  # against the first model served on CPU with the same hint
    assert lines[5].split()[1:5] == ["?", "(served)", "?", "?"] and lines[5].split()[-1] == "1.00x"
    notes = " ".join(lines[6:])
    assert "served models are compared with the first served one" in notes and "?: the server does not say" in notes


def test_cli_bench_rounds_note_says_the_slice_length_and_what_took_turns(tiny_net, capsys):
    """--time 1 --rounds 50 said "the configurations took turns: 50 slices of 0.0 s each" for one model: no
    configurations to take turns, and slices of 0.02 s shown as none."""
    assert main(["bench", str(tiny_net), "--time", "0.5", "--rounds", "25", "-q"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "FPS is the median of 25 slices of 0.02 s"
    assert main(["bench", str(tiny_net), str(tiny_net), "--time", "0.5", "--rounds", "25", "-q"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "the configurations took turns: 25 slices of 0.02 s each; FPS is each one's median slice")


def test_cli_bench_two_models_table_and_json(tiny_net, tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = ["bench", str(tiny_net), str(tiny_net), "--time", "0.3", "--precision", "f32", "--precision", "default"]
    assert main([*args, "--json", str(out), "-q"]) == 0
    text = capsys.readouterr().out
    rows = [ln for ln in text.splitlines() if ln.startswith("tiny_ovq")]
    assert len(rows) == 4 and rows[0].split()[-1] == "1.00x"
    assert rows[0].split()[3] == "f32" and rows[1].split()[3] == "f32"
    data = json.loads(out.read_text())
    assert data["openvino"] and len(data["results"]) == 4
    assert [r["precision_requested"] for r in data["results"]] == ["f32", "f32", "default", "default"]
    assert all(r["throughput_fps"] > 0 and r["precision_used"] for r in data["results"])
    # four configurations compared: they took turns (3 slices of 0.1 s each, the minimum of 3)
    assert "took turns: 3 slices of 0.1 s" in text and all(len(r["slices_fps"]) == 3 for r in data["results"])
    assert main(["bench", str(tiny_net), str(tiny_net), "--time", "0.3", "--rounds", "1", "--json", str(out), "-q"]) == 0
    assert "took turns" not in capsys.readouterr().out
    assert all(len(r["slices_fps"]) == 1 for r in json.loads(out.read_text())["results"])


def test_cli_bench_bad_model_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.xml"
    bad.write_text("<net>")
    assert main(["bench", str(bad), "--time", "0.1", "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0]


@pytest.mark.parametrize("seconds", ["nan", "inf", "0", "-1"])
def test_cli_bench_time_must_be_a_positive_finite_number(tmp_path, capsys, seconds):
    """nan measured nothing and ended in an IndexError traceback; inf never ended."""
    assert main(["bench", str(tmp_path / "m.xml"), "--time", seconds]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"ovq bench: error: --time {float(seconds)}: must be a positive number of seconds"]


@pytest.mark.parametrize("model", ["local", "http://127.0.0.1:9/v2/models/fd"], ids=["local", "served"])
def test_cli_bench_requests_must_not_be_negative(tiny_net, capsys, model):
    """--requests -3 ran a local model with the device's optimal number (exit 0, 'req 2' in the table); for a served
    one it said 'jobs -1: expected at least 1 request in flight', naming no option of bench's."""
    model = str(tiny_net) if model == "local" else model
    assert main(["bench", model, "--requests", "-3", "--time", "0.1", "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["ovq bench: error: --requests -3: expected 0 (the device's optimum, or 4 for a served model) or more"]
    with pytest.raises(ConfigError, match=r"requests -3: expected 0 \(the device's optimum\) or more"):
        benchmark(tiny_net, requests=-3, seconds=0.1)


def test_a_time_too_short_for_one_inference_still_measures_one_per_request(tiny_net, capsys):
    """--time 1e-9 ended in 'IndexError: index -1 is out of bounds for axis 0 with size 0' (a traceback): the slice
    was over before a single inference started, and the median of no latencies failed."""
    result = benchmark(tiny_net, seconds=1e-9, requests=2)
    assert result.iterations == 2 and result.throughput_fps > 0 and result.latency_median_ms > 0
    assert main(["bench", str(tiny_net), str(tiny_net), "--time", "1e-9", "--rounds", "3", "-q"]) == 0
    rows = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("tiny_ovq")]
    assert len(rows) == 2


def test_cli_bench_refuses_an_empty_json_path(tiny_net, capsys):
    """--json '' (an unset variable, --json "$OUT") benchmarked, wrote nothing and exited 0."""
    assert main(["bench", str(tiny_net), "--time", "0.1", "--json", "", "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["ovq bench: error: --json '': an empty file name; give a file (/dev/stdout: standard output)"]


def test_bench_measures_steal_over_its_slices(tiny_net):
    result = benchmark(tiny_net, seconds=0.5)
    if sys.platform == "linux":
        assert result.steal_percent is not None and 0.0 <= result.steal_percent <= 100.0


@pytest.mark.skipif(sys.platform != "linux", reason="other processes' CPU time is read from Linux's /proc/stat")
def test_cli_bench_warns_when_other_processes_took_the_cpu(tiny_net, capsys):
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])  # busy beside the benchmark throughout
    try:
        time.sleep(0.3)
        assert main(["bench", str(tiny_net), "--time", "1", "-q"]) == 0
    finally:
        spinner.kill()
        spinner.wait()
    out = capsys.readouterr().out
    assert "warning: other processes on this machine used up to " in out, out
    share = int(out.split("used up to ")[1].split(" %")[0])
    assert 100 / (os.cpu_count() or 1) * 0.5 <= share <= 100, out  # the spinner's core, at least half of it


def test_cli_bench_warns_when_the_host_took_the_cpu(tiny_net, monkeypatch, capsys):
    ticks = itertools.count()

    def busy_host() -> steal.CpuTimes:  # every sample: 100 more ticks, 40 of them stolen
        n = next(ticks)
        return steal.CpuTimes(steal=40 * n, total=100 * n)

    monkeypatch.setattr(steal, "sample", busy_host)
    assert main(["bench", str(tiny_net), "--time", "0.3", "-q"]) == 0
    out = capsys.readouterr().out
    assert "warning: this VM's host gave 40 % of its CPU time to other guests" in out
    assert "not the machine's own" in out


@pytest.mark.parametrize("model", ["local", "http://127.0.0.1:9/v2/models/fd"], ids=["local", "served"])
def test_cli_bench_checks_the_image_before_the_model(tmp_path, capsys, model):
    """A bad --image was read only after the model had compiled (or its server was asked): the error for a
    model that was never going to be used came first, or a long compile was wasted."""
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    model = str(tmp_path / "missing.xml") if model == "local" else model
    assert main(["bench", model, "--image", str(bad), "--time", "0.1", "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"ovq bench: error: {bad}: not a readable image"]
