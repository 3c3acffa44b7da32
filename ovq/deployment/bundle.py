"""A self-contained deploy folder for an industrial PC: model IR(s), pipeline, run script, systemd unit.

Layout of a bundle::

    models/model/model.xml,.bin          the model (converted to IR when given as .onnx/.pt)
    models/model-int8/model.xml,.bin     the quantized model, when the pipeline's quantize section made it
    pipeline.yaml                        the pipeline, paths rewritten relative to the bundle
    output/                              where the pipeline's video / JSONL sinks write
    requirements.txt                     ovq's runtime dependencies pinned to the versions installed here
    wheels/ovq-<version>-py3-none-any.whl   ovq itself (plus every dependency with ``offline=True``)
    run.sh                               creates .venv next to itself on first use, then runs the pipeline
    install.sh                           as root: service user, copy to the install dir, .venv, enable the unit
    ovq.service                          systemd unit: unprivileged user, restart on failure, hardened
    README.md                            install and run steps

The bundle is built in a temporary folder next to ``out_dir`` and renamed into place at the end.
"""

from __future__ import annotations

import copy
import logging
import os
import re
import shutil
import tempfile
import unicodedata
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

import yaml

from ovq.core.errors import ConfigError, ModelError
from ovq.core.fileio import check_output_dir, is_stream
from ovq.core.metadata import read_info
from ovq.core.urls import ENV_REFERENCE, env_references
from ovq.deployment.build import check_paths, ensure_quantized, quantized_is_fresh, settings_changed
from ovq.deployment.loader import load_pipeline_config
from ovq.deployment.packaging import (
    WHEELS_DIR,
    download_wheels,
    pinned_requirements,
    requirements_text,
    runtime_requirements,
    ship_wheel,
    wheel_requirements,
)
from ovq.deployment.schema import PipelineConfig, is_local_path
from ovq.deployment.unit import DEFAULT_ALLOW_IP, OUTPUT_DIR, SERVICE_FILE, check_allow_ip, service_unit, unit_name
from ovq.model.conversion import MODEL_XML, convert, resolve_model_path
from ovq.model.paths import refuse_urls
from ovq.runtime.compilation import read_model
from ovq.streaming.rolling import format_duration

logger = logging.getLogger(__name__)

