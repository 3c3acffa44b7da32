"""Device strings, availability checks against the real Core, device-specific compile plans, caching, ``ovq devices``."""

from __future__ import annotations

import json
import logging

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from ovq.cli import main
from ovq.core.errors import DeviceError, ModelError
from ovq.core.metadata import ModelInfo, read_info, write_info
from ovq.runtime import compilation as runtime
from ovq.runtime import cpu
from ovq.runtime.capabilities import (
    DeviceInfo,
    check_precision,
    describe_device,
    device_capabilities,
    machine_summary,
    query_devices,
)
from ovq.runtime.cpu import cpu_flags, cpu_model, int8_kernels, int8_saturation_warning
from ovq.runtime.devices import (
    DeviceSpec,
    check_device,
    device_config,
    effective_device,
    is_present,
    make_static,
    needs_static_shapes,
    parse_device,
    static_input_shapes,
)

CORE = ov.Core()
AVAILABLE = list(CORE.available_devices)
ABSENT = [fam for fam in ("GPU", "NPU") if not any(d.split(".")[0] == fam for d in AVAILABLE)]


def _image_model(shape, *, info: ModelInfo | None = None) -> ov.Model:
    """A real u8 image model (NHWC when the last dim is 3): mean over the image, so it compiles and runs."""
    x = ops.parameter(shape, ov.Type.u8, name="image")
    y = ops.reduce_mean(ops.convert(x, ov.Type.f32), ops.constant(np.array([1, 2], np.int64)), keep_dims=False)
    model = ov.Model([y], [x], "img")
    if info is not None:
        write_info(model, info)
    return model


# --- parsing -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, norm, kind, targets, excluded, batch",
    [
        ("CPU", "CPU", None, (), (), None),
        ("cpu", "CPU", None, (), (), None),
        (" GPU.1 ", "GPU.1", None, (), (), None),
        ("NPU", "NPU", None, (), (), None),
        ("AUTO", "AUTO", "AUTO", (), (), None),
        ("auto:gpu, cpu", "AUTO:GPU,CPU", "AUTO", ("GPU", "CPU"), (), None),
        ("AUTO:-CPU", "AUTO:-CPU", "AUTO", (), ("CPU",), None),
        ("HETERO:GPU.0,CPU", "HETERO:GPU.0,CPU", "HETERO", ("GPU.0", "CPU"), (), None),
        ("MULTI:GPU,NPU", "MULTI:GPU,NPU", "MULTI", ("GPU", "NPU"), (), None),
        ("BATCH:GPU(4)", "BATCH:GPU(4)", "BATCH", ("GPU",), (), 4),
        ("BATCH:CPU", "BATCH:CPU", "BATCH", ("CPU",), (), None),
    ],
)
def test_parse_device(text, norm, kind, targets, excluded, batch):
    spec = parse_device(text)
    assert (spec.text, spec.kind, spec.targets, spec.excluded, spec.batch_size) == (
        norm, kind, targets, excluded, batch)
    assert spec.physical == (targets if kind else (norm,))
    assert str(spec) == norm


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty device name"),
        ("   ", "empty device name"),
        ("CPU:GPU", "only AUTO, MULTI, HETERO, BATCH take a device list"),
        ("HETERO", "HETERO needs a device list"),
        ("MULTI:", "empty entry in the device list"),
        ("AUTO:GPU,,CPU", "empty entry in the device list"),
        ("AUTO:AUTO:CPU", "virtual devices cannot be nested"),
        ("AUTO:GPU,GPU", "GPU is listed twice"),
        ("AUTO:GPU,-CPU", "not both"),
        ("BATCH:GPU(0)", "batch size must be a positive integer"),
        ("BATCH:GPU(x)", "batch size must be a positive integer"),
        ("BATCH:GPU,CPU", "BATCH takes exactly one device"),
        ("G PU", "'G PU' is not a device name"),
        ("GPU.", "'GPU.' is not a device name"),
    ],
)
def test_parse_device_rejects(text, message):
    with pytest.raises(DeviceError, match=message):
        parse_device(text)


