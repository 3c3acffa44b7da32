"""OpenVINO device strings: parse them, check them against this machine, and the compile settings they imply.

A device string is what OpenVINO's ``compile_model`` takes: a physical device (``CPU``, ``GPU``, ``GPU.1``,
``NPU``) or a virtual one with a device list (``AUTO``, ``AUTO:GPU,CPU``, ``AUTO:-CPU``, ``MULTI:GPU,CPU``,
``HETERO:GPU,CPU``, ``BATCH:GPU(4)``). :func:`parse_device` checks the syntax; :func:`check_device` checks it
against the devices this machine has (``openvino.Core().available_devices``) and raises
:class:`~ovq.core.errors.DeviceError` with one line listing what exists.

Policy for device lists: ``MULTI``, ``HETERO`` and ``BATCH`` use every device they name, so every one must be
present. ``AUTO`` *chooses* among its candidates, so ``AUTO:GPU,CPU`` is valid on a machine with only a CPU (the
same pipeline file then runs on a whole fleet, with and without GPU); at least one candidate must be present.

What the devices can do is in :mod:`ovq.runtime.capabilities`; the CPU's own facts in :mod:`ovq.runtime.cpu`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import openvino as ov

from ovq.core.errors import DeviceError, ModelError

logger = logging.getLogger(__name__)

VIRTUAL_DEVICES = ("AUTO", "MULTI", "HETERO", "BATCH")
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