MODELS_DIR = "models"


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
    model: str | Path | None,
    pipeline: str | Path,
    out_dir: str | Path,
    *,
    install_dir: str | None = None,
    user: str = "ovq",
    wheel: str | Path | None = None,
    offline: bool = False,
    overwrite: bool = False,
    quantize: bool = True,
    allow_ip: tuple[str, ...] = DEFAULT_ALLOW_IP,
) -> BundleResult:
    """Build a deploy folder for ``model`` running ``pipeline`` (see the module docstring for the layout).

    ``model`` replaces the pipeline's ``model``; ``None`` ships the pipeline's own. When the pipeline has a
    ``quantize`` section, its output is made now (:func:`ovq.deployment.build.ensure_quantized`, minutes) or
    reused when up to date; ``quantize=False`` refuses instead. The quantized IR is shipped and the section is
    dropped, since the target has no dataset. ``${VAR}`` references stay as they are, so no secret from this
    machine lands in the bundle; those in ``model`` and ``quantize`` name files read here, from this machine's
    environment (the shipped file names the bundle's model instead). ``install_dir`` is where the folder will live on the target (default
    :func:`default_install_dir`: ``/opt/ovq/<out_dir name>``); the systemd unit points there.
    """
    out_dir = Path(out_dir)
    check_output_dir(out_dir)  # a file on the way (afile/sub) is named as such, not "File exists"
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise ConfigError(f"{out_dir}: exists and is not empty; pass --force to replace it")
    refuse_urls([model], "a bundle ships a local model; give a model folder, .xml, .onnx or .pt (or leave MODEL out: "
                         "the pipeline's)")
    cfg = load_pipeline_config(pipeline, resolve_env=("model", "quantize"))
    _check_not_an_input(out_dir, [Path(pipeline), cfg.model if model is None else Path(model), wheel, *(
        [cfg.quantize.data, cfg.quantize.output] if cfg.quantize is not None else []), *(
        Path(s.url) for s in cfg.sources if is_local_path(s.url) and "${" not in s.url)])
    install_dir = check_install_dir(install_dir or default_install_dir(out_dir))
    _check_user(user)
    check_allow_ip(allow_ip)
    if isinstance(cfg.model, str):  # a serving URL (ovq.serving): nothing local to ship, not supported yet
        raise ConfigError(f"{cfg.path}: the model is served at {cfg.model}; a bundle ships a local model, so point "
                          "'model' at one (bundling an edge pipeline for a served model is not supported yet)")
    src_model = cfg.model if model is None else Path(model)
    if cfg.quantize is not None:
        if model is not None and src_model.resolve() != cfg.model.resolve():
            raise ConfigError(f"{cfg.path}: the pipeline quantizes its own model {cfg.model}, not {src_model}; "
                              "leave MODEL out or remove the quantize section")
        check_paths(cfg)
    elif not src_model.exists():
        raise ModelError(f"{src_model}: no such file or folder")
    _check_sinks_are_files(cfg)
    run_xml = _quantized(cfg, build=quantize) if cfg.quantize is not None else None
    for warning in [*growing_outputs(cfg), *_ending(cfg)]:
        logger.warning("%s", warning)

    target = out_dir.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    # inside an existing out_dir (the same file system, should it be a mount point), else beside it
    where = target if target.is_dir() else target.parent
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=where))  # private until _share_modes
    try:
        model_rel = _ship_model(src_model, tmp, "model")
        run_rel = _ship_model(run_xml.parent, tmp, "model-int8") if run_xml is not None else model_rel
        wheel_path = ship_wheel(Path(wheel) if wheel else None, tmp / WHEELS_DIR)
        families = {read_info(read_model(tmp / rel)).family for rel in {model_rel, run_rel}}  # plug-ins are pinned
        requires, extras = runtime_requirements(cfg, wheel_requirements(wheel_path), families=families)
        pins = pinned_requirements(requires, extras=extras)
        (tmp / OUTPUT_DIR).mkdir()
        _write(tmp / "pipeline.yaml", rewrite_pipeline(cfg, run_rel))
        _write(tmp / "requirements.txt", requirements_text(pins, wheel_path.name))
        if offline:
            download_wheels(tmp / "requirements.txt", tmp / WHEELS_DIR)
        _write(tmp / "run.sh", run_script(), mode=0o755)
        _write(tmp / "install.sh", _template("install.sh").substitute(
            install_dir=install_dir, user=user, unit=unit_name(install_dir)), mode=0o755)
        _write(tmp / SERVICE_FILE, service_unit(cfg, install_dir, user=user, allow_ip=allow_ip))
        _write(tmp / "README.md", readme(cfg, install_dir=install_dir, user=user, run_model=run_rel,
                                         wheel=wheel_path.name, offline=offline))
        # the shipped pipeline must load as it is (paths inside the bundle, env references intact)
        load_pipeline_config(tmp / "pipeline.yaml", resolve_env=False)
        files = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file())
        _share_modes(tmp)
        _replace_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return BundleResult(
        out_dir=out_dir, model_xml=out_dir / run_rel, pipeline=out_dir / "pipeline.yaml",
        wheel=out_dir / WHEELS_DIR / wheel_path.name, requirements=pins, install_dir=install_dir,
        service=out_dir / SERVICE_FILE, files=files,
    )


def default_install_dir(out_dir: Path) -> str:
    """``/opt/ovq/<out_dir's name>``, spelt with what :func:`check_install_dir` accepts: accents dropped
    (``Bündel`` -> ``Bundel``), any other character not allowed there a ``-``."""
    name = unicodedata.normalize("NFKD", out_dir.resolve().name).encode("ascii", "ignore").decode("ascii")
    name = re.sub(r"[^A-Za-z0-9._+@ -]+", "-", name).strip("- ")
    return f"/opt/ovq/{name if name not in ('', '.', '..') else 'bundle'}"


def check_install_dir(install_dir: str) -> str:
    """The target folder, checked: absolute, outside home folders, and free of characters that the unit,
    the shell scripts or systemd's path escaping would change (a space is fine: every use is quoted)."""
    if not install_dir.startswith("/"):
        raise ConfigError(f"install dir {install_dir!r} must be an absolute path on the target")
    if install_dir.startswith(("/home/", "/root/", "/run/user/")):
        raise ConfigError(f"install dir '{install_dir}': the service hides home folders (ProtectHome); use e.g. /opt/ovq")
    bad = "".join(sorted(set(re.sub(r"[A-Za-z0-9/._+@ -]", "", install_dir))))
    parts = install_dir.rstrip("/").split("/")[1:]
    if not parts:  # install.sh replaces the install dir whole
        raise ConfigError(f"install dir {install_dir!r}: the bundle needs a folder of its own, e.g. /opt/ovq/NAME")
    if bad or any(p in ("", ".", "..") for p in parts):
        shown = repr(bad) if bad else "an empty, '.' or '..' part"
        raise ConfigError(f"install dir {install_dir!r}: {shown} is not allowed there; use letters, digits, "
                          "space and . _ + @ -")
    return install_dir.rstrip("/")


