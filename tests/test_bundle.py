"""``ovq bundle``: the deploy folder, its pinned requirements and wheel, the systemd unit, a fresh-venv run."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import random_images
from packaging.utils import canonicalize_name

from ovq.cli import main
from ovq.core.errors import ConfigError, DependencyError, ModelError, OvqError
from ovq.core.metadata import read_info
from ovq.deployment.bundle import build_bundle, check_install_dir
from ovq.deployment.loader import load_pipeline_config, parse_pipeline_config
from ovq.deployment.packaging import build_requirements_met, build_wheel, pinned_requirements, runtime_requirements
from ovq.deployment.unit import Needs, needs, service_unit
from ovq.runtime.compilation import read_model

PIPELINE = """
model: ignored/by/bundle
device: AUTO:GPU,CPU
cache: {cache}
sources:
  - {{name: line1, url: "${{OVQ_TEST_CAM:-synth://conveyor?width=96&height=64}}"}}
  - {video}
conf: 0.3
sinks:
  video: {{path: results/line1.mp4, fps: 10}}
  jsonl: results/line1.jsonl
  mqtt: {{topic_prefix: factory/line1}}
max_frames: 20
"""


def _pipeline(tmp_path: Path, video: Path) -> Path:
    path = tmp_path / "src" / "line1.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(PIPELINE.format(video=video, cache=tmp_path / "buildcache"))
    return path


def _some_video(tmp_path: Path) -> Path:
    video = tmp_path / "clip.avi"
    import cv2

    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (96, 64))
    for i in range(5):
        w.write(np.full((64, 96, 3), 40 * i, np.uint8))
    w.release()
    return video


@pytest.fixture(scope="module")
def built(tiny, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("built")
    video = _some_video(tmp)
    out = tmp / "line1-bundle"
    os.environ["OVQ_TEST_CAM"] = "rtsp://viewer:hunter2@cam/1"  # set here; must not land in the bundle
    try:
        result = build_bundle(tiny, _pipeline(tmp, video), out, install_dir=str(out))
    finally:
        del os.environ["OVQ_TEST_CAM"]
    return result, video


def test_bundle_layout(built, tiny):
    result, video = built
    out = result.out_dir
    assert sorted(result.files) == sorted([
        "README.md", "install.sh", "models/model/model.bin", "models/model/model.xml", "ovq.service", "pipeline.yaml",
        "requirements.txt", "run.sh", f"wheels/{result.wheel.name}",
    ])
    assert (out / "output").is_dir()
    assert (out / "models/model/model.bin").read_bytes() == tiny.with_suffix(".bin").read_bytes()
    assert os.access(out / "run.sh", os.X_OK)
    assert oct(out.stat().st_mode & 0o777) == "0o755"
    assert not list(out.parent.glob(".line1-bundle.*"))  # no temporary folder left behind
    shipped = yaml.safe_load((out / "pipeline.yaml").read_text())
    assert shipped["model"] == "models/model/model.xml"
    assert shipped["sinks"]["video"] == {"path": "output/line1.mp4", "fps": 10}
    assert shipped["sinks"]["jsonl"] == "output/line1.jsonl"
    assert "cache" not in shipped  # the build machine's cache folder is not the target's
    assert shipped["sources"][0]["url"] == "${OVQ_TEST_CAM:-synth://conveyor?width=96&height=64}"
    assert shipped["sources"][1] == str(video)  # a local file keeps its absolute path
    for path in out.rglob("*"):
        if path.is_file() and path.suffix != ".bin" and path.suffix != ".whl":
            assert "hunter2" not in path.read_text(), path
    # the shipped file loads as it is, relative to the bundle
    cfg = load_pipeline_config(out / "pipeline.yaml", environ={})
    assert cfg.model == out / "models/model/model.xml" and cfg.sinks.jsonl == out / "output/line1.jsonl"
    assert "OVQ_TEST_CAM=..." in (out / "README.md").read_text()


@pytest.mark.parametrize("cwd", [".", "cfg"])
def test_a_relative_local_source_is_shipped_as_the_file_the_pipeline_named(tiny, tmp_path, monkeypatch, cwd):
    # cfg/p.yaml naming ../media/clip.mp4, bundled with a relative --pipeline: the shipped source used to be
    # media/clip.mp4 (or ../media/clip.mp4 from inside cfg/), relative to the working folder, which the bundle
    # then read as a file of its own
    (tmp_path / "cfg").mkdir()
    (tmp_path / "media").mkdir()
    video = _some_video(tmp_path / "media")
    (tmp_path / "cfg" / "p.yaml").write_text(f"model: {tiny}\nsources: [{{url: ../media/clip.avi}}, ../media/clip.avi]\n")
    monkeypatch.chdir(tmp_path / cwd)
    pipeline = Path(os.path.relpath(tmp_path / "cfg" / "p.yaml"))
    result = build_bundle(None, pipeline, Path(os.path.relpath(tmp_path / "bun")))
    shipped = yaml.safe_load((result.out_dir / "pipeline.yaml").read_text())
    assert shipped["sources"] == [{"url": str(video)}, str(video)]
    cfg = load_pipeline_config(result.out_dir / "pipeline.yaml", environ={})
    assert [Path(s.url) for s in cfg.sources] == [video, video]


@pytest.fixture
def shared_tmp():
    """A folder every user may enter (pytest's own tmp folders are root's alone when CI runs as root)."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="ovq-shared-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _as_nobody(*argv: str) -> subprocess.CompletedProcess[str]:
    """``argv`` run as the unprivileged user 65534 (nobody), no supplementary groups."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("running a command as another user needs root and setpriv (CI runs as root)")
    return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv],
                          capture_output=True, text=True, errors="replace", check=False, timeout=120)


def test_a_bundle_built_under_umask_077_is_readable_by_the_service_user(tiny, shared_tmp):
    # under umask 077 models/, models/model/ and wheels/ came out 0700 and the IR 0600 (only the top-level
    # files were forced to 644/755), and install.sh copies with cp -a: the service (User=ovq) could not read
    # its model
    pipeline = shared_tmp / "p.yaml"
    pipeline.write_text(f"model: {tiny}\nsources: [synth://conveyor]\nsinks: {{jsonl: r.jsonl}}\n")
    old = os.umask(0o077)
    try:
        result = build_bundle(None, pipeline, shared_tmp / "b077")
    finally:
        os.umask(old)
    modes = {str(p.relative_to(result.out_dir)): oct(p.stat().st_mode & 0o777)
             for p in [result.out_dir, *result.out_dir.rglob("*")]}
    scripts = {"run.sh", "install.sh"}
    assert modes == {name: "0o755" if name in scripts or (result.out_dir / name).is_dir() else "0o644"
                     for name in modes}, modes
    for name in ("models/model/model.xml", "models/model/model.bin", f"wheels/{result.wheel.name}", "pipeline.yaml"):
        proc = _as_nobody("head", "-c", "1", str(result.out_dir / name))
        assert proc.returncode == 0, (name, proc.stderr)


def test_requirements_are_pinned_to_what_is_installed(built):
    result, _ = built
    lines = [ln for ln in (result.out_dir / "requirements.txt").read_text().splitlines() if not ln.startswith("#")]
    assert lines == result.requirements and len(lines) > 5
    pins = dict(ln.split("==") for ln in lines)
    for name in ("openvino", "nncf", "numpy", "opencv-python", "pyyaml", "paho-mqtt", "packaging"):
        assert pins[name] == metadata.version(name), name  # paho-mqtt: the pipeline has an MQTT sink
    assert "ovq" not in pins  # ovq comes from the wheel
    for name, version in pins.items():
        assert metadata.version(name) == version


def test_the_wheel_is_this_ovq(built):
    result, _ = built
    import ovq

    with zipfile.ZipFile(result.wheel) as zf:
        names = zf.namelist()
        meta = zf.read(next(n for n in names if n.endswith("METADATA"))).decode()
        shipped_config = zf.read("ovq/deployment/schema.py")
        shipped_unit = zf.read("ovq/deployment/templates/ovq.service")
    assert f"Version: {ovq.__version__}" in meta
    assert "ovq/deployment/bundle.py" in names and "ovq/cli/pipeline.py" in names and "ovq/py.typed" in names
    # the run script, unit and README templates are package data: an installed ovq can bundle too
    assert {"ovq/deployment/templates/run.sh", "ovq/deployment/templates/README.md"} <= set(names)
    assert shipped_unit == (Path(ovq.__file__).parent / "deployment" / "templates" / "ovq.service").read_bytes()
    assert "ovq/model/decoders/yolox.py" in names  # the stage folders, sub-packages included
    assert not [n for n in names if "__pycache__" in n]
    assert shipped_config == (Path(ovq.__file__).parent / "deployment" / "schema.py").read_bytes()


def test_run_and_install_scripts_are_valid_bash(built):
    result, _ = built
    for script in ("run.sh", "install.sh"):
        proc = subprocess.run(["bash", "-n", str(result.out_dir / script)], capture_output=True, text=True,
                              check=False)
        assert proc.returncode == 0, proc.stderr
    install = (result.out_dir / "install.sh").read_text()
    assert f"DEST=\"$ROOT\"'{result.install_dir}'" in install and "UNIT='ovq-line1-bundle.service'" in install


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("runuser") is None, reason="needs root to switch to nobody")
def test_install_script_refuses_to_run_unprivileged(built, tmp_path):
    result, _ = built
    import tempfile

    with tempfile.TemporaryDirectory() as where:  # pytest's folders are private to root
        os.chmod(where, 0o755)
        script = Path(where) / "install.sh"
        shutil.copy2(result.out_dir / "install.sh", script)
        proc = subprocess.run(["runuser", "-u", "nobody", "--", "bash", str(script)], capture_output=True, text=True,
                              check=False, timeout=60, env={**os.environ, "ROOT": str(tmp_path)})
    assert proc.returncode == 1 and proc.stderr.strip().splitlines() == [f"install.sh: run as root (sudo {script})"]
    assert list(tmp_path.iterdir()) == []  # nothing made


def test_service_unit(built):
    result, _ = built
    unit = (result.out_dir / "ovq.service").read_text()
    d = str(result.out_dir)
    for line in ("User=ovq", "Restart=on-failure", "RestartSec=10", f"WorkingDirectory={d}", f'ExecStart="{d}/run.sh"',
                 "NoNewPrivileges=yes", "ProtectSystem=strict", f'ReadWritePaths="{d}/output"',
                 "EnvironmentFile=-/etc/ovq/ovq.env", "WantedBy=multi-user.target", "CapabilityBoundingSet=",
                 "CacheDirectory=ovq", "Environment=OVQ_CACHE_DIR=%C/ovq/ov_cache", "Type=notify", "WatchdogSec=65",
                 "SystemCallFilter=@system-service mincore", "PrivateMounts=yes", "ProcSubset=pid", "IPAddressDeny=any",
                 "DevicePolicy=closed", "DeviceAllow=char-drm rw"):
        assert line in unit.splitlines(), line
    assert "char-accel" not in unit and "char-video4linux" not in unit and "PrivateNetwork" not in unit


PIPELINES = sorted((Path(__file__).parents[1] / "pipelines").glob("*.yaml"))


def _cfg(tmp_path: Path, device: str = "CPU", sources=("synth://conveyor",), **more):
    return parse_pipeline_config({"model": "m", "device": device, "sources": list(sources), **more},
                                 tmp_path / "p.yaml", resolve_env=False)


@pytest.mark.parametrize(("device", "sources", "mqtt", "expected"), [
    ("CPU", ["synth://conveyor"], False, Needs()),
    ("CPU", ["clip.mp4"], False, Needs()),
    ("CPU", [0], False, Needs(camera=True)),
    ("GPU.1", ["/dev/video2"], False, Needs(camera=True, gpu=True)),
    ("AUTO", ["synth://conveyor"], False, Needs(gpu=True, npu=True)),  # AUTO may pick either
    ("AUTO:GPU,CPU", ["rtsp://cam/1"], False, Needs(gpu=True, network=True)),
    ("NPU", ["${CAM:-synth://conveyor}"], True, Needs(npu=True, network=True)),  # a reference counts as its default
    ("CPU", ["${CAM}"], False, Needs(camera=True, network=True)),  # ...and may be anything without one
])
def test_unit_allows_the_devices_and_network_the_pipeline_uses(tmp_path, device, sources, mqtt, expected):
    cfg = _cfg(tmp_path, device, sources, **({"sinks": {"mqtt": {"url": "mqtt://10.0.0.5"}}} if mqtt else {}))
    assert needs(cfg) == expected
    unit = service_unit(cfg, "/opt/ovq/x").splitlines()
    for node, used in (("char-video4linux", expected.camera), ("char-drm", expected.gpu),
                       ("char-accel", expected.npu)):
        assert (f"DeviceAllow={node} rw" in unit) == used, node
    devices_used = expected.camera or expected.gpu or expected.npu
    assert ("PrivateDevices=yes" in unit) == (not devices_used) and ("DevicePolicy=closed" in unit) == devices_used
    assert ("PrivateNetwork=yes" in unit) == (not expected.network)
    assert ("RestrictAddressFamilies=AF_UNIX" in unit) == (not expected.network)


def test_two_bundles_on_one_pc_keep_their_own_heartbeat(tmp_path):
    # every unit had RuntimeDirectory=ovq and /run/ovq/heartbeat.json: with two pipelines installed (hall1, hall2)
    # each overwrote the other's heartbeat (ovq health said fresh with one of them hung) and stopping one removed
    # /run/ovq under the other
    cfg = _cfg(tmp_path)
    units = {d: service_unit(cfg, d).splitlines() for d in ("/opt/ovq/hall1", "/opt/ovq/hall 2")}
    assert {"RuntimeDirectory=ovq-hall1", "Environment=OVQ_HEARTBEAT_FILE=%t/ovq-hall1/heartbeat.json"} <= set(
        units["/opt/ovq/hall1"])
    assert {"RuntimeDirectory=ovq-hall-2", "Environment=OVQ_HEARTBEAT_FILE=%t/ovq-hall-2/heartbeat.json"} <= set(
        units["/opt/ovq/hall 2"])
    # and their own cameras: both read /etc/ovq/ovq.env alone, so hall 2's service ran hall 1's OVQ_CAM1_URL
    env_files = [line for line in units["/opt/ovq/hall1"] if line.startswith("EnvironmentFile=")]
    assert env_files == ["EnvironmentFile=-/etc/ovq/ovq.env", "EnvironmentFile=-/etc/ovq/ovq-hall1.env"]


def test_unit_network_allow_list_and_watchdog(tmp_path):
    cfg = _cfg(tmp_path, sources=["rtsp://cam/1"], reconnect={"stall_timeout": 10, "max_delay": 120})
    unit = service_unit(cfg, "/opt/ovq/x", allow_ip=("192.168.7.0/24", "fd00::/8")).splitlines()
    assert "IPAddressAllow=192.168.7.0/24 fd00::/8" in unit and "WatchdogSec=160" in unit
    assert "WatchdogSec=60" in service_unit(_cfg(tmp_path, reconnect=False), "/opt/ovq/x").splitlines()
    for bad in ("10.0.0.0/33", "any\nExecStartPre=/bin/sh", "example.com"):
        with pytest.raises(ConfigError, match="expected an IP address, a CIDR prefix"):
            service_unit(cfg, "/opt/ovq/x", allow_ip=(bad,))


def test_install_dir_with_a_space_works_and_odd_characters_are_refused():
    assert check_install_dir("/opt/ovq/line 1/") == "/opt/ovq/line 1"
    for bad, shown in (('/opt/"x"', '\'"\''), ("/opt/100%", "'%'"), ("/opt/$HOME", "'$'"), ("/opt/a\nb", "'\\n'"),
                       ("/opt/../etc", "'..'")):
        with pytest.raises(ConfigError, match="is not allowed there") as exc:
            check_install_dir(bad)
        assert "\n" not in str(exc.value).replace("\\n", "")
        if shown != "'..'":
            assert shown in str(exc.value), str(exc.value)


def test_a_bundle_folder_named_in_any_language_gets_an_install_dir_it_accepts(tiny, tmp_path, capsys):
    # -o "Bündel Halle (2)" was refused: "install dir '/opt/ovq/Bündel Halle (2)': '()ü' is not allowed there",
    # for a folder the user named and an install dir they never gave
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(f"model: {tiny}\nsources: [synth://conveyor]\n")
    out = tmp_path / "Bündel Halle (2)"
    assert main(["bundle", "--pipeline", str(pipeline), "-o", str(out)]) == 0
    assert "(install dir /opt/ovq/Bundel Halle -2)" in capsys.readouterr().out
    assert "WorkingDirectory=/opt/ovq/Bundel Halle -2\n" in (out / "ovq.service").read_text()
    assert "DEST=\"$ROOT\"'/opt/ovq/Bundel Halle -2'" in (out / "install.sh").read_text()
    with pytest.raises(ConfigError, match="'ü' is not allowed there"):  # one given is checked, not changed
        build_bundle(None, pipeline, tmp_path / "b", install_dir="/opt/ovq/Bündel")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("pipeline", PIPELINES, ids=lambda p: p.stem)
def test_every_shipped_pipeline_gets_a_unit_with_exposure_at_most_2(pipeline, tmp_path):
    install = tmp_path / "ovq bundle"  # a space: quoted in ExecStart/ReadWritePaths, %-escaped in Documentation
    install.mkdir()
    (install / "run.sh").write_text("#!/bin/sh\n")
    (install / "run.sh").chmod(0o755)
    unit = tmp_path / "ovq.service"
    unit.write_text(service_unit(load_pipeline_config(pipeline, resolve_env=False), str(install)))
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False,
                          timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "" and proc.stderr.strip() == "", proc.stderr
    proc = subprocess.run(["systemd-analyze", "security", "--offline=true", str(unit)],
                          capture_output=True, text=True, check=False, timeout=60)
    match = re.search(r"Overall exposure level for ovq.service: ([0-9.]+)", proc.stdout + proc.stderr)
    assert match is not None, proc.stdout + proc.stderr
    assert float(match.group(1)) <= 2.0, proc.stdout
    # the quoted path is one path: without the program, verify names it whole
    (install / "run.sh").unlink()
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False,
                          timeout=60)
    assert proc.returncode != 0 and f"{install}/run.sh is not executable" in proc.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_service_unit_passes_systemd_analyze_verify(built, tmp_path):
    result, _ = built
    proc = subprocess.run(["systemd-analyze", "verify", str(result.out_dir / "ovq.service")],
                          capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "" and proc.stderr.strip() == ""
    # the check has teeth: a typo fails it
    cfg = load_pipeline_config(result.pipeline, environ={})
    bad = tmp_path / "ovq.service"
    bad.write_text(service_unit(cfg, str(result.out_dir)).replace("Restart=on-failure", "Restart=on-fial"))
    proc = subprocess.run(["systemd-analyze", "verify", str(bad)], capture_output=True, text=True, check=False, timeout=60)
    assert "Failed to parse service restart specifier" in proc.stderr


def test_existing_output_needs_force_and_failures_leave_nothing(tiny, tmp_path):
    video = _some_video(tmp_path)
    pipeline = _pipeline(tmp_path, video)
    out = tmp_path / "b"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    with pytest.raises(ConfigError, match="exists and is not empty; pass --force"):
        build_bundle(tiny, pipeline, out)
    with pytest.raises(ModelError, match="no such file or folder"):
        build_bundle(tmp_path / "missing.xml", pipeline, out, overwrite=True)
    with pytest.raises(DependencyError, match="expected an ovq wheel file"):
        build_bundle(tiny, pipeline, out, overwrite=True, wheel=video)
    assert sorted(p.name for p in out.iterdir()) == ["stale.txt"]  # untouched by the failures
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".b.")] == []
    result = build_bundle(tiny, pipeline, out, overwrite=True)
    assert not (out / "stale.txt").exists() and (out / "run.sh").exists()
    assert result.install_dir == "/opt/ovq/b" and "WorkingDirectory=/opt/ovq/b" in (out / "ovq.service").read_text()
    with pytest.raises(ConfigError, match="hides home folders"):
        build_bundle(tiny, pipeline, tmp_path / "c", install_dir="/home/me/ovq")
    with pytest.raises(ConfigError, match="expected an unprivileged user"):
        build_bundle(tiny, pipeline, tmp_path / "c", user="root")


def test_an_output_that_holds_an_input_or_the_working_folder_is_refused_untouched(tiny, tmp_path, monkeypatch,
                                                                                 capsys):
    # `-o p2 --force` with p2/p.yaml deleted the pipeline, its model and every other file in p2; `-o . --force`
    # failed with "Device or resource busy" and left an empty ..old-* folder
    work = tmp_path / "p2"
    (work / "media").mkdir(parents=True)
    shutil.copytree(tiny.parent, work / "model")
    video = _some_video(work / "media")
    (work / "p.yaml").write_text(f"model: model\nsources: [media/{video.name}]\n")
    (work / "notes.txt").write_text("mine")
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    cases = [  # (working folder, pipeline, -o, what the error says)
        (tmp_path, "p2/p.yaml", "p2", "holds p2/p.yaml, an input of this bundle"),
        (work, "p.yaml", ".", "is the current folder"), (work, "p.yaml", "..", "holds the current folder"),
        (work, "p.yaml", "media", "holds media/clip.avi"), (work, "p.yaml", "model", "holds model"),
    ]
    for cwd, pipeline, out, says in cases:
        monkeypatch.chdir(cwd)
        assert main(["bundle", "--pipeline", pipeline, "-o", out, "--force"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"ovq bundle: error: {out}: {says}"), err
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OvqError, match=f"^{tmp_path}/afile/sub: {tmp_path}/afile is not a folder$"):
        build_bundle(None, work / "p.yaml", tmp_path / "afile" / "sub")  # was "afile: File exists"


def test_quantized_model_is_reused_when_fresh_and_refused_with_no_quantize(tiny, tmp_path):
    pipeline = tmp_path / "q.yaml"
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.jpg").write_bytes(b"x")
    pipeline.write_text(f"model: {tiny}\nquantize: {{data: data, output: int8}}\nsources: [synth://conveyor]\n")
    with pytest.raises(ConfigError, match=r"quantize.output .*int8 does not exist yet; bundle without --no-quantize"):
        build_bundle(tiny, pipeline, tmp_path / "b1", quantize=False)
    for path in (data / "a.jpg", data):
        os.utime(path, (1e9, 1e9))
    shutil.copytree(tiny.parent, tmp_path / "int8")  # stands for the quantized IR: newer than model and data
    for path in (tmp_path / "int8").iterdir():
        os.utime(path)  # now
    result = build_bundle(None, pipeline, tmp_path / "b2", quantize=False)  # MODEL: the pipeline's
    assert result.model_xml == tmp_path / "b2/models/model-int8/model.xml"
    shipped = yaml.safe_load((tmp_path / "b2/pipeline.yaml").read_text())
    assert shipped["model"] == "models/model-int8/model.xml" and "quantize" not in shipped
    assert (tmp_path / "b2/models/model/model.xml").exists()  # the float model too
    (data / "b.jpg").write_bytes(b"y")  # the data changed after quantizing
    os.utime(data / "b.jpg", (2e9, 2e9))
    with pytest.raises(ConfigError, match="is older than"):
        build_bundle(tiny, pipeline, tmp_path / "b3", quantize=False)
    with pytest.raises(ConfigError, match="quantizes its own model"):
        build_bundle(tmp_path / "int8", pipeline, tmp_path / "b3")
    assert not (tmp_path / "b3").exists()


def test_bundle_quantizes_the_pipeline_model_then_reuses_it(tiny, tmp_path, ovq_log):
    random_images(tmp_path / "calib", n=4)
    pipeline = tmp_path / "q.yaml"
    pipeline.write_text(f"model: {tiny}\nquantize: {{data: calib, output: out/int8}}\nsources: [synth://conveyor]\n")
    result = build_bundle(None, pipeline, tmp_path / "b1")
    made = tmp_path / "out/int8/model.xml"
    assert made.exists() and any("quantizing for the bundle" in m for m in ovq_log.messages())
    shipped = result.out_dir / "models/model-int8/model.xml"
    assert shipped.read_bytes() == made.read_bytes()
    assert read_info(read_model(shipped)).quantization  # an INT8 model with its provenance
    before = made.stat().st_mtime_ns
    build_bundle(None, pipeline, tmp_path / "b2")
    assert made.stat().st_mtime_ns == before  # up to date: reused, not quantized again


def _hide(*names):
    """An installed-distribution lookup that pretends ``names`` are not installed (a plain ``pip install ovq``)."""
    def lookup(name):
        if canonicalize_name(name) in names:
            raise metadata.PackageNotFoundError(name)
        return metadata.distribution(name)
    return lookup


def test_pinned_requirements():
    pins = pinned_requirements(["PyYAML>=6", "matplotlib", "nothere; python_version < '3'"])
    names = [p.split("==")[0] for p in pins]
    assert f"pyyaml=={metadata.version('PyYAML')}" in pins
    assert "pillow" in names and "numpy" in names  # matplotlib's own dependencies, pinned too
    assert "nothere" not in names and names == sorted(names)
    assert "paho-mqtt" not in [p.split("==")[0] for p in pinned_requirements(["paho-mqtt; extra == 'mqtt'"])]
    assert pinned_requirements(["paho-mqtt; extra == 'mqtt'"], extras=["mqtt"]) == [
        f"paho-mqtt=={metadata.version('paho-mqtt')}"]
    with pytest.raises(DependencyError, match="cannot pin surely-not-installed-pkg: not installed here"):
        pinned_requirements(["surely-not-installed-pkg>=1"], resolve_missing=False)
    with pytest.raises(DependencyError, match="does not satisfy"):
        pinned_requirements(["numpy<1"])


def test_missing_extras_are_pinned_from_the_package_index(tmp_path):
    """What a plain install lacks (paho-mqtt, trackers and their own dependencies) is resolved by pip from the
    package index, the packages pinned from this install held at their versions. Needs the index (CI has it)."""
    hidden = {"paho-mqtt", "trackers"}
    held = dict(p.split("==") for p in pinned_requirements(["numpy>=1.26", "opencv-python"]))
    pins = dict(p.split("==") for p in pinned_requirements(
        ["numpy>=1.26", "opencv-python", "paho-mqtt>=2.0; extra == 'mqtt'", "trackers>=2.6; extra == 'track'"],
        extras=["mqtt", "track"], lookup=_hide(*hidden)))
    assert hidden <= set(pins) and int(pins["paho-mqtt"].split(".")[0]) >= 2
    assert "supervision" in pins  # trackers' own dependency, resolved with it
    for name, version in held.items():
        assert pins[name] == version, name  # the constraints held


def test_no_package_index_is_one_line_that_says_how(monkeypatch, tmp_path):
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # this machine's pip.conf adds local indexes
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))  # empty: nothing to find, as on a PC without network
    with pytest.raises(DependencyError) as exc:
        pinned_requirements(["paho-mqtt>=2.0"], lookup=_hide("paho-mqtt"))
    msg = str(exc.value)
    assert "\n" not in msg and "cannot pin paho-mqtt>=2.0: not installed here" in msg
    assert "pip install paho-mqtt>=2.0" in msg


def test_cli_bundle(tiny, tmp_path, capsys):
    video = _some_video(tmp_path)
    assert main(["bundle", str(tiny), "--pipeline", str(_pipeline(tmp_path, video)), "-o", str(tmp_path / "b"),
                 "-q"]) == 0
    out = capsys.readouterr().out
    assert f"wrote {tmp_path / 'b'} (9 files)" in out and "install dir /opt/ovq/b" in out
    assert main(["bundle", str(tiny), "--pipeline", str(tmp_path / "none.yaml"), "-o", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "none.yaml: no such file" in err[0]
    # MODEL is optional: the pipeline names one
    pipeline = tmp_path / "own.yaml"
    pipeline.write_text(f"model: {tiny.parent}\nsources: [synth://conveyor]\nsinks: {{jsonl: r.jsonl}}\n")
    assert main(["bundle", "--pipeline", str(pipeline), "-o", str(tmp_path / "d"), "-q",
                 "--install-dir", "/opt/ovq/line 1", "--allow-ip", "10.1.0.0/16"]) == 0
    unit = (tmp_path / "d/ovq.service").read_text()
    assert 'ExecStart="/opt/ovq/line 1/run.sh"' in unit and "PrivateNetwork=yes" in unit
    assert (tmp_path / "d/models/model/model.bin").read_bytes() == tiny.with_suffix(".bin").read_bytes()
    capsys.readouterr()
    for bad, says in ((["--install-dir", "/opt/ovq/$x"], "'$' is not allowed there"),
                      (["--allow-ip", "0.0.0.0/99"], "expected an IP address")):
        assert main(["bundle", "--pipeline", str(pipeline), "-o", str(tmp_path / "e"), *bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and says in err[0], err
        assert not (tmp_path / "e").exists()


def _stub(bin_dir: Path, name: str, log: Path) -> None:
    """A stand-in for a system tool that needs a running systemd or changes /etc/passwd: logs its arguments."""
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / name).write_text(f'#!/bin/sh\necho "{name} $*" >> "{log}"\n')
    (bin_dir / name).chmod(0o755)


def _group_exists(name: str) -> bool:
    import grp

    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="install.sh runs as root (CI does)")
def test_offline_bundle_installs_without_network_and_runs_60_frames(tiny, tmp_path, shared_tmp):
    """The real thing, as on a PC without network: bundle with --offline (pip downloads every pinned wheel),
    install.sh (service user, copy, run.sh --setup, unit) with PIP_NO_INDEX=1 and no pip.conf, so anything
    missing from wheels/ fails the install; then run.sh --max-frames 60 in the fresh venv as the service user.
    Built and installed under umask 077: before, models/ and wheels/ stayed 0700 through cp -a, and the .venv
    root made under that umask was root's alone, so the service user could read neither."""
    pipeline = tmp_path / "line1.yaml"
    pipeline.write_text(f"model: {tiny}\ndevice: CPU\ntrack: true\n"
                        "sources: [{name: belt, url: 'synth://conveyor?width=96&height=64&fps=60'}]\n"
                        "sinks: {jsonl: belt.jsonl}\n")
    out = tmp_path / "bundle"
    old_umask = os.umask(0o077)
    try:
        result = build_bundle(None, pipeline, out, install_dir="/opt/ovq/line 1", user="nobody", offline=True)
    finally:
        os.umask(old_umask)
    assert (out / "wheels/OFFLINE").exists() and "trackers" in {p.split("==")[0] for p in result.requirements}
    root, log, bin_dir = shared_tmp / "root", tmp_path / "calls.log", tmp_path / "bin"
    for tool in ("systemctl", "useradd", "usermod"):
        _stub(bin_dir, tool, log)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "PIP_"))}
    env.update(PATH=f"{bin_dir}:{env['PATH']}", ROOT=str(root), PYTHON=sys._base_executable, PIP_NO_INDEX="1",
               PIP_CONFIG_FILE=os.devnull, PIP_FIND_LINKS=str(tmp_path / "nothing"))
    proc = subprocess.run(["sh", "-c", 'umask 077 && exec "$0" --no-start', str(out / "install.sh")], cwd=tmp_path,
                          env=env, capture_output=True, text=True, check=False, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    dest = root / "opt/ovq/line 1"
    groups = [f"usermod -aG {g} nobody" for g in ("video", "render") if _group_exists(g)]
    assert log.read_text().splitlines() == [*groups, "systemctl daemon-reload", "systemctl enable ovq-line-1.service"]
    assert (root / "etc/systemd/system/ovq-line-1.service").read_text() == (out / "ovq.service").read_text()
    assert oct((root / "etc/ovq/ovq.env").stat().st_mode & 0o777) == "0o600"
    assert oct((root / "etc/ovq/ovq-line-1.env").stat().st_mode & 0o777) == "0o600"
    assert (dest / "output").owner() == "nobody" and (dest / "run.sh").owner() == "root"
    # the service user reads every file and enters every folder (links skipped: .venv/bin/python points at
    # this machine's interpreter)
    unreadable = _as_nobody("find", str(dest), "!", "-type", "l", "!", "-readable", "-print")
    assert unreadable.returncode == 0 and not unreadable.stdout, unreadable.stdout + unreadable.stderr
    # and runs it, where it may run this interpreter (a pyenv under /root is root's alone)
    service = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    if _as_nobody("sh", "-c", 'exec "$0" -c ""', sys._base_executable).returncode != 0:  # as the venv runs it
        service = []
    (shared_tmp / "home").mkdir()
    (shared_tmp / "home").chmod(0o777)
    env.update(HOME=str(shared_tmp / "home"), OVQ_CACHE_DIR=str(shared_tmp / "home/cache"))
    proc = subprocess.run([*service, str(dest / "run.sh"), "--max-frames", "60", "--json", "-q"], cwd=shared_tmp,
                          env=env, capture_output=True, text=True, check=False, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "installing" not in proc.stderr  # install.sh set the venv up
    summary = json.loads(proc.stdout)
    assert summary["frames"] == 60 and summary["streams"]["belt"]["frames"] == 60
    records = [json.loads(line) for line in (dest / "output/belt.jsonl").read_text().splitlines()]
    assert len(records) == 60 and {r["stream"] for r in records} == {"belt"}
    where = subprocess.run([str(dest / ".venv/bin/python"), "-c", "import ovq, trackers; print(ovq.__file__)"],
                           cwd=shared_tmp, env=env, capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(dest / ".venv"))  # the bundle's ovq (and the track extra), not this source tree


def test_two_builds_of_the_same_tree_give_the_same_wheel(tmp_path, monkeypatch):
    """The bundle's wheel (and so its checksum) changed on every build: its entries carried the build's clock,
    and a build under another umask gave other modes. Two builds, a second apart and under umasks 022 and 077,
    now give the same bytes, dated SOURCE_DATE_EPOCH when it is set."""
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    first = build_wheel(tmp_path / "a")
    old = os.umask(0o077)
    try:
        second = build_wheel(tmp_path / "b")
    finally:
        os.umask(old)
    assert first.name == second.name and first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(first) as zf:
        infos = zf.infolist()
        assert zf.testzip() is None and {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
        assert {(i.external_attr >> 16) & 0o777 for i in infos} == {0o644}
        assert infos[-1].filename.endswith(".dist-info/RECORD") and "ovq/__init__.py" in zf.namelist()
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")  # 2023-11-14 22:13:20 UTC
    with zipfile.ZipFile(build_wheel(tmp_path / "c")) as zf:
        assert {i.date_time for i in zf.infolist()} == {(2023, 11, 14, 22, 13, 20)}


def test_build_requirements_decide_build_isolation(tmp_path):
    def project(requires: str) -> Path:
        path = tmp_path / "pyproject.toml"
        path.write_text(f'[build-system]\nrequires = [{requires}]\nbuild-backend = "setuptools.build_meta"\n')
        return path

    have = metadata.version("setuptools")
    assert build_requirements_met(project(f'"setuptools>={have}"'))
    assert not build_requirements_met(project(f'"setuptools>{have}"'))
    assert not build_requirements_met(project('"setuptools", "surely-not-installed-backend"'))
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    assert not build_requirements_met(tmp_path / "pyproject.toml")


def test_pipeline_features_add_their_packages(tmp_path):
    def cfg(**changes):
        return parse_pipeline_config({"model": "m", "sources": [0], **changes}, tmp_path / "p.yaml")

    core = ["numpy>=1.26", "paho-mqtt>=2.0; extra == 'mqtt'"]
    assert runtime_requirements(cfg(), core) == (core, [])
    assert runtime_requirements(cfg(sinks={"mqtt": True}), core) == (core, ["mqtt"])  # through the extra
    assert runtime_requirements(cfg(track=True), core) == ([*core, "trackers"], [])  # no 'track' extra declared
    assert runtime_requirements(cfg(track=True), [*core, "trackers; extra == \"track\""])[1] == ["track"]
    requires, extras = runtime_requirements(cfg(track=True, sinks={"mqtt": True}), core)
    pins = pinned_requirements(requires, extras=extras)
    names = {p.split("==")[0] for p in pins}
    assert {"trackers", "supervision", "paho-mqtt", "numpy"} <= names
    # the live view (serve:) needs the web extra's packages and the network
    served = cfg(serve={"listen": 8080})
    assert runtime_requirements(served, core) == ([*core, "aiohttp", "prometheus-client"], [])
    assert runtime_requirements(served, [*core, "aiohttp>=3.9; extra == 'web'"])[1] == ["web"]
    assert needs(served).network and not needs(cfg()).network


@pytest.mark.parametrize("sinks", ["{jsonl: /dev/stdout}", "{jsonl: {path: /dev/stderr}}", "{video: /dev/null}"])
def test_a_sink_to_a_pipe_or_device_is_refused_not_shipped_as_a_file(built, tiny, tmp_path, capsys, sinks):
    # `jsonl: /dev/stdout` was shipped as `output/stdout`, a file that grew for as long as the service ran (and
    # without the warning); left as it was it fails too: a service's standard output is the journal's socket
    result, _ = built
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(f"model: {tiny.parent}\nsources: [synth://conveyor]\nsinks: {sinks}\n")
    out = tmp_path / "b"
    assert main(["bundle", "--pipeline", str(pipeline), "-o", str(out), "--wheel", str(result.wheel)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    kind = "jsonl" if "jsonl" in sinks else "video"
    assert len(err) == 1 and err[0].startswith(f"ovq bundle: error: {pipeline}: sinks.{kind}: /dev/"), err
    assert "a service writes its results in the bundle's output/ folder" in err[0]
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["p.yaml"]


def test_sink_paths_with_environment_references_are_shipped_as_names_in_output(built, tiny, tmp_path, capsys):
    # `video: ${OUT:-out/v.mp4}` was shipped as `output/v.mp4}` (the name cut inside the reference)
    result, _ = built
    pipeline = tmp_path / "p.yaml"
    shipped = {"'${OUT_DIR:-out}/cam-${LINE:-1}.mp4'": "output/cam-${LINE:-1}.mp4",
               "'${OUT_DIR}/det-${NAME:-x}.jsonl'": "output/det-${NAME:-x}.jsonl"}
    for sink, name in shipped.items():
        key = "video" if ".mp4" in sink else "jsonl"
        pipeline.write_text(f"model: {tiny.parent}\nsources: [synth://conveyor]\nsinks: {{{key}: {sink}}}\n")
        out = tmp_path / "b"
        assert main(["bundle", "--pipeline", str(pipeline), "-o", str(out), "--wheel", str(result.wheel), "--force"]) == 0
        assert yaml.safe_load((out / "pipeline.yaml").read_text())["sinks"] == {key: name}
    for sink in ("'${OUT:-out/v.mp4}'", "'${OUT}'", "{path: '${OUT:-a}/${B:-x/v.mp4}', segment: 10m}", "'a/${V:-v.mp4}'"):
        pipeline.write_text(f"model: {tiny.parent}\nsources: [synth://conveyor]\nsinks: {{video: {sink}}}\n")
        capsys.readouterr()
        assert main(["bundle", "--pipeline", str(pipeline), "-o", str(tmp_path / "c"), "--wheel", str(result.wheel)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"ovq bundle: error: {pipeline}: sinks.video: "), err
        assert "a path from the environment" in err[0] and not (tmp_path / "c").exists()


def test_a_model_path_from_the_environment_is_found_here_and_other_references_stay(built, tiny, tmp_path, capsys,
                                                                                    monkeypatch):
    # `ovq pipeline` read model: ${MODELS}/det; `ovq bundle` looked for a folder literally named ${MODELS}
    result, _ = built
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text("model: ${OVQ_TEST_MODELS}/" + tiny.parent.name + "\nsources: ['${OVQ_TEST_CAM:-synth://conveyor}']\n")
    monkeypatch.setenv("OVQ_TEST_MODELS", str(tiny.parent.parent))
    monkeypatch.setenv("OVQ_TEST_CAM", "rtsp://viewer:hunter2@cam/1")
    out = tmp_path / "b"
    assert main(["bundle", "--pipeline", str(pipeline), "-o", str(out), "--wheel", str(result.wheel)]) == 0
    shipped = yaml.safe_load((out / "pipeline.yaml").read_text())
    assert shipped == {"model": "models/model/model.xml", "sources": ["${OVQ_TEST_CAM:-synth://conveyor}"]}
    readme = (out / "README.md").read_text()  # what the target's env file needs: the camera, not the build's model
    assert "OVQ_TEST_CAM=..." in readme and "OVQ_TEST_MODELS" not in readme
    monkeypatch.delenv("OVQ_TEST_MODELS")
    capsys.readouterr()
    assert main(["bundle", "--pipeline", str(pipeline), "-o", str(tmp_path / "c"), "--wheel", str(result.wheel)]) == 2
    assert capsys.readouterr().err.strip() == (f"ovq bundle: error: {pipeline}: model: environment variable "
                                               "OVQ_TEST_MODELS is not set (referenced as ${OVQ_TEST_MODELS})")


def test_bundle_warns_of_a_max_frames_that_ends_the_service_for_good(built, tiny, tmp_path, capsys):
    # conveyor_demo.yaml's max_frames: 300 went into the service as it was: it stopped after 10 s with exit code
    # 0, which Restart=on-failure does not restart, and said nothing
    result, _ = built
    for name, extra in (("ends", "max_frames: 300\n"), ("runs", "max_frames: null\n")):
        pipeline = tmp_path / f"{name}.yaml"
        pipeline.write_text(f"model: {tiny.parent}\nsources: [synth://conveyor]\n{extra}")
        assert main(["bundle", "--pipeline", str(pipeline), "-o", str(tmp_path / name), "--wheel", str(result.wheel)]) == 0
        err = capsys.readouterr().err
        warned = "ends.yaml: max_frames: the service would stop after 300 frames a stream and not be restarted"
        assert (warned in err) == (name == "ends"), err
    assert "Restart=on-failure" in (tmp_path / "ends" / "ovq.service").read_text()


def test_mqtt_tls_files_are_shipped_as_the_files_the_pipeline_named(built, tiny, tmp_path, capsys, monkeypatch):
    # ca_file: certs/ca.pem went into the bundle as it was, naming a file the bundle does not hold: the shipped
    # pipeline failed its own check on the target ("certs/ca.pem: no such file")
    result, _ = built
    (tmp_path / "src" / "certs").mkdir(parents=True)
    (tmp_path / "src" / "certs" / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    pipeline = tmp_path / "src" / "p.yaml"
    pipeline.write_text(f"model: {tiny.parent}\nsources: [synth://conveyor]\n"
                        "sinks: {mqtt: {url: 'mqtts://broker.local:8883', ca_file: certs/ca.pem}}\n")
    monkeypatch.chdir(tmp_path)
    assert main(["bundle", "--pipeline", "src/p.yaml", "-o", "b", "--wheel", str(result.wheel)]) == 0
    shipped = yaml.safe_load((tmp_path / "b" / "pipeline.yaml").read_text())["sinks"]["mqtt"]
    assert shipped == {"url": "mqtts://broker.local:8883", "ca_file": str(tmp_path / "src" / "certs" / "ca.pem")}
    assert "sinks.mqtt.ca_file" in capsys.readouterr().err
    load_pipeline_config(tmp_path / "b" / "pipeline.yaml")  # loads (and finds the file) where it is


def test_bundle_warns_of_outputs_that_grow_for_as_long_as_the_service_runs(built, tiny, tmp_path, capsys):
    """A service writes for months: one video (its index only at the end) and one JSON Lines file fill the disk."""
    result, _ = built
    cases = {
        "grows": "{video: out/a.mp4, jsonl: {path: out/a.jsonl}}",
        "rolls": "{video: {path: out/a.mp4, segment: 10m, keep: 144}, jsonl: {path: out/a.jsonl, rotate: 1h, keep: 48}}",
    }
    for name, sinks in cases.items():
        pipeline = tmp_path / f"{name}.yaml"
        pipeline.write_text(f"model: {tiny.parent}\nsources: [synth://conveyor]\nsinks: {sinks}\n")
        assert main(["bundle", "--pipeline", str(pipeline), "-o", str(tmp_path / name), "--wheel", str(result.wheel)]) == 0
        err = capsys.readouterr().err
        readme = (tmp_path / name / "README.md").read_text()
        shipped = yaml.safe_load((tmp_path / name / "pipeline.yaml").read_text())["sinks"]
        if name == "grows":
            assert "WARNING" in err and "grows.yaml: sinks.video: the service would write one video file" in err
            assert "set sinks.video.segment (e.g. 10m) and keep" in err
            assert "grows.yaml: sinks.jsonl: the service would write one JSON Lines file" in err
            assert "| `output/` | what the pipeline writes: `output/a.mp4`, `output/a.jsonl` |" in readme
        else:
            assert "the service would write one" not in err
            assert "`output/a.*.mp4` (10m segments, the newest 144 kept)" in readme
            assert "`output/a.*.jsonl` (1h files, the newest 48 kept; `output/a.jsonl` is the one in progress)" in readme
            assert shipped == {"video": {"path": "output/a.mp4", "segment": "10m", "keep": 144},
                               "jsonl": {"path": "output/a.jsonl", "rotate": "1h", "keep": 48}}


@pytest.mark.skipif(os.geteuid() != 0, reason="install.sh runs as root (CI does)")
def test_install_refuses_to_replace_a_folder_that_is_not_an_earlier_bundle(tiny, tmp_path):
    """--install-dir /opt/ovq (the folder of every bundle, not this one's): install.sh replaced it whole and the
    other bundles in it were deleted; --install-dir / was accepted."""
    pipeline = tmp_path / "line1.yaml"
    pipeline.write_text(f"model: {tiny}\ndevice: CPU\nsources: ['synth://conveyor']\n")
    with pytest.raises(ConfigError, match="install dir '/': the bundle needs a folder of its own"):
        build_bundle(None, pipeline, tmp_path / "b0", install_dir="/", user="nobody")
    bundle = tmp_path / "b1"
    build_bundle(None, pipeline, bundle, install_dir="/opt/ovq", user="nobody")
    (bundle / "run.sh").write_text("#!/bin/sh\nexit 0\n")
    root, log, bin_dir = tmp_path / "root", tmp_path / "calls.log", tmp_path / "bin"
    for tool in ("systemctl", "useradd", "usermod"):
        _stub(bin_dir, tool, log)
    other = root / "opt/ovq/hall2/pipeline.yaml"  # another bundle, installed before
    other.parent.mkdir(parents=True)
    other.write_text("model: m\n")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "ROOT": str(root)}
    proc = subprocess.run([str(bundle / "install.sh")], cwd=tmp_path, env=env, capture_output=True, text=True,
                          check=False, timeout=120)
    assert proc.returncode == 1 and proc.stderr.startswith(
        f"install.sh: {root}/opt/ovq holds files and is not an earlier ovq bundle (no ovq.service)"), proc.stderr
    assert other.read_text() == "model: m\n" and sorted(p.name for p in (root / "opt").iterdir()) == ["ovq"]
    assert not log.exists()  # nothing stopped, no user made


@pytest.mark.skipif(os.geteuid() != 0, reason="install.sh runs as root (CI does)")
def test_installing_over_an_earlier_bundle_replaces_it_keeps_its_results_and_restarts_the_unit(tiny, tmp_path):
    """cp -a over the earlier install left its files (a model the new bundle no longer has, old wheels, its .venv),
    and `systemctl enable --now` left the running unit on the old code and model until a reboot."""
    pipeline = tmp_path / "line1.yaml"
    pipeline.write_text(f"model: {tiny}\ndevice: CPU\nsources: ['synth://conveyor']\nsinks: {{jsonl: belt.jsonl}}\n")
    first, second = tmp_path / "first", tmp_path / "second"
    build_bundle(None, pipeline, first, install_dir="/opt/ovq/line1", user="nobody")
    build_bundle(None, pipeline, second, install_dir="/opt/ovq/line1", user="nobody")
    for bundle in (first, second):  # the venv set-up (pip) is the offline test's; this one is about the files
        (bundle / "run.sh").write_text("#!/bin/sh\nexit 0\n")
    (first / "models" / "model-int8").mkdir()  # what only the earlier bundle shipped
    (first / "models" / "model-int8" / "model.xml").write_text("<old/>")
    root, log, bin_dir = tmp_path / "root", tmp_path / "calls.log", tmp_path / "bin"
    for tool in ("systemctl", "useradd", "usermod"):  # systemctl's stand-in says 'active' to is-active
        _stub(bin_dir, tool, log)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "ROOT": str(root)}

    def install(bundle: Path) -> None:
        proc = subprocess.run([str(bundle / "install.sh")], cwd=tmp_path, env=env, capture_output=True, text=True,
                              check=False, timeout=120)
        assert proc.returncode == 0, proc.stderr

    install(first)
    dest = root / "opt/ovq/line1"
    (dest / "output" / "belt.jsonl").write_text('{"frame_index": 0}\n')  # what the service wrote meanwhile
    log.write_text("")
    install(second)
    assert not (dest / "models" / "model-int8").exists()
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*")) == \
        sorted([*(p.relative_to(second).as_posix() for p in second.rglob("*")), "output/belt.jsonl"])
    assert (dest / "output" / "belt.jsonl").read_text() == '{"frame_index": 0}\n'
    assert (dest / "output").owner() == "nobody"
    assert [p.name for p in dest.parent.iterdir()] == ["line1"]  # no .new- or .old- folder left
    calls = log.read_text().splitlines()
    unit = "ovq-line1.service"
    assert calls.index(f"systemctl stop {unit}") < calls.index(f"systemctl enable --now {unit}")
