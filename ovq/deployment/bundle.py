"""A self-contained deploy folder for an industrial PC: model IR(s), pipeline, run script, systemd unit.

Layout of a bundle::

    models/model/model.xml,.bin          the model (converted to IR when given as .onnx/.pt)
    models/model-int8/model.xml,.bin     the quantized model, when the pipeline's quantize section made it
    pipeline.yaml                        the pipeline, paths rewritten relative to the bundle
    output/                              where the pipeline's video / JSONL sinks write
    requirements.txt                     ovq's runtime dependencies pinned to the versions installed here
    wheels/ovq-<version>-py3-none-any.whl   ovq itself (plus every dependency with ``offline=True``)
    run.sh                               creates .venv next to itself on first use, then runs the pipeline
    ovq.service                          systemd unit: unprivileged user, restart on failure, hardened
    README.md                            install and run steps

The bundle is built in a temporary folder next to ``out_dir`` and renamed into place at the end.
"""

from __future__ import annotations

import copy
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from email.parser import Parser
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml
from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from ovq.core.errors import ConfigError, DependencyError, ModelError
from ovq.core.urls import env_references
from ovq.deployment.build import quantized_is_fresh
from ovq.deployment.loader import load_pipeline_config
from ovq.deployment.schema import PipelineConfig, is_local_path

logger = logging.getLogger(__name__)

MODELS_DIR = "models"
OUTPUT_DIR = "output"
WHEELS_DIR = "wheels"
SERVICE_FILE = "ovq.service"
_SOURCE_FILES = ("pyproject.toml", "README.md", "LICENSE", "LICENSE.md", "setup.cfg", "MANIFEST.in")


@dataclass
class BundleResult:
    """What :func:`bundle` wrote."""

    out_dir: Path
    model_xml: Path
    pipeline: Path
    wheel: Path
    requirements: list[str]
    install_dir: str
    service: Path
    files: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [
            f"wrote {self.out_dir} ({len(self.files)} files)",
            f"  model:        {self.model_xml.relative_to(self.out_dir)}",
            f"  pipeline:     {self.pipeline.relative_to(self.out_dir)}",
            f"  ovq wheel:    {self.wheel.relative_to(self.out_dir)}",
            f"  requirements: {len(self.requirements)} pinned packages",
            f"  service:      {self.service.name} (install dir {self.install_dir})",
            f"next: copy {self.out_dir} to {self.install_dir} on the target and follow its README.md",
        ]