def _check_user(user: str) -> None:
    if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", user) or user == "root":
        raise ConfigError(f"service user '{user}': expected an unprivileged user name like ovq (not root)")


def _check_not_an_input(out_dir: Path, inputs: list[Any]) -> None:
    """:class:`ConfigError` when ``out_dir`` is, or holds, the working folder or one of the bundle's inputs:
    replacing it (``--force``) deleted the pipeline file, the model and whatever else was there, and ``-o .``
    failed half-way ("Device or resource busy") leaving an empty ``..old-*`` folder behind."""
    out = Path(os.path.realpath(out_dir))
    if out == Path.cwd().resolve() or out in Path.cwd().resolve().parents:
        what = "is the current folder" if out == Path.cwd().resolve() else "holds the current folder"
        raise ConfigError(f"{out_dir}: {what}, which replacing the folder would delete; give a new or an empty one")
    for item in inputs:
        if isinstance(item, (str, Path)) and item and not str(item).startswith(("http://", "https://")):
            real = Path(os.path.realpath(item))
            if real == out or out in real.parents:
                raise ConfigError(f"{out_dir}: holds {item}, an input of this bundle, which replacing the folder "
                                  "would delete; give a new or an empty folder")


def _check_sinks_are_files(cfg: PipelineConfig) -> None:
    """:class:`ConfigError` for a video or JSON Lines sink the shipped pipeline cannot write in ``output/``: a pipe
    or a device (``/dev/stdout``: under systemd the service's standard output is the journal's socket, which no
    path opens), or a path from the environment (:func:`_output_name`)."""
    for key, path in (("sinks.video", cfg.sinks.video), ("sinks.jsonl", cfg.sinks.jsonl)):
        if path is not None and (is_stream(path) or str(path).startswith(("/dev/", "/proc/"))):
            raise cfg.where.error(key, f"{path}: a pipe or a device; a service writes its results in the bundle's "
                                       "output/ folder (its standard output is the journal, which no path opens): "
                                       "give a file name, or send the records over MQTT")
    sinks = cfg.raw.get("sinks") or {}
    for kind in ("video", "jsonl"):
        value = sinks.get(kind)
        text = value.get("path") if isinstance(value, dict) else value
        if isinstance(text, str) and _output_name(text) is None:
            raise cfg.where.error(f"sinks.{kind}", f"{text}: a path from the environment; the service writes in the "
                                                   "bundle's output/ folder, so write the file name there (a "
                                                   "reference inside the name is fine: cam-${LINE}.mp4)")


def _output_name(text: str) -> str | None:
    """The file name of a sink path as written: after its last ``/`` outside ``${...}`` references. ``None`` when
    a reference in it may stand for a path (a whole-name ``${OUT}``, or a default holding a ``/``)."""
    masked = ENV_REFERENCE.sub(lambda m: "_" * len(m.group()), text)
    name = text[masked.rfind("/") + 1:]
    if ENV_REFERENCE.fullmatch(name) or any("/" in (m.group(2) or "") for m in ENV_REFERENCE.finditer(name)):
        return None
    return name


def _write(path: Path, text: str, *, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)


def _share_modes(root: Path) -> None:
    """Folders 755, files 644 (755 when executable), whatever the builder's umask: the folder is installed for
    another user (the service's), and install.sh copies it with ``cp -a``, modes and all. Under ``umask 077``
    models/ and wheels/ came out 0700 (mkdir, mkdtemp, the converter) and the service could not read its model."""
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        if path.is_dir():
            path.chmod(0o755)
        else:
            path.chmod(0o755 if path.stat().st_mode & 0o100 else 0o644)


def _replace_dir(tmp: Path, out_dir: Path) -> None:
    """Make the bundle built in ``tmp`` the one at ``out_dir``: a new ``out_dir`` is ``tmp`` renamed. An existing
    one holds ``tmp``; no rename replaces it when it is a mount point (a USB stick, a volume: "Device or resource
    busy"), so its entries move into a folder inside it and ``tmp``'s take their place, all or none."""
    if tmp.parent != out_dir:
        os.replace(tmp, out_dir)
        return
    trash = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir))
    old = [p.name for p in out_dir.iterdir() if p not in (tmp, trash)]
    new = [p.name for p in tmp.iterdir()]
    done_old: list[str] = []
    done_new: list[str] = []
    try:
        for name in old:
            os.replace(out_dir / name, trash / name)
            done_old.append(name)
        for name in new:
            os.replace(tmp / name, out_dir / name)
            done_new.append(name)
    except BaseException:
        for name in reversed(done_new):
            os.replace(out_dir / name, tmp / name)
        for name in reversed(done_old):
            os.replace(trash / name, out_dir / name)
        trash.rmdir()
        raise
    tmp.rmdir()
    shutil.rmtree(trash, ignore_errors=True)


