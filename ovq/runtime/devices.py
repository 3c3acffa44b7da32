"""OpenVINO devices: parse and check device strings, report capabilities, and device-specific compile settings.

A device string is what OpenVINO's ``compile_model`` takes: a physical device (``CPU``, ``GPU``, ``GPU.1``,
``NPU``) or a virtual one with a device list (``AUTO``, ``AUTO:GPU,CPU``, ``AUTO:-CPU``, ``MULTI:GPU,CPU``,
``HETERO:GPU,CPU``, ``BATCH:GPU(4)``). :func:`parse_device` checks the syntax; :func:`check_device` checks it
against the devices this machine has (``openvino.Core().available_devices``) and raises
:class:`~ovq.core.errors.DeviceError` with one line listing what exists.

Policy for device lists: ``MULTI``, ``HETERO`` and ``BATCH`` use every device they name, so every one must be
present. ``AUTO`` *chooses* among its candidates, so ``AUTO:GPU,CPU`` is valid on a machine with only a CPU (the
same pipeline file then runs on a whole fleet, with and without GPU); at least one candidate must be present.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import openvino as ov

from ovq.core.errors import DeviceError, ModelError

logger = logging.getLogger(__name__)

VIRTUAL_DEVICES = ("AUTO", "MULTI", "HETERO", "BATCH")
PHYSICAL_FAMILIES = ("CPU", "GPU", "NPU")
# Capabilities (OPTIMIZATION_CAPABILITIES) that matter for detectors, in the order they are shown.
KEY_CAPABILITIES = ("FP32", "BF16", "FP16", "INT8")
_NAME = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)?$")
_BATCH_TARGET = re.compile(r"^(?P<name>[^()]+?)(\((?P<size>[^)]*)\))?$")


@dataclass(frozen=True)
class DeviceSpec:
    """A parsed device string.

    ``kind`` is the virtual device (``AUTO``, ``MULTI``, ``HETERO``, ``BATCH``) or ``None`` for a physical one.
    ``targets`` are the physical devices it names, in priority order; ``excluded`` the ones ``AUTO:-X`` removes.
    ``text`` is the normalized string passed to OpenVINO.
    """

    text: str
    kind: str | None = None
    targets: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()
    batch_size: int | None = None

    @property
    def is_virtual(self) -> bool:
        return self.kind is not None

    @property
    def physical(self) -> tuple[str, ...]:
        """The physical devices named: ``('GPU', 'CPU')`` for ``AUTO:GPU,CPU``, ``('NPU',)`` for ``NPU``."""
        return self.targets if self.is_virtual else (self.text,)

    def names_family(self, family: str) -> bool:
        """True when a named physical device is of ``family`` (``'NPU'`` matches ``NPU`` and ``NPU.0``)."""
        return any(family_of(d) == family.upper() for d in self.physical)

    def __str__(self) -> str:
        return self.text


def family_of(device: str) -> str:
    """``'GPU'`` for ``'GPU.1'``: the device name without its id."""
    return device.split(".", 1)[0].upper()


def parse_device(text: str) -> DeviceSpec:
    """Parse a device string; raise :class:`DeviceError` on bad syntax (without looking at the hardware).

    Names are case-insensitive (``cpu`` becomes ``CPU``, which is what OpenVINO expects).
    """
    if not isinstance(text, str) or not text.strip():
        raise DeviceError("empty device name; expected e.g. CPU, GPU, GPU.1, NPU, AUTO or AUTO:GPU,CPU")
    raw = text.strip()
    head, sep, rest = raw.partition(":")
    head = head.strip().upper()
    if head not in VIRTUAL_DEVICES:
        if sep:
            raise DeviceError(
                f"device '{raw}': only {', '.join(VIRTUAL_DEVICES)} take a device list after ':'"
            )
        _check_name(head, raw)
        return DeviceSpec(text=head)
    items = [item.strip() for item in rest.split(",")] if sep else []
    if sep and (not items or any(not item for item in items)):
        raise DeviceError(f"device '{raw}': empty entry in the device list")
    targets: list[str] = []
    excluded: list[str] = []
    batch_size: int | None = None
    for item in items:
        if head == "AUTO" and item.startswith("-"):
            name = item[1:].strip().upper()
            _check_name(name, raw)
            excluded.append(name)
            continue
        if head == "BATCH":
            match = _BATCH_TARGET.match(item)
            if match is None:
                raise DeviceError(f"device '{raw}': expected BATCH:DEVICE or BATCH:DEVICE(N)")
            item = match["name"].strip()
            if match["size"] is not None:
                try:
                    batch_size = int(match["size"])
                except ValueError:
                    batch_size = 0
                if batch_size < 1:
                    raise DeviceError(f"device '{raw}': batch size must be a positive integer")
        name = item.upper()
        if family_of(name.partition(":")[0]) in VIRTUAL_DEVICES:
            raise DeviceError(f"device '{raw}': virtual devices cannot be nested ({name})")
        _check_name(name, raw)
        if name in targets:
            raise DeviceError(f"device '{raw}': {name} is listed twice")
        targets.append(name)
    if head in ("MULTI", "HETERO") and not targets:
        raise DeviceError(f"device '{raw}': {head} needs a device list, e.g. {head}:GPU,CPU")
    if head == "BATCH" and len(targets) != 1:
        raise DeviceError(f"device '{raw}': BATCH takes exactly one device, e.g. BATCH:GPU(4)")
    if targets and excluded:
        raise DeviceError(f"device '{raw}': list the candidates or exclude some (-X), not both")
    if head == "BATCH":
        norm = f"BATCH:{targets[0]}" + (f"({batch_size})" if batch_size else "")
    elif items:
        norm = f"{head}:" + ",".join(targets or [f"-{e}" for e in excluded])
    else:
        norm = head
    return DeviceSpec(text=norm, kind=head, targets=tuple(targets), excluded=tuple(excluded), batch_size=batch_size)


def _check_name(name: str, raw: str) -> None:
    if not _NAME.match(name):
        raise DeviceError(f"device '{raw}': '{name}' is not a device name (expected e.g. CPU, GPU, GPU.1, NPU)")


def is_present(name: str, available: Sequence[str]) -> bool:
    """Whether physical device ``name`` is among ``available`` (``GPU`` also matches ``GPU.0``; ``GPU.0``
    matches a lone ``GPU``, which is how OpenVINO lists a single GPU)."""
    name = name.upper()
    avail = [a.upper() for a in available]
    if name in avail:
        return True
    fam, _, dev_id = name.partition(".")
    if not dev_id:
        return any(family_of(a) == fam for a in avail)
    return dev_id == "0" and fam in avail


def check_device(device: str | DeviceSpec, available: Sequence[str]) -> DeviceSpec:
    """Parse ``device`` and check it against ``available`` (``core.available_devices``).

    Returns the parsed spec; raises :class:`DeviceError` with one line naming what this machine has.
    """
    spec = device if isinstance(device, DeviceSpec) else parse_device(device)
    have = ", ".join(available) or "none"
    if not spec.is_virtual:
        if not is_present(spec.text, available):
            raise DeviceError(f"device '{spec.text}' is not available on this machine; available: {have}")
        return spec
    if spec.kind == "AUTO":
        if spec.targets:
            present = [d for d in spec.targets if is_present(d, available)]
            if not present:
                raise DeviceError(
                    f"device '{spec.text}': none of {', '.join(spec.targets)} is available on this machine; "
                    f"available: {have}"
                )
            absent = [d for d in spec.targets if d not in present]
            if absent:
                logger.info("%s: %s absent here, AUTO will choose among %s", spec.text, ", ".join(absent),
                            ", ".join(present))
        else:
            left = [a for a in available if not any(is_present(e, [a]) for e in spec.excluded)]
            if not left:
                raise DeviceError(f"device '{spec.text}' leaves no device to run on; available: {have}")
        return spec
    for name in spec.targets:
        if not is_present(name, available):
            raise DeviceError(
                f"device '{name}' (in {spec.text}) is not available on this machine; available: {have}"
            )
    return spec


def effective_device(spec: DeviceSpec, available: Sequence[str]) -> DeviceSpec:
    """The device string to hand to OpenVINO here: ``AUTO:GPU,CPU`` becomes ``AUTO:CPU`` without a GPU.

    AUTO skips absent candidates by itself, but OpenVINO 2026.4 fails to compile ``AUTO:GPU,CPU`` with
    ``CACHE_DIR`` set when the GPU is absent (it asks the absent device for its id to build the cache key).
    Other specs are returned as they are. Call after :func:`check_device`.
    """
    if spec.kind != "AUTO" or not spec.targets:
        return spec
    present = tuple(d for d in spec.targets if is_present(d, available))
    if present == spec.targets:
        return spec
    return DeviceSpec(text="AUTO:" + ",".join(present), kind="AUTO", targets=present)


def needs_static_shapes(spec: DeviceSpec, available: Sequence[str] = ()) -> bool:
    """Whether the model may land on an NPU, which compiles static shapes only.

    True when an NPU is named, or for a plain ``AUTO`` (no list) on a machine that has an NPU.
    """
    if spec.names_family("NPU"):
        return True
    return spec.kind == "AUTO" and not spec.targets and any(family_of(a) == "NPU" for a in available) and not any(
        family_of(e) == "NPU" for e in spec.excluded
    )


def device_config(spec: DeviceSpec, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """The compile settings for ``spec``: ``config`` plus what the device needs.

    An NPU (alone) gets ``PERFORMANCE_HINT=LATENCY`` unless a hint was set: it runs one request at a time
    best, and a throughput hint there only adds latency. Explicit settings always win.
    """
    cfg = dict(config or {})
    if not spec.is_virtual and family_of(spec.text) == "NPU":
        cfg.setdefault("PERFORMANCE_HINT", "LATENCY")
    return cfg


def default_hint(device: str | DeviceSpec) -> str:
    """The performance hint for a video pipeline when none was asked for: ``latency`` on an NPU (alone: it
    runs one request at a time best), else ``throughput`` (frames are pipelined through several requests)."""
    spec = device if isinstance(device, DeviceSpec) else parse_device(device)
    return "latency" if not spec.is_virtual and family_of(spec.text) == "NPU" else "throughput"


def static_input_shapes(
    model: ov.Model, *, input_size: tuple[int, int] | None = None, device: str = "this device"
) -> dict[str, list[int]]:
    """Static shapes for every input of ``model``; raise :class:`ModelError` when one cannot be fixed.

    A dynamic batch becomes 1. Dynamic height/width of a 4-D image input (NHWC when the last dimension is
    3, NCHW when the second is) take ``input_size`` = (height, width) when it is given.
    """
    shapes: dict[str, list[int]] = {}
    for index, port in enumerate(model.inputs):
        pshape = port.get_partial_shape()
        name = port.any_name if port.get_names() else f"input {index}"
        if pshape.rank.is_dynamic:
            raise ModelError(f"input '{name}' has a dynamic rank; {device} needs static input shapes")
        dims = [d.get_length() if d.is_static else None for d in pshape]
        if len(dims) == 4 and dims[0] is None:
            dims[0] = 1
        if len(dims) == 4 and input_size is not None:
            if dims[3] == 3:
                hw = (1, 2)
            elif dims[1] == 3:
                hw = (2, 3)
            else:
                hw = ()
            for axis, value in zip(hw, input_size):
                if dims[axis] is None:
                    dims[axis] = int(value)
        if any(d is None for d in dims):
            raise ModelError(
                f"input '{name}' has dynamic shape {pshape}; {device} needs static input shapes: "
                "convert the model with a fixed --imgsz"
            )
        shapes[name] = dims  # type: ignore[assignment]
    return shapes


def make_static(
    model: ov.Model, *, input_size: tuple[int, int] | None = None, device: str = "this device"
) -> ov.Model:
    """Reshape ``model`` in place to static input shapes (see :func:`static_input_shapes`); returns it."""
    if all(port.get_partial_shape().is_static for port in model.inputs):
        return model
    shapes = static_input_shapes(model, input_size=input_size, device=device)
    try:
        model.reshape({model.inputs[i]: ov.PartialShape(s) for i, s in enumerate(shapes.values())})
    except RuntimeError as exc:  # OpenVINO's text is multi-line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"cannot reshape the model to static shapes {list(shapes.values())}: {first}") from None
    logger.info("reshaped the model to static input shapes %s", list(shapes.values()))
    return model


# --- capabilities report -------------------------------------------------------------------------------------


@dataclass
class DeviceInfo:
    """One device as OpenVINO reports it, and what its capabilities mean for running detectors."""

    name: str
    full_name: str
    device_type: str = ""
    architecture: str = ""
    capabilities: list[str] = field(default_factory=list)
    default_precision: str | None = None
    notes: list[str] = field(default_factory=list)

    def has(self, capability: str) -> bool:
        return capability.upper() in self.capabilities


@dataclass
class DevicesReport:
    """What ``ovq devices`` shows: the OpenVINO version and every device."""

    openvino_version: str
    devices: list[DeviceInfo]
    cache_dir: str = ""
    cache_writable: bool = False
    cpu_flags: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# CPU flags (Linux /proc/cpuinfo) that tell which low-precision kernels the CPU has.
_CPU_FLAGS = ("amx_bf16", "amx_int8", "amx_fp16", "amx_tile", "avx512_bf16", "avx512_fp16", "avx512_vnni",
              "avx_vnni", "avx512f", "avx2")


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> list[str]:
    """The CPU flags relevant to inference precision, from ``/proc/cpuinfo`` (empty where it does not exist)."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    for line in text.splitlines():
        if line.startswith("flags"):
            present = set(line.partition(":")[2].split())
            return [f for f in _CPU_FLAGS if f in present]
    return []