# --- availability --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, available, present",
    [
        ("CPU", ["CPU"], True),
        ("GPU", ["CPU"], False),
        ("GPU", ["CPU", "GPU"], True),
        ("GPU", ["CPU", "GPU.0", "GPU.1"], True),
        ("GPU.1", ["CPU", "GPU.0", "GPU.1"], True),
        ("GPU.2", ["CPU", "GPU.0", "GPU.1"], False),
        ("GPU.0", ["CPU", "GPU"], True),  # a lone GPU is listed without an id
        ("GPU.1", ["CPU", "GPU"], False),
        ("NPU", ["CPU", "GPU"], False),
    ],
)
def test_is_present(name, available, present):
    assert is_present(name, available) is present


@pytest.mark.parametrize(
    "device, available, message",
    [
        ("GPU", ["CPU"], "device 'GPU' is not available on this machine; available: CPU"),
        ("GPU.1", ["CPU", "GPU.0"], "device 'GPU.1' is not available on this machine; available: CPU, GPU.0"),
        ("AUTO:GPU,NPU", ["CPU"], "none of GPU, NPU is available on this machine; available: CPU"),
        ("HETERO:GPU,CPU", ["CPU"], "device 'GPU' (in HETERO:GPU,CPU) is not available"),
        ("MULTI:CPU,NPU", ["CPU", "GPU"], "device 'NPU' (in MULTI:CPU,NPU) is not available"),
        ("BATCH:GPU(4)", ["CPU"], "device 'GPU' (in BATCH:GPU(4)) is not available"),
        ("AUTO:-CPU", ["CPU"], "leaves no device to run on; available: CPU"),
    ],
)
def test_check_device_rejects_absent(device, available, message):
    with pytest.raises(DeviceError) as err:
        check_device(device, available)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_auto_needs_only_one_of_its_candidates(caplog):
    with caplog.at_level(logging.INFO, logger="ovq.runtime.devices"):
        spec = check_device("AUTO:GPU,CPU", ["CPU"])
    assert spec.targets == ("GPU", "CPU")
    assert "GPU absent here" in caplog.text
    # what OpenVINO gets: the absent candidate dropped (AUTO + CACHE_DIR fails on an absent GPU in 2026.4)
    assert effective_device(spec, ["CPU"]).text == "AUTO:CPU"
    assert effective_device(spec, ["CPU", "GPU"]).text == "AUTO:GPU,CPU"
    assert effective_device(parse_device("GPU"), ["CPU", "GPU"]).text == "GPU"
    assert check_device("AUTO:-GPU", ["CPU"]).excluded == ("GPU",)


def test_check_device_on_this_machine():
    """Against the real Core: what exists passes, what does not fails naming what exists."""
    assert runtime.check_device("CPU").text == "CPU"
    assert runtime.check_device("AUTO").kind == "AUTO"
    for fam in ABSENT:
        with pytest.raises(DeviceError, match=f"device '{fam}' is not available on this machine; available: "
                                              + ", ".join(AVAILABLE)):
            runtime.check_device(fam)
    for name in AVAILABLE:
        assert runtime.check_device(name).text == name


@pytest.mark.parametrize("fam", ABSENT or ["(none absent)"])
def test_compile_for_an_absent_device_fails_before_compiling(fam, tmp_path):
    if fam not in ABSENT:
        pytest.skip("GPU and NPU are both present here")
    cache = tmp_path / "cache"
    with pytest.raises(DeviceError, match=f"'{fam}' is not available"):
        runtime.compile_model(_image_model([1, 8, 8, 3]), fam, cache=cache)
    assert not cache.exists()  # nothing was set up for it


# --- what the compile gets -----------------------------------------------------------------------------------


