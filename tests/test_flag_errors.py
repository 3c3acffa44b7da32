"""A bad value of a command's flag is named by the flag the user typed, not by the Python option behind it
('resize 'gpu': ...', 'http port 70000: ...', 'conf 5.0: ...' told a command-line user of names they never wrote)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ovq.cli import main

NO_GPU = "this machine has no GPU render node (/dev/dri/renderD*); use auto or software"
no_gpu_node = pytest.mark.skipif(Path("/dev/dri").exists(), reason="this machine has a GPU device node")


@pytest.mark.parametrize(("argv", "says"), [
    (["capacity", "{tiny}", "--source", "{clip}", "--fps", "5", "--resize", "gpu"],
     "--resize: expected one of auto, python, graph, got 'gpu'"),  # was "resize 'gpu': ..."
    (["capacity", "{tiny}", "--source", "{clip}", "--fps", "5", "--nms", "gpu"],
     "--nms: expected one of auto, python, graph, got 'gpu'"),
    (["capacity", "{tiny}", "--source", "{clip}", "--fps", "5", "--decode", "vaapu"],
     "--decode: expected one of auto, software, vaapi, mfx, d3d11, got 'vaapu'"),
    pytest.param(["capacity", "{tiny}", "--source", "{clip}", "--fps", "5", "--decode", "vaapi"],
                 f"--decode: vaapi: {NO_GPU}", marks=no_gpu_node),  # was "decode 'vaapi': ...; use decode 'auto'..."
    pytest.param(["run", "{tiny}", "--source", "{clip}", "--decode", "vaapi"], f"--decode: vaapi: {NO_GPU}",
                 marks=no_gpu_node),
    pytest.param(["pipeline", "{yaml}"], f"{{yaml}}: decode: vaapi: {NO_GPU}", marks=no_gpu_node),
    (["serve", "{tiny}", "--http-port", "70000"], "--http-port 70000: expected 1..65535"),  # was "http port 70000"
    (["serve", "{tiny}", "--grpc-port", "0"], "--grpc-port 0: expected 1..65535"),
    (["serve", "{tiny}", "--nireq", "-1"], "--nireq -1: expected 0 (the device's optimum) or more"),
    (["serve", "{tiny}", "--http-port", "9000", "--grpc-port", "9000"],
     "--http-port and --grpc-port are both 9000; give two different ports"),  # was "the http and grpc ports"
], ids=["capacity-resize", "capacity-nms", "capacity-decode", "capacity-decoder", "run-decoder", "yaml-decoder",
        "serve-http-port", "serve-grpc-port", "serve-nireq", "serve-same-ports"])
def test_a_bad_flag_value_is_named_by_its_flag(tiny, tmp_path, capsys, argv, says):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\0" * 64)
    yaml = tmp_path / "p.yaml"
    yaml.write_text(f"model: {tiny}\nsources: ['{clip}']\ndecode: vaapi\n")
    fill = {"{tiny}": str(tiny), "{clip}": str(clip), "{yaml}": str(yaml)}
    assert main([fill.get(a, a) for a in argv] + ["-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"ovq {argv[0]}: error: {says.replace('{yaml}', str(yaml))}"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "p.yaml"]
