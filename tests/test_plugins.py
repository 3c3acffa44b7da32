"""Decoder plug-ins: real packages, built and pip-installed here, found by the stock CLI through entry points.

Each package is installed with ``pip install --target`` into a temporary folder (nothing is installed into the
shared environment, so there is nothing to uninstall); the CLI runs as ``python -m ovq`` with that folder on
``PYTHONPATH``, which is how Python finds an installed package's metadata and its entry points.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import heads
import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from ovq.core.metadata import read_info

pytestmark = pytest.mark.slow  # pip builds and installs two packages; each CLI call is a fresh interpreter

ROOT = Path(__file__).resolve().parents[1]


def readme_example() -> tuple[str, str]:
    """The plug-in of the README's "Bring your own detector": its Python module and its pyproject.toml, as printed
    there (so the documented example is the one that is tested)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Bring your own detector"):]
    section = section[: section.index("\n## ", 5)]
    blocks = re.findall(r"```(\w+)\n(.*?)```", section, flags=re.DOTALL)
    python = next(code for lang, code in blocks if lang == "python")
    toml = next(code for lang, code in blocks if lang == "toml")
    return python, toml


# The plug-in: a CenterPoint-style family with two outputs no built-in family takes (the README's example).
CENTERPOINT, CENTERPOINT_TOML = readme_example()

# A second package, with what can go wrong: a family claiming what "yolo" claims, a built-in name, a broken import.
TROUBLE = '''
from ovq.model.decoders.yolo import YoloDecoder


class TwinDecoder(YoloDecoder):
    family = "yolo_twin"


class FakeYolo(YoloDecoder):
    family = "yolo"


class NoDecoder:
    family = "nodecoder"


class Raiser(YoloDecoder):
    family = "raiser"

    def matches(self, facts):
        raise RuntimeError("cannot look at these outputs")
'''