def growing_outputs(cfg: PipelineConfig) -> list[str]:
    """What a service running ``cfg`` for months would write as one ever-growing file (a video without
    ``segment``, JSON Lines without ``rotate``): a warning each, saying what to set."""
    s, where = cfg.sinks, cfg.path.name if cfg.path is not None else "the pipeline"
    found = []
    if s.video is not None and s.video_segment is None:
        found.append(f"{where}: sinks.video: the service would write one video file for as long as it runs, "
                     "playable only once it stops (a kill loses all of it), growing until the disk is full; "
                     "set sinks.video.segment (e.g. 10m) and keep (e.g. 144: a day)")
    if s.jsonl is not None and s.jsonl_rotate is None and not is_stream(s.jsonl):
        found.append(f"{where}: sinks.jsonl: the service would write one JSON Lines file that grows until the disk "
                     "is full; set sinks.jsonl.rotate (e.g. 1h or 100MB) and keep (e.g. 48)")
    return found


def _ending(cfg: PipelineConfig) -> list[str]:
    """A ``max_frames`` (fine for a try, the demo's 300) would end the service: the run exits 0 after it, which
    ``Restart=on-failure`` leaves stopped."""
    if cfg.max_frames is None:
        return []
    where = cfg.path.name if cfg.path is not None else "the pipeline"
    return [(f"{where}: max_frames: the service would stop after {cfg.max_frames} frames a stream and not be "
             "restarted (a finished run is no failure); remove max_frames (or set it to null) for a service that "
             "runs until stopped, and use ./run.sh --max-frames N for a short try")]


# --- models --------------------------------------------------------------------------------------------------


def _ship_model(src: Path, root: Path, name: str) -> str:
    """Copy an ovq IR (or convert another model to one) into ``root/models/<name>``; returns the relative .xml."""
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


def _quantized(cfg: PipelineConfig, *, build: bool) -> Path:
    """The up-to-date quantized model of the pipeline's ``quantize`` section: made now unless ``build`` is off."""
    q = cfg.quantize
    assert q is not None
    if quantized_is_fresh(q, cfg.model):
        return ensure_quantized(q, cfg.model)
    if not build:
        changed = settings_changed(q, cfg.model) if q.output.exists() else ""
        state = ("does not exist yet" if not q.output.exists() else f"was made with other settings ({changed})"
                 if changed else f"is older than {cfg.model} or {q.data}")
        raise ConfigError(f"{cfg.path}: quantize.output {q.output} {state}; bundle without --no-quantize to "
                          "make it now, or run `ovq pipeline FILE --max-frames 1` first")
    logger.info("%s: quantizing for the bundle (reused next time while up to date)", cfg.path.name)
    return ensure_quantized(q, cfg.model)