def test_npu_plan_static_shapes_and_latency_hint(tmp_path):
    """The plan for an NPU target (the list of the target machine's devices is given): no NPU is needed."""
    info = ModelInfo(family="yolo", labels=["a"], input_size=(48, 64))
    model = _image_model([-1, -1, -1, 3], info=info)
    plan = runtime.compile_plan(model, "NPU", available=["CPU", "NPU"], cache=tmp_path / "c")
    assert plan.device.text == "NPU" and plan.static_shapes
    assert plan.config == {"PERFORMANCE_HINT": "LATENCY", "CACHE_DIR": str(tmp_path / "c")}
    assert list(plan.model.inputs[0].get_partial_shape().to_shape()) == [1, 48, 64, 3]
    # the reshaped model is a real, compilable model
    compiled = CORE.compile_model(plan.model, "CPU")
    out = compiled(np.full((1, 48, 64, 3), 7, np.uint8))[0]
    np.testing.assert_allclose(out, np.full((1, 3), 7.0))
    # an explicit hint wins
    plan = runtime.compile_plan(_image_model([1, 8, 8, 3]), "NPU", config={"PERFORMANCE_HINT": "THROUGHPUT"},
                                available=["CPU", "NPU"], cache=False)
    assert plan.config == {"PERFORMANCE_HINT": "THROUGHPUT"}


def test_npu_plan_reads_a_model_path_to_check_it(tmp_path):
    xml = tmp_path / "dyn.xml"
    ov.save_model(_image_model([1, -1, -1, 3]), str(xml))
    with pytest.raises(ModelError, match=r"input 'image' has dynamic shape \[1,\?,\?,3\]; NPU needs static input"):
        runtime.compile_plan(xml, "NPU", available=["CPU", "NPU"], cache=False)
    # a path is passed through untouched for other devices
    plan = runtime.compile_plan(xml, "CPU", cache=False)
    assert plan.model == xml and not plan.static_shapes


def test_gpu_and_auto_plans(tmp_path):
    model = _image_model([1, 8, 8, 3])
    plan = runtime.compile_plan(model, "GPU.1", config={"INFERENCE_PRECISION_HINT": "f16"},
                                available=["CPU", "GPU.0", "GPU.1"], cache=tmp_path)
    assert plan.config == {"INFERENCE_PRECISION_HINT": "f16", "CACHE_DIR": str(tmp_path)}
    assert not plan.static_shapes and plan.device.text == "GPU.1"
    # plain AUTO may pick an NPU when the machine has one: shapes must be static then
    assert needs_static_shapes(parse_device("AUTO"), ["CPU", "NPU"])
    assert not needs_static_shapes(parse_device("AUTO"), ["CPU", "GPU"])
    assert not needs_static_shapes(parse_device("AUTO:-NPU"), ["CPU", "NPU"])
    assert needs_static_shapes(parse_device("HETERO:NPU,CPU"), ["CPU", "NPU"])
    assert device_config(parse_device("AUTO:NPU,CPU")) == {}  # AUTO decides its own hint
    with pytest.raises(DeviceError, match="device 'GPU' is not available"):
        runtime.compile_plan(model, "GPU", available=["CPU", "NPU"])


def test_static_input_shapes():
    assert static_input_shapes(_image_model([-1, 20, 30, 3])) == {"image": [1, 20, 30, 3]}
    assert static_input_shapes(_image_model([-1, -1, -1, 3]), input_size=(20, 30)) == {"image": [1, 20, 30, 3]}
    x = ops.parameter([-1, 3, -1, -1], ov.Type.f32, name="nchw")
    nchw = ov.Model([ops.relu(x)], [x])
    assert static_input_shapes(nchw, input_size=(20, 30)) == {"nchw": [1, 3, 20, 30]}
    with pytest.raises(ModelError, match=r"'nchw' has dynamic shape \[\?,3,\?,\?\]; NPU needs static"):
        static_input_shapes(nchw, device="NPU")
    r = ops.parameter(ov.PartialShape.dynamic(), ov.Type.f32, name="anyrank")
    with pytest.raises(ModelError, match="dynamic rank"):
        static_input_shapes(ov.Model([ops.relu(r)], [r]))
    m = _image_model([-1, -1, -1, 3])
    assert make_static(m, input_size=(4, 5)) is m
    assert m.inputs[0].get_partial_shape().is_static