def build_bundle(
    model: str | Path,
    pipeline: str | Path,
    out_dir: str | Path,
    *,
    install_dir: str | None = None,
    user: str = "ovq",
    wheel: str | Path | None = None,
    offline: bool = False,
    overwrite: bool = False,
) -> BundleResult:
    """Build a deploy folder for ``model`` running ``pipeline`` (see the module docstring for the layout).

    ``model`` replaces the pipeline's ``model``. When the pipeline has a ``quantize`` section, its output must
    already exist and be up to date (run the pipeline, or ``ovq quantize``, once): the quantized IR is shipped
    and the section is dropped, since the target has no dataset. ``${VAR}`` references stay as they are, so no
    secret from this machine lands in the bundle. ``install_dir`` is where the folder will live on the target
    (default ``/opt/ovq/<out_dir name>``); the systemd unit points there.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise ConfigError(f"{out_dir}: exists and is not empty; pass --force to replace it")
    cfg = load_pipeline_config(pipeline, resolve_env=False)
    install_dir = install_dir or f"/opt/ovq/{out_dir.resolve().name}"
    if not install_dir.startswith("/"):
        raise ConfigError(f"install dir '{install_dir}' must be an absolute path on the target")
    if install_dir.startswith(("/home/", "/root/", "/run/user/")):
        raise ConfigError(f"install dir '{install_dir}': the service hides home folders (ProtectHome); use e.g. /opt/ovq")
    _check_user(user)
    src_model = Path(model)
    if not src_model.exists():
        raise ModelError(f"{src_model}: no such file or folder")

    parent = out_dir.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the service user must read it
    try:
        model_rel = _ship_model(src_model, tmp, "model")
        run_rel = model_rel
        if cfg.quantize is not None:
            run_rel = _ship_quantized(cfg, tmp)
        wheel_path = _ship_wheel(Path(wheel) if wheel else None, tmp / WHEELS_DIR)
        requires, extras = _runtime_requirements(cfg, _wheel_requirements(wheel_path))
        pins = pinned_requirements(requires, extras=extras)
        (tmp / OUTPUT_DIR).mkdir()
        _write(tmp / "pipeline.yaml", rewrite_pipeline(cfg, run_rel))
        _write(tmp / "requirements.txt", _requirements_text(pins, wheel_path.name))
        if offline:
            _download_wheels(tmp / "requirements.txt", tmp / WHEELS_DIR)
        _write(tmp / "run.sh", run_script(), mode=0o755)
        _write(tmp / SERVICE_FILE, service_unit(install_dir, user=user, description=cfg.path.stem))
        _write(tmp / "README.md", readme(cfg, install_dir=install_dir, user=user, run_model=run_rel,
                                         wheel=wheel_path.name, offline=offline))
        # the shipped pipeline must load as it is (paths inside the bundle, env references intact)
        load_pipeline_config(tmp / "pipeline.yaml", resolve_env=False)
        files = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file())
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return BundleResult(
        out_dir=out_dir, model_xml=out_dir / run_rel, pipeline=out_dir / "pipeline.yaml",
        wheel=out_dir / WHEELS_DIR / wheel_path.name, requirements=pins, install_dir=install_dir,
        service=out_dir / SERVICE_FILE, files=files,
    )


def _check_user(user: str) -> None:
    if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", user) or user == "root":
        raise ConfigError(f"service user '{user}': expected an unprivileged user name like ovq (not root)")


def _write(path: Path, text: str, *, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)


def _replace_dir(tmp: Path, out_dir: Path) -> None:
    """Rename ``tmp`` to ``out_dir``; an existing ``out_dir`` is moved aside first and removed after."""
    if not out_dir.exists():
        os.replace(tmp, out_dir)
        return
    trash = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=tmp.parent))
    os.replace(out_dir, trash / "old")
    try:
        os.replace(tmp, out_dir)
    except BaseException:
        os.replace(trash / "old", out_dir)
        raise
    finally:
        shutil.rmtree(trash, ignore_errors=True)


# --- models --------------------------------------------------------------------------------------------------


def _ship_model(src: Path, root: Path, name: str) -> str:
    """Copy an ovq IR (or convert another model to one) into ``root/models/<name>``; returns the relative .xml."""
    from ovq.model.conversion import MODEL_XML, convert, resolve_model_path
    from ovq.core.metadata import read_info
    from ovq.runtime.compilation import read_model

    dest = root / MODELS_DIR / name
    path = resolve_model_path(src)
    if path.suffix.lower() == ".xml" and read_info(read_model(path)) is not None:
        dest.mkdir(parents=True)
        shutil.copy2(path, dest / MODEL_XML)
        shutil.copy2(path.with_suffix(".bin"), dest / "model.bin")
    else:
        logger.info("converting %s to IR for the bundle", path)
        convert(path, dest)
    return f"{MODELS_DIR}/{name}/{MODEL_XML}"


def _ship_quantized(cfg: PipelineConfig, root: Path) -> str:
    q = cfg.quantize
    assert q is not None
    if not q.output.exists():
        raise ConfigError(
            f"{cfg.path}: quantize.output {q.output} does not exist yet; run `ovq pipeline {cfg.path}` "
            "(or ovq quantize) once to make it, or remove the quantize section"
        )
    if not quantized_is_fresh(q, cfg.model):
        raise ConfigError(
            f"{cfg.path}: quantize.output {q.output} is older than {cfg.model} or {q.data}; "
            f"run `ovq pipeline {cfg.path} --max-frames 1` to quantize again first"
        )
    return _ship_model(q.output, root, "model-int8")


def rewrite_pipeline(cfg: PipelineConfig, model_rel: str) -> str:
    """The pipeline YAML as shipped: bundle-relative model and outputs, no quantize section, env refs intact."""
    data: dict[str, Any] = copy.deepcopy(cfg.raw)
    data["model"] = model_rel
    data.pop("quantize", None)
    if not isinstance(data.get("cache", True), bool):
        data.pop("cache")  # a build-machine folder; the service sets OVQ_CACHE_DIR
    sinks = data.get("sinks") or {}
    if isinstance(sinks.get("video"), dict) and sinks["video"].get("path") is not None:
        sinks["video"]["path"] = f"{OUTPUT_DIR}/{Path(str(sinks['video']['path'])).name}"
    elif sinks.get("video") is not None:
        sinks["video"] = f"{OUTPUT_DIR}/{Path(str(sinks['video'])).name}"
    if sinks.get("jsonl") is not None:
        sinks["jsonl"] = f"{OUTPUT_DIR}/{Path(str(sinks['jsonl'])).name}"
    sources = data.get("sources")
    if not isinstance(sources, list):
        sources = [sources]
        data["sources"] = sources
    for i, (item, parsed) in enumerate(zip(sources, cfg.sources, strict=True)):
        raw_url = item.get("url") if isinstance(item, dict) else item
        if isinstance(raw_url, str) and "${" not in raw_url and is_local_path(parsed.url):
            logger.warning("source %d (%s) is a local file: it must exist at that path on the target", i, parsed.url)
            if isinstance(item, dict):
                item["url"] = parsed.url
            else:
                sources[i] = parsed.url
    header = (
        f"# Pipeline shipped by `ovq bundle` from {cfg.path.name}.\n"
        "# Paths are relative to this file. ${VAR} values come from the environment\n"
        "# (the service reads /etc/ovq/ovq.env). Check it with: ./run.sh --check\n"
    )
    return header + yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)


# --- the ovq wheel and pinned requirements --------------------------------------------------------------------


def source_tree() -> Path | None:
    """The folder holding ovq's ``pyproject.toml`` when ovq runs from a source checkout, else ``None``."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").exists() and (root / "ovq" / "__init__.py").exists() else None