# How a CPU multiplies INT8, by its flags (see :func:`int8_kernels`).
INT8_KERNELS = ("amx", "vnni", "no-vnni", "unknown")


def int8_kernels(flags: Sequence[str] | None = None) -> str:
    """How this x86 CPU runs INT8 dot products: ``amx``, ``vnni``, ``no-vnni`` or ``unknown`` (not x86).

    With AMX-INT8 or VNNI (AVX512-VNNI, AVX-VNNI) u8 x s8 products are summed exactly into int32. Without
    them (AVX2 or AVX-512 before Cascade Lake / Zen 4: most industrial PCs before Ice Lake / Alder Lake)
    OpenVINO's INT8 kernels use ``vpmaddubsw``, which adds each pair of products into a *saturating* int16:
    two products of 255 x 127 overflow it. NNCF's overflow fix (7-bit weights) avoids that; by default NNCF
    applies it to the first layer only, which assumes the later layers' activations stay small.
    Measured on an AVX2 EPYC (Zen 3), YOLOX-Nano plain INT8, coco128 val2017 mAP50-95: FP 0.3378, INT8 with
    the fix on the first layer 0.1174 (the same model run with OpenVINO's INT8 kernels off, quantization
    emulated in f32: 0.3340), with the fix on every layer 0.3270.
    """
    present = set(cpu_flags() if flags is None else flags)
    if "amx_int8" in present:
        return "amx"
    if present & {"avx512_vnni", "avx_vnni"}:
        return "vnni"
    if present & {"avx2", "avx512f"}:
        return "no-vnni"
    return "unknown"


