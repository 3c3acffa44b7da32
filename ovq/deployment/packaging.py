"""Shipping ovq itself: its wheel (built from the source tree, or given), and its dependencies pinned to the
versions installed here, so the target runs what was tested together.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
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
ZIP_EPOCH = 315532800  # 1980-01-01 00:00:00 UTC, the earliest date a zip entry holds


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
        epoch = _source_date_epoch()
        env = {**os.environ, "SOURCE_DATE_EPOCH": str(epoch)}
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
        wheels = sorted(out.glob("ovq-*.whl"))
        if proc.returncode != 0 or not wheels:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no wheel produced"]
            raise DependencyError(f"building the ovq wheel failed: {tail[0]}")
        target = dest / wheels[0].name
        normalize_wheel(wheels[0], target, epoch)
    logger.info("built %s", target.name)
    return target


def _source_date_epoch() -> int:
    """``$SOURCE_DATE_EPOCH`` when it is set (the reproducible-builds convention), else the zip epoch."""
    try:
        return max(int(os.environ.get("SOURCE_DATE_EPOCH", "")), ZIP_EPOCH)
    except ValueError:
        return ZIP_EPOCH


def normalize_wheel(wheel: Path, target: Path, epoch: int) -> None:
    """Copy ``wheel`` to ``target`` with every entry dated ``epoch`` and mode 0644 (0755 if executable).

    The same tree built twice gave a different wheel each time (the entries carried the build's clock), and a
    checkout under another umask gave other modes; now the bundle's wheel and its checksum are the same bytes
    for the same sources. The backend's entry order (sorted, the dist-info last) and the contents are kept, so
    its RECORD still holds.
    """
    date = time.gmtime(epoch)[:6]
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(target, "w") as dst:
        for entry in src.infolist():
            info = zipfile.ZipInfo(entry.filename, date_time=date)
            info.compress_type = zipfile.ZIP_DEFLATED
            mode = 0o755 if (entry.external_attr >> 16) & 0o111 else 0o644
            info.external_attr = (0o040000 | 0o755 if entry.is_dir() else 0o100000 | mode) << 16
            dst.writestr(info, src.read(entry))


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


Lookup = Callable[[str], "metadata.Distribution"]


def pinned_requirements(
    requires: list[str], *, extras: Sequence[str] = (), resolve_missing: bool = True,
    lookup: Lookup = metadata.distribution,
) -> list[str]:
    """``name==version`` for every runtime dependency (and theirs, recursively).

    Installed packages are pinned to the versions installed here (tested together). Markers are evaluated for
    this interpreter and platform. A dependency that is not installed here (an extra the pipeline needs, such
    as ``ovq[mqtt]`` on a plain install) is resolved from the package index's metadata by pip, constrained to
    the versions pinned so far (:func:`resolve_from_index`); ``resolve_missing=False`` makes it an error.
    ``lookup`` finds an installed distribution (a test hides packages through it).
    """
    env = default_environment()
    pins: dict[str, str] = {}
    missing: dict[str, str] = {}
    todo: list[tuple[str, tuple[str, ...]]] = [(line, tuple(extras)) for line in requires]
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
            dist = lookup(req.name)
        except metadata.PackageNotFoundError:
            req.marker = None
            missing.setdefault(key, str(req))
            continue
        if req.specifier and not req.specifier.contains(dist.version, prereleases=True):
            raise DependencyError(f"installed {req.name} {dist.version} does not satisfy '{line}'")
        pins[key] = dist.version
        for sub in dist.requires or []:
            todo.append((sub, tuple(req.extras)))
    missing = {k: v for k, v in missing.items() if k not in pins}
    if missing:
        if not resolve_missing:
            names = ", ".join(missing)
            raise DependencyError(f"cannot pin {names}: not installed here (pip install {' '.join(missing.values())})")
        pins.update(resolve_from_index(list(missing.values()), pins))
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


def resolve_from_index(requirements: list[str], constraints: dict[str, str]) -> dict[str, str]:
    """Versions pip would install for ``requirements`` (and their dependencies) from the package index, with
    the packages of ``constraints`` held at their versions: ``pip install --dry-run --report``, nothing installed.

    Wheels only, for this interpreter and platform (the bundle's target runs the same Python). Fails with one
    line saying how to get the packages another way when the index cannot be reached or has no fit.
    """
    logger.info("resolving %s from the package index (not installed here)", ", ".join(requirements))
    with tempfile.TemporaryDirectory(prefix="ovq-resolve-") as work:
        pinned = Path(work) / "constraints.txt"
        pinned.write_text("".join(f"{n}=={v}\n" for n, v in sorted(constraints.items())), encoding="utf-8")
        report = Path(work) / "report.json"
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--only-binary=:all:",
               "--disable-pip-version-check", "-q", "--report", str(report), "-c", str(pinned), *requirements]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not report.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["pip failed"]
            raise DependencyError(
                f"cannot pin {', '.join(requirements)}: not installed here and the package index did not resolve "
                f"it ({tail[0].strip()}); install it here first (pip install {' '.join(requirements)}) or give pip "
                "an index (PIP_INDEX_URL)")
        installs = json.loads(report.read_text(encoding="utf-8")).get("install", [])
    found = {canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"] for item in installs}
    return {name: version for name, version in found.items() if name not in constraints}


# Pipeline features that need more than ovq's core dependencies: ovq's extra, and the packages it stands for.
FEATURE_EXTRAS: dict[str, tuple[str, ...]] = {
    "mqtt": ("paho-mqtt",), "track": ("trackers",), "web": ("aiohttp", "prometheus-client"),
}


def runtime_requirements(
    cfg: PipelineConfig, requires: list[str], *, families: Sequence[str] = ()
) -> tuple[list[str], list[str]]:
    """The requirement lines and extras the pipeline needs: ovq's own plus its features' (MQTT, tracking, the live view)
    and the packages providing the models' plug-in decoder ``families``.

    A feature whose extra the wheel declares is pinned through the extra; otherwise through the packages
    it stands for (:data:`FEATURE_EXTRAS`). Either way they need not be installed here
    (:func:`pinned_requirements` resolves what is missing from the package index).
    """
    used = (("mqtt", cfg.sinks.mqtt is not None), ("track", cfg.track), ("web", cfg.serve is not None))
    features = [name for name, on in used if on]
    declared = {m for line in requires for m in re.findall(r"""extra\s*==\s*["']([^"']+)["']""", line)}
    extras = [f for f in features if f in declared]
    extra_lines = [pkg for f in features if f not in declared for pkg in FEATURE_EXTRAS[f]]
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
