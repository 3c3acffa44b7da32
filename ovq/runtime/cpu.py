"""This machine's CPU: its model, the instruction-set flags that decide low-precision speed, and what they mean
for INT8 models (how the CPU sums INT8 products, and when a quantized model may saturate here).

Read from Linux's ``/proc/cpuinfo``; elsewhere the facts are ``unknown``/empty. Everything here that needs the
flags calls :func:`cpu_flags` through this module, so a test patches ``ovq.runtime.cpu.cpu_flags`` to play
another CPU.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ovq.core.errors import DeviceError
from ovq.runtime.devices import parse_device

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
