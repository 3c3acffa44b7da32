"""Shipping ovq itself: its wheel (built from the source tree, or given), and its dependencies pinned to the
versions installed here, so the target runs what was tested together.
"""

from __future__ import annotations

import logging
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from email.parser import Parser
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from ovq.core.errors import DependencyError
from ovq.deployment.schema import PipelineConfig
from ovq.model.decoders import family_distribution

logger = logging.getLogger(__name__)

WHEELS_DIR = "wheels"
_SOURCE_FILES = ("pyproject.toml", "README.md", "LICENSE", "LICENSE.md", "setup.cfg", "MANIFEST.in")


def source_tree() -> Path | None:
    """The folder holding ovq's ``pyproject.toml`` when ovq runs from a source checkout, else ``None``."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").exists() and (root / "ovq" / "__init__.py").exists() else None


def build_requirements_met(pyproject: Path) -> bool:
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
        if build_requirements_met(src / "pyproject.toml"):
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


def ship_wheel(wheel: Path | None, dest: Path) -> Path:
    if wheel is None:
        return build_wheel(dest)
    if not wheel.is_file() or not wheel.name.startswith("ovq-") or wheel.suffix != ".whl":
        raise DependencyError(f"{wheel}: expected an ovq wheel file (ovq-<version>-...whl)")
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(wheel, dest / wheel.name)
    return dest / wheel.name


def wheel_requirements(wheel: Path) -> list[str]:
    """``Requires-Dist`` lines of a wheel's METADATA (what the shipped ovq actually declares)."""
    with zipfile.ZipFile(wheel) as zf:
        name = next((n for n in zf.namelist() if n.endswith(".dist-info/METADATA")), None)
        if name is None:
            raise DependencyError(f"{wheel}: no METADATA in the wheel")
        meta = Parser().parsestr(zf.read(name).decode("utf-8"))
    return meta.get_all("Requires-Dist") or []


def pinned_requirements(requires: list[str], *, extras: Sequence[str] = ()) -> list[str]:
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


def runtime_requirements(
    cfg: PipelineConfig, requires: list[str], *, families: Sequence[str] = ()
) -> tuple[list[str], list[str]]:
    """The requirement lines and extras the pipeline needs: ovq's own plus its features' (MQTT, tracking)
    and the packages providing the models' plug-in decoder ``families``.

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
    for family in sorted(set(families)):
        provider = family_distribution(family)  # None for a built-in family
        if provider is not None:
            extra_lines.append(provider[0])
    return [*requires, *extra_lines], extras


def requirements_text(pins: list[str], wheel_name: str) -> str:
    where = f"Python {platform.python_version()} on {sys.platform} {platform.machine()}"
    return (
        f"# ovq's runtime dependencies, pinned to the versions tested together ({where}).\n"
        f"# ovq itself is {WHEELS_DIR}/{wheel_name}; run.sh installs both.\n" + "\n".join(pins) + "\n"
    )


def download_wheels(requirements: Path, dest: Path) -> None:
    """Download every pinned dependency into ``dest`` so the target installs without network access."""
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "-d", str(dest), "-r",
           str(requirements)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["pip download failed"]
        raise DependencyError(f"downloading the pinned wheels failed: {tail[0]}")
    (dest / "OFFLINE").write_text("every pinned dependency is in this folder; run.sh installs with --no-index\n")