def rewrite_pipeline(cfg: PipelineConfig, model_rel: str) -> str:
    """The pipeline YAML as shipped: bundle-relative model and outputs, no quantize section, env refs intact."""
    data: dict[str, Any] = copy.deepcopy(cfg.raw)
    data["model"] = model_rel
    data.pop("quantize", None)
    if not isinstance(data.get("cache", True), bool):
        data.pop("cache")  # a build-machine folder; the service sets OVQ_CACHE_DIR
    sinks = data.get("sinks") or {}
    for kind in ("video", "jsonl"):  # checked by _check_sinks_are_files
        if isinstance(sinks.get(kind), dict) and sinks[kind].get("path") is not None:
            sinks[kind]["path"] = f"{OUTPUT_DIR}/{_output_name(str(sinks[kind]['path']))}"
        elif sinks.get(kind) is not None:
            sinks[kind] = f"{OUTPUT_DIR}/{_output_name(str(sinks[kind]))}"
    mqtt, parsed_mqtt = sinks.get("mqtt"), cfg.sinks.mqtt
    for key in ("ca_file", "cert_file", "key_file"):  # TLS files stay where they are (a key is no file to copy)
        local = getattr(parsed_mqtt, key, None)
        if isinstance(mqtt, dict) and local is not None and "${" not in str(mqtt.get(key)):
            mqtt[key] = os.path.abspath(local)  # relative to the working folder, as a source's below
            logger.warning("sinks.mqtt.%s (%s) is a local file: it must exist at that path on the target, readable "
                           "by the service's user", key, mqtt[key])
    sources = data.get("sources")
    if not isinstance(sources, list):
        sources = [sources]
        data["sources"] = sources
    for i, (item, parsed) in enumerate(zip(sources, cfg.sources, strict=True)):
        raw_url = item.get("url") if isinstance(item, dict) else item
        if isinstance(raw_url, str) and "${" not in raw_url and is_local_path(parsed.url):
            # parsed.url is relative to the working folder when the pipeline was named by a relative path
            # (cfg/p.yaml's ../media/clip.mp4 reads media/clip.mp4); the bundle would read it as its own file
            local = os.path.abspath(parsed.url)
            logger.warning("source %d (%s) is a local file: it must exist at that path on the target", i, local)
            if isinstance(item, dict):
                item["url"] = local
            else:
                sources[i] = local
    header = (
        f"# Pipeline shipped by `ovq bundle` from {cfg.path.name}.\n"
        "# Paths are relative to this file. ${VAR} values come from the environment\n"
        "# (the service reads /etc/ovq/ovq.env, then its own /etc/ovq/ovq-NAME.env: README.md).\n"
        "# Check it with: ./run.sh --check\n"
    )
    return header + yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)


# --- scripts, unit and README: text files under templates/, filled in with string.Template ---------------------


def _template(name: str) -> Template:
    """A file of ``templates/`` (shipped as package data): ``${name}`` fields, ``$$`` for a literal ``$``."""
    return Template(resources.files("ovq.deployment").joinpath("templates", name).read_text(encoding="utf-8"))


def run_script() -> str:
    """``run.sh``: set up ``.venv`` next to the bundle when missing or outdated, then run the pipeline."""
    return resources.files("ovq.deployment").joinpath("templates", "run.sh").read_text(encoding="utf-8")


def readme(
    cfg: PipelineConfig, *, install_dir: str, user: str, run_model: str, wheel: str, offline: bool
) -> str:
    """The bundle's README: what is inside and how to install, check, run and watch it."""
    d = install_dir.rstrip("/")
    mqtt = cfg.sinks.mqtt
    env_lines: list[str] = []
    if mqtt is not None:
        if mqtt.url is None:
            env_lines.append(f"{mqtt.url_env}=mqtt://broker.local:1883")
        env_lines += ["OVQ_MQTT_USERNAME=...", "OVQ_MQTT_PASSWORD=..."]
    known = {line.split("=")[0] for line in env_lines}
    shipped = {k: v for k, v in cfg.raw.items() if k not in ("model", "quantize", "cache")}  # as rewrite_pipeline
    env_lines += [f"{v}=..." for v in env_references(shipped) if v not in known]
    return _template("README.md").substitute(
        name=cfg.path.stem if cfg.path is not None else "pipeline",
        run_model=run_model,
        outputs=", ".join(_outputs(cfg)) or "none (see pipeline.yaml)",
        wheel=wheel,
        network=("every dependency is in `wheels/` (built with --offline): no network needed" if offline
                 else "pip downloads the pinned dependencies from PyPI (or your mirror: set PIP_INDEX_URL)"),
        user=user,
        install_dir=d,
        unit=unit_name(d),
        runtime_dir=unit_name(d).removesuffix(".service"),
        env_lines="\n".join(env_lines or ["# nothing needed by this pipeline yet"]),
        stats_interval=f"{cfg.stats_interval:g}",
        device=cfg.device,
    )


def _outputs(cfg: PipelineConfig) -> list[str]:
    """The README's words for the files in output/: ``output/cam.*.mp4`` (10m segments, the newest 144 kept)."""
    s, found = cfg.sinks, []
    for path, limit, keep, what in ((s.video, s.video_segment and format_duration(s.video_segment), s.video_keep,
                                     "segments"), (s.jsonl, s.jsonl_rotate, s.jsonl_keep, "files")):
        if path is None:
            continue
        if limit is None:
            found.append(f"`{OUTPUT_DIR}/{path.name}`")
            continue
        kept = f", the newest {keep} kept" if keep is not None else ", none deleted"
        current = f"; `{OUTPUT_DIR}/{path.name}` is the one in progress" if what == "files" else ""
        found.append(f"`{OUTPUT_DIR}/{path.stem}.*{path.suffix}` ({limit} {what}{kept}{current})")
    return found