def test_precision_capability_check():
    assert check_precision(parse_device("CPU"), "bf16", {"CPU": ["FP32", "BF16", "INT8"]}) is None
    with pytest.raises(DeviceError, match="device 'CPU' has no BF16 support"):
        check_precision(parse_device("CPU"), "bf16", {"CPU": ["FP32", "INT8"]})
    with pytest.raises(DeviceError, match="device 'GPU' has no FP16 support"):
        check_precision(parse_device("AUTO:GPU,CPU"), "f16", {"GPU": ["FP32"], "CPU": ["FP16"]})
    check_precision(parse_device("CPU"), "f32", {"CPU": ["FP32"]})  # f32 needs nothing
    # on this machine: what the CPU reports decides
    caps = device_capabilities(CORE, "CPU")
    assert caps and "FP32" in caps
    model = _image_model([1, 8, 8, 3])
    if "BF16" in caps:
        runtime.compile_plan(model, "CPU", config={"INFERENCE_PRECISION_HINT": "bf16"}, cache=False)
    else:
        with pytest.raises(DeviceError, match="no BF16 support"):
            runtime.compile_plan(model, "CPU", config={"INFERENCE_PRECISION_HINT": "bf16"}, cache=False)


# --- caching -------------------------------------------------------------------------------------------------


def test_compiled_model_cache_second_start_loads_from_it(tmp_path, caplog):
    info = ModelInfo(family="yolo", labels=["a"], input_size=(32, 32))
    xml = tmp_path / "m.xml"
    ov.save_model(_image_model([1, 32, 32, 3], info=info), str(xml))
    cache = tmp_path / "cache"
    with caplog.at_level(logging.INFO, logger="ovq.runtime.compilation"):
        first = runtime.compile_model(runtime.read_model(xml), "CPU", cache=cache)
        blobs = list(cache.glob("*.blob"))
        second = runtime.compile_model(runtime.read_model(xml), "CPU", cache=cache)
    assert len(blobs) == 1
    assert first.get_property("LOADED_FROM_CACHE") is False
    assert second.get_property("LOADED_FROM_CACHE") is True
    assert "model cache: miss, cached now" in caplog.text and "model cache: hit" in caplog.text
    img = np.arange(32 * 32 * 3, dtype=np.uint8).reshape(1, 32, 32, 3)
    np.testing.assert_allclose(first(img)[0], second(img)[0])
    assert read_info(runtime.read_model(xml)).input_size == (32, 32)