def _build_requirements_met(pyproject: Path) -> bool:
    """Whether the installed packages satisfy ``[build-system].requires`` (then no isolated build is needed)."""
    import tomllib

    try:
        requires = tomllib.loads(pyproject.read_text(encoding="utf-8"))["build-system"]["requires"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return False
    for line in requires:
        req = Requirement(line)
        try:
            version = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            return False
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            return False
    return True


def build_wheel(dest: Path) -> Path:
    """Build ovq's wheel from the source tree into ``dest``.

    The sources are copied to a temporary folder first, so nothing is written into the checkout. When the
    installed build backend satisfies ``[build-system].requires`` the build runs without isolation (offline);
    otherwise pip fetches the backend into an isolated build environment.
    """
    root = source_tree()
    if root is None:
        raise DependencyError("cannot find ovq's source tree to build a wheel; pass --wheel PATH to an ovq wheel")
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ovq-wheel-") as work:
        src = Path(work) / "src"
        src.mkdir()
        for name in _SOURCE_FILES:
            if (root / name).exists():
                shutil.copy2(root / name, src / name)
        if not (src / "README.md").exists():
            (src / "README.md").write_text("ovq\n", encoding="utf-8")
        shutil.copytree(root / "ovq", src / "ovq", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        out = Path(work) / "dist"
        if _build_requirements_met(src / "pyproject.toml"):
            isolation = ["--no-build-isolation"]
        else:
            logger.info("the installed setuptools does not meet ovq's build requirements; pip fetches one")
            isolation = []  # pip's default: an isolated build environment with the declared backend
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-q", "-w", str(out), str(src)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wheels = sorted(out.glob("ovq-*.whl"))
        if proc.returncode != 0 or not wheels:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no wheel produced"]
            raise DependencyError(f"building the ovq wheel failed: {tail[0]}")
        target = dest / wheels[0].name
        shutil.copy2(wheels[0], target)
    logger.info("built %s", target.name)
    return target


def _ship_wheel(wheel: Path | None, dest: Path) -> Path:
    if wheel is None:
        return build_wheel(dest)
    if not wheel.is_file() or not wheel.name.startswith("ovq-") or wheel.suffix != ".whl":
        raise DependencyError(f"{wheel}: expected an ovq wheel file (ovq-<version>-...whl)")
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(wheel, dest / wheel.name)
    return dest / wheel.name


def _wheel_requirements(wheel: Path) -> list[str]:
    """``Requires-Dist`` lines of a wheel's METADATA (what the shipped ovq actually declares)."""
    with zipfile.ZipFile(wheel) as zf:
        name = next((n for n in zf.namelist() if n.endswith(".dist-info/METADATA")), None)
        if name is None:
            raise DependencyError(f"{wheel}: no METADATA in the wheel")
        meta = Parser().parsestr(zf.read(name).decode("utf-8"))
    return meta.get_all("Requires-Dist") or []


def pinned_requirements(requires: list[str], *, extras: list[str] = ()) -> list[str]:
    """``name==version`` for every runtime dependency (and theirs, recursively) as installed here.

    Markers are evaluated for this interpreter and platform; a dependency that is not installed here is an
    error (the pins must be versions that were tested together).
    """
    env = default_environment()
    pins: dict[str, str] = {}
    todo: list[tuple[str, tuple[str, ...]]] = []
    for line in requires:
        todo.append((line, tuple(extras)))
    while todo:
        line, active = todo.pop(0)
        try:
            req = Requirement(line)
        except InvalidRequirement as exc:
            raise DependencyError(f"cannot parse requirement '{line}': {exc}") from None
        if req.marker is not None and not any(req.marker.evaluate({**env, "extra": e}) for e in ("", *active)):
            continue
        key = canonicalize_name(req.name)
        if key in pins:
            continue
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            raise DependencyError(f"cannot pin '{req.name}': it is not installed here (pip install {req.name})") from None
        if req.specifier and not req.specifier.contains(dist.version, prereleases=True):
            raise DependencyError(f"installed {req.name} {dist.version} does not satisfy '{line}'")
        pins[key] = dist.version
        for sub in dist.requires or []:
            todo.append((sub, tuple(req.extras)))
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


# Pipeline features that need more than ovq's core dependencies: ovq's extra, and the packages it stands for.
FEATURE_EXTRAS: dict[str, tuple[str, ...]] = {"mqtt": ("paho-mqtt",), "track": ("trackers",)}


def _runtime_requirements(cfg: PipelineConfig, requires: list[str]) -> tuple[list[str], list[str]]:
    """The requirement lines and extras the pipeline needs: ovq's own plus its features' (MQTT, tracking).

    A feature whose extra the wheel declares is pinned through the extra; otherwise through the packages
    it stands for (:data:`FEATURE_EXTRAS`), which must then be installed here.
    """
    features = [name for name, used in (("mqtt", cfg.sinks.mqtt is not None), ("track", cfg.track)) if used]
    declared = {m for line in requires for m in re.findall(r"""extra\s*==\s*["']([^"']+)["']""", line)}
    extras = [f for f in features if f in declared]
    extra_lines: list[str] = []
    for feature in (f for f in features if f not in declared):
        for pkg in FEATURE_EXTRAS[feature]:
            try:
                metadata.version(pkg)
            except metadata.PackageNotFoundError:
                raise DependencyError(
                    f"{cfg.path}: the pipeline uses {feature} but {pkg} is not installed here, so the bundle "
                    f"cannot pin a tested version: pip install {pkg}"
                ) from None
            extra_lines.append(pkg)
    return [*requires, *extra_lines], extras


def _requirements_text(pins: list[str], wheel_name: str) -> str:
    where = f"Python {platform.python_version()} on {sys.platform} {platform.machine()}"
    return (
        f"# ovq's runtime dependencies, pinned to the versions tested together ({where}).\n"
        f"# ovq itself is {WHEELS_DIR}/{wheel_name}; run.sh installs both.\n" + "\n".join(pins) + "\n"
    )


def _download_wheels(requirements: Path, dest: Path) -> None:
    """Download every pinned dependency into ``dest`` so the target installs without network access."""
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "-d", str(dest), "-r",
           str(requirements)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["pip download failed"]
        raise DependencyError(f"downloading the pinned wheels failed: {tail[0]}")
    (dest / "OFFLINE").write_text("every pinned dependency is in this folder; run.sh installs with --no-index\n")


# --- scripts and unit ----------------------------------------------------------------------------------------


def run_script() -> str:
    """``run.sh``: set up ``.venv`` next to the bundle when missing or outdated, then run the pipeline."""
    return r"""#!/usr/bin/env bash
# Run this bundle's pipeline.
#   ./run.sh --setup          create/refresh .venv next to this script (as the owner of this folder), then exit
#   ./run.sh [options]        run the pipeline; options go to `ovq pipeline` (--check, --max-frames N, --device D)
# Environment: OVQ_VENV (venv folder, default ./.venv), PYTHON (interpreter for the venv, default python3),
#              OVQ_VENV_OPTIONS (extra `python -m venv` options), OVQ_CACHE_DIR (compiled-model cache).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${OVQ_VENV:-$HERE/.venv}"
PYTHON="${PYTHON:-python3}"
STAMP="$VENV/.ovq-bundle"
want="$(cat "$HERE/requirements.txt" "$HERE"/wheels/ovq-*.whl | sha256sum | cut -d' ' -f1)"

setup() {
  echo "run.sh: installing into $VENV" >&2
  # shellcheck disable=SC2086
  "$PYTHON" -m venv --clear ${OVQ_VENV_OPTIONS:-} "$VENV"
  local pip=("$VENV/bin/python" -m pip install --disable-pip-version-check -q)
  if [ -f "$HERE/wheels/OFFLINE" ]; then
    pip+=(--no-index --find-links "$HERE/wheels")
  fi
  "${pip[@]}" -r "$HERE/requirements.txt"
  "${pip[@]}" --no-deps --force-reinstall "$HERE"/wheels/ovq-*.whl
  echo "$want" > "$STAMP"
}

if [ "${1:-}" = "--setup" ]; then
  setup
  exit 0
fi
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$want" ]; then
  if [ -w "$(dirname "$VENV")" ] && { [ ! -e "$VENV" ] || [ -w "$VENV" ]; }; then
    setup
  else
    echo "run.sh: $VENV is missing or outdated and not writable here; run '$HERE/run.sh --setup' as its owner" >&2
    exit 1
  fi
fi
cd "$HERE"
exec "$VENV/bin/ovq" pipeline "$HERE/pipeline.yaml" "$@"
"""


def service_unit(install_dir: str, *, user: str = "ovq", description: str = "pipeline") -> str:
    """The systemd unit: runs ``run.sh`` as ``user``, restarts on failure, read-only system but the outputs."""
    d = install_dir.rstrip("/")
    return f"""[Unit]
Description=ovq detection pipeline ({description})
Documentation=file://{d}/README.md
Wants=network-online.target
After=network-online.target
# keep restarting however often it fails: a camera or broker outage must not stop the service for good
StartLimitIntervalSec=0

[Service]
Type=simple
User={user}
Group={user}
WorkingDirectory={d}
# MQTT broker and credentials (OVQ_MQTT_URL, OVQ_MQTT_USERNAME, OVQ_MQTT_PASSWORD), camera passwords
EnvironmentFile=-/etc/ovq/ovq.env
Environment=PYTHONUNBUFFERED=1
Environment=OVQ_CACHE_DIR=%C/ovq/ov_cache
Environment=MPLCONFIGDIR=%C/ovq/matplotlib
CacheDirectory=ovq
ExecStart={d}/run.sh
Restart=on-failure
RestartSec=10
# SIGTERM makes the pipeline drain and close its outputs; it then exits 0
TimeoutStopSec=30
KillSignal=SIGTERM

# hardening: the whole system is read-only except the outputs and the compiled-model cache
NoNewPrivileges=yes
ProtectSystem=strict
ReadWritePaths={d}/{OUTPUT_DIR}
ProtectHome=yes
PrivateTmp=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictSUIDSGID=yes
RestrictRealtime=yes
RestrictNamespaces=yes
LockPersonality=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
CapabilityBoundingSet=
AmbientCapabilities=
SystemCallArchitectures=native
RemoveIPC=yes
ProtectProc=invisible
UMask=0027
# not set on purpose: MemoryDenyWriteExecute (OpenVINO's CPU plugin JIT-compiles kernels),
# PrivateDevices/DevicePolicy (cameras /dev/video*, iGPU /dev/dri, NPU /dev/accel are needed)

[Install]
WantedBy=multi-user.target
"""


def readme(
    cfg: PipelineConfig, *, install_dir: str, user: str, run_model: str, wheel: str, offline: bool
) -> str:
    """The bundle's README: what is inside and how to install, check, run and watch it."""
    d = install_dir.rstrip("/")
    name = Path(d).name
    outputs = [p for p in (cfg.sinks.video, cfg.sinks.jsonl) if p is not None]
    out_line = ", ".join(f"`{OUTPUT_DIR}/{p.name}`" for p in outputs) or "none (see pipeline.yaml)"
    mqtt = cfg.sinks.mqtt
    env_lines: list[str] = []
    if mqtt is not None:
        if mqtt.url is None:
            env_lines.append(f"{mqtt.url_env}=mqtt://broker.local:1883")
        env_lines += ["OVQ_MQTT_USERNAME=...", "OVQ_MQTT_PASSWORD=..."]
    known = {line.split("=")[0] for line in env_lines}
    env_lines += [f"{v}=..." for v in env_references(cfg.raw) if v not in known]
    if not env_lines:
        env_lines = ["# nothing needed by this pipeline yet"]
    net = ("every dependency is in `wheels/` (built with --offline): no network needed" if offline
           else "pip downloads the pinned dependencies from PyPI (or your mirror: set PIP_INDEX_URL)")
    return f"""# ovq deploy bundle: {cfg.path.stem}

Runs `pipeline.yaml` with ovq on this machine, as a systemd service.

| file | what |
|---|---|
| `{run_model}` | the model the pipeline runs (OpenVINO IR with ovq metadata) |
| `pipeline.yaml` | the pipeline (paths relative to this folder; `${{VAR}}` values from the environment) |
| `output/` | what the pipeline writes: {out_line} |
| `requirements.txt`, `wheels/{wheel}` | pinned dependencies and ovq itself |
| `run.sh` | creates `.venv` here on first use ({net}), then runs the pipeline |
| `ovq.service` | systemd unit: user `{user}`, restart on failure, read-only system except `output/` |

## Install (as root)

```sh
useradd --system --no-create-home --shell /usr/sbin/nologin {user}
usermod -aG video {user}                   # cameras (/dev/video*)
getent group render && usermod -aG render {user}   # iGPU / NPU (/dev/dri, /dev/accel)
mkdir -p {Path(d).parent} && cp -r . {d}
{d}/run.sh --setup                      # creates {d}/.venv (Python >= 3.11)
chown -R {user}:{user} {d}/output
install -d -m 750 /etc/ovq && install -m 600 /dev/null /etc/ovq/ovq.env   # then edit it (below)
install -m 644 {d}/ovq.service /etc/systemd/system/ovq-{name}.service
systemctl daemon-reload && systemctl enable --now ovq-{name}
```

`/etc/ovq/ovq.env` holds what must not be in files (one `NAME=value` a line): broker and camera URLs,
user names and passwords. The service reads it at start; the pipeline references it as `${{VAR}}`.

```sh
{chr(10).join(env_lines)}
```

## Check and run by hand

```sh
sudo -u {user} {d}/run.sh --check            # validates the file, paths and device; compiles nothing
sudo -u {user} {d}/run.sh --max-frames 100   # a short run
ovq devices                                  # (inside .venv/bin) what this machine has
```

## Watch

```sh
systemctl status ovq-{name}
journalctl -u ovq-{name} -f                  # stats lines every {cfg.stats_interval:g} s, reconnects, errors
```

The device is `{cfg.device}`; an absent device stops the run with one line listing what exists.
Compiled models are cached in `/var/cache/ovq/ov_cache`, so restarts after the first skip compilation.
"""