def _package(root: Path, name: str, module: str, code: str, entry_points: dict[str, str]) -> Path:
    src = root / f"{name}-src"
    (src / module).mkdir(parents=True)
    (src / module / "__init__.py").write_text(textwrap.dedent(code))
    eps = "\n".join(f'{k} = "{v}"' for k, v in entry_points.items())
    (src / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "{name}"
        version = "0.1.0"
        dependencies = []

        [tool.setuptools]
        packages = ["{module}"]

        [project.entry-points."ovq.decoders"]
        """) + eps + "\n")
    return src


def _install(src: Path, target: Path) -> Path:
    """``pip install`` the package at ``src`` into ``target`` (offline: the installed setuptools builds it)."""
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
           "--target", str(target), str(src)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return target


@pytest.fixture(scope="module")
def plugin(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("plugin")
    src = _package(root, "ovq-centerpoint", "ovq_centerpoint", CENTERPOINT,
                   {"centerpoint": "ovq_centerpoint:CenterPointDecoder"})
    return _install(src, root / "site")


@pytest.fixture(scope="module")
def trouble(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("trouble")
    src = _package(root, "ovq-trouble", "ovq_trouble", TROUBLE, {
        "yolo_twin": "ovq_trouble:TwinDecoder", "yolo": "ovq_trouble:FakeYolo",
        "nodecoder": "ovq_trouble:NoDecoder", "gone": "ovq_trouble_missing:Gone", "raiser": "ovq_trouble:Raiser",
    })
    return _install(src, root / "site")


def ovq(*args: str, site: Path | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The stock CLI in a fresh interpreter, with ``site`` (an installed plug-in) importable."""
    env = dict(os.environ)
    paths = [str(site)] if site else []
    env["PYTHONPATH"] = os.pathsep.join([*paths, *filter(None, [env.get("PYTHONPATH")])])
    return subprocess.run([sys.executable, "-m", "ovq", *args], capture_output=True, text=True, check=False,
                          timeout=600, env=env, cwd=cwd)


# Two planted detections on a 4x4 grid of a 64x64 input: (cell, class, score, x1 y1 x2 y2 in input pixels).
PLANTED = [((1, 2), 0, 0.9, (8, 4, 40, 20)), ((3, 0), 1, 0.8, (2, 40, 18, 62))]


def centerpoint_ir(path: Path) -> Path:
    """A real graph whose outputs are the planted heatmap and boxes (plus 0 x the image, so it reads it)."""
    heat = np.zeros((1, 2, 4, 4), np.float32)
    boxes = np.zeros((1, 4, 4, 4), np.float32)
    for (y, x), cls, score, box in PLANTED:
        heat[0, cls, y, x] = score
        boxes[0, :, y, x] = box
    x = ops.parameter([1, 3, 64, 64], ov.Type.f32, name="images")
    zero = ops.multiply(ops.reduce_mean(x, ops.constant(np.array([1, 2, 3], np.int64)), keep_dims=True),
                        ops.constant(np.float32(0)))
    model = ov.Model([ops.add(ops.constant(heat), zero), ops.add(ops.constant(boxes), zero)], [x], "centerpoint")
    model.set_rt_info("bolt nut", ["model_info", "labels"])  # Model API labels
    ov.save_model(model, str(path))
    return path


def _dataset(root: Path, size=(96, 128)) -> Path:
    """Images of another size (stretched to 64x64 by the plug-in's preprocessing) labelled with the planted boxes."""
    for sub in ("images/val", "labels/val"):
        (root / sub).mkdir(parents=True)
    lines = []
    for _, cls, _, (x1, y1, x2, y2) in PLANTED:  # YOLO labels are fractions of the image: the same before and after
        lines.append(f"{cls} {(x1 + x2) / 128} {(y1 + y2) / 128} {(x2 - x1) / 64} {(y2 - y1) / 64}")
    for i in range(2):
        cv2.imwrite(str(root / f"images/val/{i}.jpg"), np.full((*size, 3), 90 + i, np.uint8))
        (root / f"labels/val/{i}.txt").write_text("\n".join(lines) + "\n")
    return root


def test_the_readme_example_declares_the_entry_point_the_test_installs():
    assert '[project.entry-points."ovq.decoders"]\ncenterpoint = "ovq_centerpoint:CenterPointDecoder"' in CENTERPOINT_TOML
    assert 'name = "ovq-centerpoint"' in CENTERPOINT_TOML and "class CenterPointDecoder:" in CENTERPOINT


def test_families_lists_builtin_and_plugin_families(plugin):
    proc = ovq("families", site=plugin)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any(ln.startswith("yolox") and "built-in" in ln for ln in lines)
    assert any(ln.startswith("centerpoint") and "plug-in ovq-centerpoint 0.1.0 (ovq_centerpoint:CenterPointDecoder)"
               in ln for ln in lines)
    assert lines[-1] == "9 built-in, 1 from plug-ins (entry point group 'ovq.decoders')"
    listed = {f["family"]: f for f in json.loads(ovq("families", "--json", site=plugin).stdout)}
    assert listed["centerpoint"]["distribution"] == "ovq-centerpoint" and listed["rtdetr"]["origin"] == "built-in"


def test_stock_cli_runs_a_plugin_family_convert_predict_eval_run(plugin, tmp_path):
    src = centerpoint_ir(tmp_path / "cp.xml")
    proc = ovq("convert", str(src), "-o", str(tmp_path / "ir"), site=plugin)
    assert proc.returncode == 0, proc.stderr
    assert "decoder family 'centerpoint'" in proc.stderr and "2 class names from rt_info model_info 'labels'" in proc.stderr
    info = read_info(ov.Core().read_model(str(tmp_path / "ir" / "model.xml")))
    assert info.family == "centerpoint" and info.labels == ["bolt", "nut"] and info.resize == "stretch"

    data = _dataset(tmp_path / "data")
    proc = ovq("predict", str(tmp_path / "ir"), str(data / "images/val/0.jpg"), "-o", str(tmp_path / "pred"), "-q",
               site=plugin)
    assert proc.returncode == 0, proc.stderr
    dets = json.loads((tmp_path / "pred/predictions.json").read_text())[0]["detections"]
    assert [d["label"] for d in dets] == ["bolt", "nut"]
    np.testing.assert_allclose([d["confidence"] for d in dets], [0.9, 0.8], atol=0.005)  # bf16 on some CPUs
    # 64x64 input stretched back to the 128x96 image: x * 2, y * 1.5
    np.testing.assert_allclose(dets[0]["xyxy"], [16, 6, 80, 30], atol=0.5)

    proc = ovq("eval", str(tmp_path / "ir"), "--data", str(data), "--no-progress", "-q", site=plugin)
    assert proc.returncode == 0, proc.stderr
    assert "mAP50-95   1.0000" in proc.stdout and "bolt" in proc.stdout  # the planted boxes are the labels

    jsonl = tmp_path / "run.jsonl"  # the streaming pipeline (ovq run, ovq pipeline) builds the same Detector
    proc = ovq("run", str(tmp_path / "ir"), "--source", "synth://conveyor?width=128&height=96", "--max-frames", "2",
               "--jsonl", str(jsonl), "-q", site=plugin)
    assert proc.returncode == 0, proc.stderr
    frames = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(frames) == 2 and [d["label"] for d in frames[0]["detections"]] == ["bolt", "nut"]


def test_without_the_plugin_the_model_says_what_to_install(plugin, tmp_path):
    assert ovq("convert", str(centerpoint_ir(tmp_path / "cp.xml")), "-o", str(tmp_path / "ir"), "-q",
               site=plugin).returncode == 0
    proc = ovq("predict", str(tmp_path / "ir"), str(_dataset(tmp_path / "d") / "images/val/0.jpg"), "-o",
               str(tmp_path / "p"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "ovq predict: error: unknown decoder family 'centerpoint': not built in and no installed package provides it")
    proc = ovq("convert", str(tmp_path / "cp.xml"), "-o", str(tmp_path / "ir2"))
    assert proc.returncode == 2 and "no known family fits the outputs [1, 2, 4, 4], [1, 4, 4, 4]" in proc.stderr


def test_bundle_pins_the_plugins_package(plugin, tmp_path):
    assert ovq("convert", str(centerpoint_ir(tmp_path / "cp.xml")), "-o", str(tmp_path / "ir"), "-q",
               site=plugin).returncode == 0
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text("model: ir\nsources: [\"synth://conveyor?width=96&height=64\"]\nmax_frames: 2\n")
    proc = ovq("bundle", str(tmp_path / "ir"), "--pipeline", str(pipeline), "-o", str(tmp_path / "b"), site=plugin)
    assert proc.returncode == 0, proc.stderr
    pins = (tmp_path / "b/requirements.txt").read_text().splitlines()
    assert "ovq-centerpoint==0.1.0" in pins
    proc = ovq("bundle", str(tmp_path / "ir"), "--pipeline", str(pipeline), "-o", str(tmp_path / "c"))
    assert proc.returncode == 2 and "unknown decoder family 'centerpoint'" in proc.stderr
    assert not (tmp_path / "c").exists()


def test_plugins_that_cannot_be_used_say_why_and_an_overlap_asks_for_family(trouble, tmp_path):
    proc = ovq("families", site=trouble)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "yolo_twin      plug-in ovq-trouble 0.1.0 (ovq_trouble:TwinDecoder)" in out
    assert "NOT USABLE: a built-in family has this name" in out
    assert "NOT USABLE: cannot import ovq_trouble_missing:Gone: ModuleNotFoundError" in out
    assert "NOT USABLE: it has no 'expects' string" in out

    onnx = heads.onnx_yolo(tmp_path / "m.onnx")
    proc = ovq("convert", str(onnx), "-o", str(tmp_path / "ir"), "-q", site=trouble)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"ovq convert: error: {onnx}: the outputs [1, 7, 64] fit several families (yolo, yolo_twin); "
        "pass --family to say which")
    assert not (tmp_path / "ir").exists()
    proc = ovq("convert", str(onnx), "-o", str(tmp_path / "ir"), "--family", "raiser", "-q", site=trouble)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"ovq convert: error: {onnx}: family 'raiser' failed to check the outputs: RuntimeError: cannot look at "
        "these outputs")
    proc = ovq("convert", str(onnx), "-o", str(tmp_path / "ir"), "--family", "yolo_twin", "-q", site=trouble)
    assert proc.returncode == 0, proc.stderr
    assert read_info(ov.Core().read_model(str(tmp_path / "ir/model.xml"))).family == "yolo_twin"