def cpu_model(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """The CPU's model name with its family/model numbers (``AMD EPYC (family 25, model 1)``), or ``unknown``.

    Virtual machines often report a bare "AMD EPYC": the family and model tell Zen 3 (25/1) from Zen 4 (25/17).
    """
    fields: dict[str, str] = {}
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "unknown"
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            if fields:
                break  # the first processor's block is enough
            continue
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name", "unknown")
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']}, model {fields['model']})"
    return name


def machine_summary(core: ov.Core | None = None) -> str:
    """One line for benchmark output: CPU model, cores, INT8 kernels, the CPU's default precision for FP models."""
    core = core or ov.Core()
    default = _precision_name(_prop(core, "CPU", "INFERENCE_PRECISION_HINT")) if "CPU" in core.available_devices else None
    return (f"{cpu_model()}, {os.cpu_count()} cores, INT8 kernels: {int8_kernels()}, "
            f"FP models run in {default or 'n/a'} by default, OpenVINO {ov.get_version().split('-')[0]}")


def int8_saturation_warning(quantization: Mapping[str, Any], device: str, flags: Sequence[str] | None = None) -> str | None:
    """A warning when an INT8 model quantized without the full overflow fix runs where INT8 may saturate.

    ``quantization`` is the provenance ``ovq quantize`` stores in the IR (``overflow_fix``; models from
    before the option had NNCF's default, the first layer only). ``None`` when there is nothing to fear:
    not an ovq INT8 model, no CPU in ``device``, a CPU with VNNI/AMX, or a model quantized on a CPU without
    VNNI (its accuracy was measured with such kernels).
    """
    if not quantization:
        return None
    fix = str(quantization.get("overflow_fix") or "first-layer")
    if fix == "enable" or quantization.get("int8_kernels") == "no-vnni":
        return None  # saturation-proof, or quantized (and its accuracy measured) on a CPU without VNNI
    try:
        spec = parse_device(device)
    except DeviceError:
        return None
    uses_cpu = spec.names_family("CPU") or (spec.is_virtual and not spec.targets)
    if not uses_cpu or int8_kernels(flags) != "no-vnni":
        return None
    return (
        f"this INT8 model was quantized with the overflow fix on '{fix}' (for CPUs with VNNI/AMX); this CPU "
        "has no VNNI, where its INT8 kernels can saturate and lose most of the accuracy (YOLOX-Nano: mAP "
        "0.338 -> 0.117): quantize it again on this kind of CPU, or with overflow_fix='enable'"
    )


def _prop(core: ov.Core, device: str, name: str) -> Any:
    try:
        return core.get_property(device, name)
    except (RuntimeError, TypeError):  # a property the plugin does not support (or cannot convert)
        return None


def _precision_name(value: Any) -> str | None:
    if value is None:
        return None
    try:
        text = value.to_string()
    except AttributeError:
        text = str(value)
    text = text.lower()
    return {"bfloat16": "bf16", "float16": "f16", "float32": "f32"}.get(text, text)


def describe_device(info: DeviceInfo, flags: Sequence[str] = ()) -> list[str]:
    """Plain-language notes on what a device's capabilities mean for the user."""
    fam = family_of(info.name)
    notes: list[str] = []
    flags = set(flags)
    if fam == "CPU":
        if info.default_precision == "bf16":
            unit = "AMX" if "amx_bf16" in flags else "AVX512-BF16" if "avx512_bf16" in flags else "BF16"
            notes.append(
                f"{unit}: BF16 is the default for FP models: FP32/FP16 layers run in bf16 (faster, about 3 "
                "significant digits); use --precision f32 for exact FP32 results, e.g. to compare accuracy"
            )
        elif info.default_precision == "f16":
            notes.append("FP16 is the default for FP models on this CPU; use --precision f32 for exact FP32 results")
        elif info.default_precision:
            notes.append(f"FP models run in {info.default_precision} by default (no BF16 kernels on this CPU)")
        if info.has("INT8"):
            kernels = int8_kernels(sorted(flags))
            if kernels == "no-vnni":
                notes.append(
                    "INT8 without VNNI/AMX: products are summed in saturating 16-bit steps, so INT8 models need "
                    "NNCF's overflow fix on every layer (ovq quantize chooses it on this CPU; models quantized "
                    "on a CPU with VNNI can lose most of their accuracy here); smaller speed-up than newer CPUs"
                )
            else:
                unit = {"amx": "AMX-INT8", "vnni": "VNNI"}.get(kernels)
                extra = f" with {unit} kernels" if unit else ""
                notes.append(f"INT8: quantized models (ovq quantize) run{extra}; float layers left in them follow "
                             "the default precision above")
        if info.has("FP16"):
            notes.append("FP16: FP16-weight IRs load fine; --precision f16 runs float layers in f16")
    elif fam == "GPU":
        default = info.default_precision or "f16"
        notes.append(f"FP models run in {default} by default on the GPU; --precision f32 is exact but slower")
        if info.has("INT8"):
            notes.append("INT8: quantized models run with INT8 kernels")
        notes.append("first compile takes seconds; the compiled-model cache makes later starts fast")
    elif fam == "NPU":
        notes.append("NPU: needs a static-shape model (ovq models have one) and runs with the LATENCY hint")
        notes.append("first compile is slow; the compiled-model cache makes later starts fast")
        if info.has("INT8"):
            notes.append("INT8: quantized models run natively; FP models run in FP16")
    if "EXPORT_IMPORT" in info.capabilities:
        notes.append("compiled models can be cached (CACHE_DIR), so a second start skips compilation")
    return notes


def query_devices(core: ov.Core | None = None, *, cache_dir: Path | None = None) -> DevicesReport:
    """Every device OpenVINO sees, with its full name, capabilities, default precision and notes."""
    core = core or ov.Core()
    flags = cpu_flags()
    devices: list[DeviceInfo] = []
    for name in core.available_devices:
        caps = device_capabilities(core, name)
        dtype = _prop(core, name, "DEVICE_TYPE")
        info = DeviceInfo(
            name=name,
            full_name=str(_prop(core, name, "FULL_DEVICE_NAME") or name),
            device_type=(getattr(dtype, "name", None) or str(dtype or "")).lower(),
            architecture=str(_prop(core, name, "DEVICE_ARCHITECTURE") or ""),
            capabilities=caps,
            default_precision=_precision_name(_prop(core, name, "INFERENCE_PRECISION_HINT")),
        )
        info.notes = describe_device(info, flags if family_of(name) == "CPU" else ())
        devices.append(info)
    writable = False
    if cache_dir is not None:
        writable = _writable_dir(cache_dir)
    return DevicesReport(
        openvino_version=ov.get_version(),
        devices=devices,
        cache_dir=str(cache_dir or ""),
        cache_writable=writable,
        cpu_flags=flags,
    )


def _writable_dir(path: Path) -> bool:
    """Whether ``path`` exists (or could be created) and is writable, without creating it."""
    probe = Path(path)
    while not probe.exists():
        if probe.parent == probe:
            return False
        probe = probe.parent
    return probe.is_dir() and os.access(probe, os.W_OK | os.X_OK)


def device_capabilities(core: ov.Core, device: str) -> list[str]:
    """``OPTIMIZATION_CAPABILITIES`` of a physical device (empty when it is absent or does not say)."""
    return [str(c).upper() for c in (_prop(core, device, "OPTIMIZATION_CAPABILITIES") or [])]


def check_precision(spec: DeviceSpec, precision: str | None, capabilities: Mapping[str, Sequence[str]]) -> None:
    """Raise :class:`DeviceError` when a named device lacks the capability an explicit precision needs.

    ``capabilities`` maps device names to their ``OPTIMIZATION_CAPABILITIES`` (see
    :func:`device_capabilities`); devices missing from it are not checked. (``--precision bf16`` on a CPU
    without BF16 would otherwise be silently ignored by the plugin.)
    """
    need = {"bf16": "BF16", "f16": "FP16"}.get(str(precision or "").lower())
    if need is None:
        return
    for name in spec.physical:
        caps = [c.upper() for c in capabilities.get(name, ())]
        if caps and need not in caps:
            raise DeviceError(
                f"device '{name}' has no {need} support (capabilities: {', '.join(caps)}); "
                "choose another --precision"
            )