def test_cache_on_by_default_in_the_user_cache_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("OVQ_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert runtime.default_cache_dir() == tmp_path / "xdg" / "ovq" / "ov_cache"
    plan = runtime.compile_plan(_image_model([1, 8, 8, 3]), "CPU")
    assert plan.config["CACHE_DIR"] == str(tmp_path / "xdg" / "ovq" / "ov_cache")
    monkeypatch.setenv("OVQ_CACHE_DIR", str(tmp_path / "mine"))
    assert runtime.compile_plan(_image_model([1, 8, 8, 3]), "CPU").cache_dir == tmp_path / "mine"
    assert "CACHE_DIR" not in runtime.compile_plan(_image_model([1, 8, 8, 3]), "CPU", cache=False).config


def test_unusable_cache_folder_compiles_without_it(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with caplog.at_level(logging.WARNING, logger="ovq.runtime.compilation"):
        compiled = runtime.compile_model(_image_model([1, 8, 8, 3]), "CPU", cache=blocker / "cache")
    assert "is not usable" in caplog.text and "compiling without a cache" in caplog.text
    assert compiled(np.ones((1, 8, 8, 3), np.uint8))[0].shape == (1, 3)


def test_auto_with_an_absent_candidate_compiles_with_the_cache_on(tmp_path):
    """OpenVINO 2026.4 alone fails on AUTO:GPU,CPU + CACHE_DIR without a GPU; ovq hands it AUTO:CPU."""
    if "GPU" not in ABSENT:
        pytest.skip("this machine has a GPU")
    compiled = runtime.compile_model(_image_model([1, 8, 8, 3]), "AUTO:GPU,CPU", cache=tmp_path / "c")
    assert compiled.get_property("EXECUTION_DEVICES") == ["CPU"]
    assert runtime.execution_precision(compiled) == runtime.execution_precision(
        runtime.compile_model(_image_model([1, 8, 8, 3]), "CPU", cache=False))


# --- the capabilities report ---------------------------------------------------------------------------------


def test_query_devices_reports_what_openvino_sees(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    report = query_devices(CORE, cache_dir=blocker / "ovq")  # under a file: cannot be created
    assert report.openvino_version == ov.get_version()
    assert [d.name for d in report.devices] == AVAILABLE
    assert report.cache_writable is False
    assert query_devices(CORE, cache_dir=tmp_path / "not" / "yet").cache_writable is True
    cpu = next(d for d in report.devices if d.name == "CPU")
    assert cpu.full_name == CORE.get_property("CPU", "FULL_DEVICE_NAME")
    assert cpu.capabilities == device_capabilities(CORE, "CPU")
    default = CORE.get_property("CPU", "INFERENCE_PRECISION_HINT").to_string()
    assert cpu.default_precision == {"bf16": "bf16", "f16": "f16", "f32": "f32"}.get(default, default)
    assert any("BF16 is the default for FP models" in n for n in cpu.notes) == (cpu.default_precision == "bf16")
    assert json.loads(json.dumps(report.to_dict()))["devices"][0]["name"] == AVAILABLE[0]


@pytest.mark.parametrize(
    "info, flags, expect",
    [
        (DeviceInfo("CPU", "x", capabilities=["FP32", "BF16", "INT8"], default_precision="bf16"),
         ["amx_bf16", "amx_int8"], ["AMX: BF16 is the default for FP models", "run with AMX-INT8 kernels"]),
        (DeviceInfo("CPU", "x", capabilities=["FP32", "BF16", "INT8"], default_precision="bf16"),
         ["avx512_bf16", "avx512_vnni"], ["AVX512-BF16: BF16 is the default", "run with VNNI kernels"]),
        (DeviceInfo("CPU", "x", capabilities=["FP32", "INT8"], default_precision="f32"),
         ["avx2"], ["FP models run in f32 by default", "INT8 without VNNI/AMX", "overflow fix on every layer"]),
        (DeviceInfo("GPU.0", "x", capabilities=["FP32", "FP16", "INT8"], default_precision="f16"),
         [], ["run in f16 by default on the GPU", "compiled-model cache"]),
        (DeviceInfo("NPU", "x", capabilities=["FP16", "INT8", "EXPORT_IMPORT"]),
         [], ["needs a static-shape model", "LATENCY hint", "can be cached"]),
    ],
)
def test_describe_device(info, flags, expect):
    notes = " | ".join(describe_device(info, flags))
    for text in expect:
        assert text in notes


def test_cpu_flags_from_a_cpuinfo_file(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f amx_bf16 amx_tile\nbogus: 1\n")
    assert cpu_flags(f) == ["amx_bf16", "amx_tile", "avx512f", "avx2"]
    assert cpu_flags(tmp_path / "missing") == []


def test_cpu_model_names_family_and_model_of_the_first_processor(tmp_path):
    f = tmp_path / "cpuinfo"
    block = "processor\t: {n}\ncpu family\t: 25\nmodel\t\t: {m}\nmodel name\t: AMD EPYC\n\n"
    f.write_text(block.format(n=0, m=1) + block.format(n=1, m=17))
    assert cpu_model(f) == "AMD EPYC (family 25, model 1)"
    f.write_text("processor\t: 0\nmodel name\t: Neoverse\n")
    assert cpu_model(f) == "Neoverse"
    assert cpu_model(tmp_path / "missing") == "unknown"


@pytest.mark.parametrize("flags, kind", [(["avx512_vnni", "avx512f", "avx2"], "vnni"), (["avx2"], "no-vnni")])
def test_patching_cpu_flags_where_they_are_defined_plays_another_cpu(flags, kind, monkeypatch):
    """Every reader of this CPU's flags looks them up in ovq.runtime.cpu, so tests can play a CPU kind.

    Both kinds are played, so the test fails on any machine if one reader bypasses the patch.
    """
    monkeypatch.setattr(cpu, "cpu_flags", lambda *a, **k: list(flags))
    assert int8_kernels() == kind
    first = {"mode": "plain", "overflow_fix": "first-layer"}
    assert bool(int8_saturation_warning(first, "CPU")) == (kind == "no-vnni")
    report = query_devices(CORE)
    assert report.cpu_flags == flags
    notes = " | ".join(next(d for d in report.devices if d.name == "CPU").notes)
    if "INT8" in device_capabilities(CORE, "CPU"):
        assert ("INT8 without VNNI/AMX" in notes) == (kind == "no-vnni")
    assert f"INT8 kernels: {kind}," in machine_summary(CORE)


def test_cli_devices(capsys):
    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    assert f"OpenVINO {ov.get_version()}" in out
    for name in AVAILABLE:
        assert f"{name}: {CORE.get_property(name, 'FULL_DEVICE_NAME')}" in out
    assert "default inference precision for FP models" in out
    assert main(["devices", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["name"] for d in data["devices"]] == AVAILABLE


@pytest.mark.parametrize("device", ABSENT or ["GPU"])
def test_cli_absent_device_is_one_line_and_exit_2(device, tmp_path, capsys):
    if device not in ABSENT:
        pytest.skip(f"{device} is present here")
    info = ModelInfo(family="yolo", labels=["a"], input_size=(8, 8))
    xml = tmp_path / "m.xml"
    ov.save_model(_image_model([1, 8, 8, 3], info=info), str(xml))
    img = tmp_path / "i.png"
    import cv2

    cv2.imwrite(str(img), np.zeros((8, 8, 3), np.uint8))
    assert main(["predict", str(xml), str(img), "-o", str(tmp_path / "o"), "--device", device]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    expected = f"ovq predict: error: device '{device}' is not available on this machine; available: "
    assert err == [expected + ", ".join(AVAILABLE)]


def test_device_spec_is_hashable_and_frozen():
    spec = parse_device("AUTO:GPU,CPU")
    assert {spec: 1}[DeviceSpec("AUTO:GPU,CPU", "AUTO", ("GPU", "CPU"))] == 1
    with pytest.raises(AttributeError):
        spec.text = "CPU"  # type: ignore[misc]


def test_default_hint():
    from ovq.runtime.devices import default_hint

    assert default_hint("NPU") == "latency" and default_hint("npu.0") == "latency"
    assert default_hint("CPU") == "throughput" and default_hint("GPU.1") == "throughput"
    assert default_hint("AUTO:NPU,CPU") == "throughput"  # AUTO picks its own device; MULTI/HETERO spread work


# --- INT8 kernels by CPU kind -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags, kind",
    [
        (["amx_bf16", "amx_int8", "amx_tile", "avx512_bf16", "avx512_vnni", "avx512f", "avx2"], "amx"),  # Xeon SPR
        (["avx512_bf16", "avx512_vnni", "avx512f", "avx2"], "vnni"),  # EPYC Zen 4
        (["avx_vnni", "avx2"], "vnni"),  # Alder Lake
        (["avx2"], "no-vnni"),  # EPYC Zen 3, Core up to 10th gen
        (["avx512f", "avx2"], "no-vnni"),  # Skylake-SP
        ([], "unknown"),  # not x86, or no /proc/cpuinfo
    ],
)
def test_int8_kernels_by_cpu_flags(flags, kind):
    assert int8_kernels(flags) == kind


def test_saturation_warning_names_the_fix_and_only_where_int8_can_saturate():
    first = {"mode": "plain", "overflow_fix": "first-layer"}
    warning = int8_saturation_warning(first, "CPU", ["avx2"])
    assert warning and "'first-layer'" in warning and "overflow_fix='enable'" in warning
    assert int8_saturation_warning({"mode": "plain"}, "AUTO", ["avx2"])  # older models had NNCF's default
    assert int8_saturation_warning(first, "AUTO:GPU,CPU", ["avx2"])
    assert int8_saturation_warning(first, "CPU", ["avx512_vnni", "avx2"]) is None
    assert int8_saturation_warning(first, "GPU", ["avx2"]) is None
    assert int8_saturation_warning({"overflow_fix": "enable"}, "CPU", ["avx2"]) is None
    assert int8_saturation_warning({}, "CPU", ["avx2"]) is None  # a float model
    # quantized on a CPU without VNNI: the fix was measured with saturating kernels, whichever was kept
    assert int8_saturation_warning({**first, "int8_kernels": "no-vnni"}, "CPU", ["avx2"]) is None
    assert int8_saturation_warning({**first, "int8_kernels": "vnni"}, "CPU", ["avx2"])
