"""The bundle's systemd unit: hardened as far as the pipeline allows, from what the pipeline uses.

Devices and network are decided per pipeline (:func:`needs`): a CPU pipeline on a synthetic or file source gets
``PrivateDevices=yes`` and ``PrivateNetwork=yes``; a camera adds ``/dev/video*`` (``char-video4linux``), a
GPU or NPU device (also through ``AUTO``) adds ``/dev/dri`` (``char-drm``) or ``/dev/accel`` (``char-accel``),
stream URLs and MQTT add IPv4/IPv6 limited to ``IPAddressAllow`` (loopback, link-local, multicast and the
private LAN ranges unless told otherwise). ``${VAR:-default}`` sources count as their default; a reference
without a default may be anything, so it allows cameras and network.

Exposure (``systemd-analyze security --offline=true``, systemd 252): 0.5 for the conveyor demo (CPU, synthetic
source), 0.7 for one camera on ``AUTO``, 1.5 for the RTSP+MQTT pipeline on ``AUTO:GPU,CPU`` (before: 3.3 for
all). tests/test_bundle.py holds every shipped pipeline to <= 2.0.
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass
from importlib import resources
from string import Template
from urllib.parse import quote

from ovq.core.errors import ConfigError
from ovq.deployment.schema import PipelineConfig

SERVICE_FILE = "ovq.service"
OUTPUT_DIR = "output"
# where cameras and brokers live on a plant network (RFC 1918) plus this host, link-local and multicast
DEFAULT_ALLOW_IP = ("localhost", "link-local", "multicast", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
_LOCAL_SCHEMES = ("synth", "file")
_REF = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(?::?-(.*))?\}$")


@dataclass(frozen=True)
class Needs:
    """What the service must reach: camera device nodes, GPU / NPU device nodes, the network."""

    camera: bool = False
    gpu: bool = False
    npu: bool = False
    network: bool = False


def needs(cfg: PipelineConfig) -> Needs:
    """What ``cfg`` reaches on the target (see the module docstring)."""
    camera = network = False
    for source in cfg.sources:
        for kind in _source_kinds(source.url):
            camera |= kind == "camera"
            network |= kind == "network"
    network |= cfg.sinks.mqtt is not None or cfg.serve is not None  # a live view listens for browsers
    names = {part.split(".")[0] for part in re.split(r"[:,()]", cfg.device.upper()) if part}
    auto = ":" not in cfg.device and bool(names & {"AUTO", "MULTI", "HETERO"})  # any device may be chosen
    return Needs(camera=camera, gpu="GPU" in names or auto, npu="NPU" in names or auto, network=network)


def _source_kinds(url: str) -> tuple[str, ...]:
    ref = _REF.match(url)
    if ref is not None:
        return ("camera", "network") if ref.group(1) is None else _source_kinds(ref.group(1))
    if url.isdigit() or url.startswith("/dev/video"):
        return ("camera",)
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    return ("network",) if scheme and scheme not in _LOCAL_SCHEMES else ()


def unit_name(install_dir: str) -> str:
    """``ovq-<install folder name>.service``, the name made of characters a unit name may hold."""
    stem = re.sub(r"[^A-Za-z0-9_.:-]+", "-", install_dir.rstrip("/").rsplit("/", 1)[-1]).strip("-") or "pipeline"
    return f"ovq-{stem}.service"


def check_allow_ip(items: tuple[str, ...]) -> tuple[str, ...]:
    """``IPAddressAllow`` entries, checked: ``any``, ``localhost``, ``link-local``, ``multicast`` or an address /
    CIDR prefix (nothing else reaches the unit file)."""
    for item in items:
        if item in ("any", "localhost", "link-local", "multicast"):
            continue
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ConfigError(f"allowed address '{item}': expected an IP address, a CIDR prefix like 10.0.0.0/8, "
                              "or any, localhost, link-local, multicast") from None
    return items


def watchdog_seconds(cfg: PipelineConfig) -> tuple[int, str]:
    """``WatchdogSec``: long enough for a source to stall, be noticed and be reopened after the longest back-off,
    plus a margin for a slow first inference; at least a minute."""
    r = cfg.reconnect
    sec = max(60, math.ceil(r.stall_timeout + r.max_delay + 30)) if r.retry else 60
    why = (f"stall_timeout {r.stall_timeout:g} s + max_delay {r.max_delay:g} s + 30 s" if r.retry
           else "no reconnecting: a lost source ends the run")
    return sec, why


def service_unit(
    cfg: PipelineConfig, install_dir: str, *, user: str = "ovq", allow_ip: tuple[str, ...] = DEFAULT_ALLOW_IP,
) -> str:
    """The unit file for the bundle installed at ``install_dir`` (checked by ``bundle.check_install_dir``:
    no quotes, ``%``, ``$`` or backslashes, so quoting with ``"`` is enough for systemd)."""
    d = install_dir.rstrip("/")
    allow_ip = check_allow_ip(allow_ip)
    need = needs(cfg)
    watchdog, watchdog_reason = watchdog_seconds(cfg)
    allow = [f"DeviceAllow={node} rw" for node, used in (("char-video4linux", need.camera), ("char-drm", need.gpu),
                                                        ("char-accel", need.npu)) if used]
    if allow:
        device_lines = "\n".join(["DevicePolicy=closed", *allow])
        what = [w for w, used in (("cameras /dev/video*", need.camera), ("the iGPU /dev/dri", need.gpu),
                                  ("the NPU /dev/accel", need.npu)) if used]
        device_reason = f"the pipeline uses {', '.join(what)} (device {cfg.device}); nothing else"
    else:
        device_lines = "PrivateDevices=yes"
        device_reason = f"none (device {cfg.device}, no camera): a private /dev with /dev/null, /dev/urandom..."
    if need.network:
        network_lines = "\n".join([
            "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
            "IPAddressDeny=any",
            f"IPAddressAllow={' '.join(allow_ip)}",
        ])
        network_reason = ("RTSP/HTTP cameras or MQTT: IPv4/IPv6 to the addresses allowed (bundle --allow-ip), "
                          "AF_NETLINK for glibc's getaddrinfo, AF_UNIX for the notify socket")
    else:
        network_lines = "PrivateNetwork=yes\nRestrictAddressFamilies=AF_UNIX\nIPAddressDeny=any"
        network_reason = "none (local sources, no MQTT): AF_UNIX only, for the notify socket"
    text = resources.files("ovq.deployment").joinpath("templates", SERVICE_FILE).read_text(encoding="utf-8")
    return Template(text).substitute(
        description=re.sub(r"[^\w .@+-]", "_", cfg.path.stem if cfg.path is not None else "pipeline"),
        doc_url=f"file://{quote(d)}/README.md".replace("%", "%%"),  # %: a unit specifier
        user=user,
        working_dir=d,
        exec_start=f'"{d}/run.sh"',
        output_dir=f'"{d}/{OUTPUT_DIR}"',
        runtime_dir=unit_name(d).removesuffix(".service"),
        watchdog_sec=watchdog,
        watchdog_reason=watchdog_reason,
        device_reason=device_reason,
        device_lines=device_lines,
        network_reason=network_reason,
        network_lines=network_lines,
    )
