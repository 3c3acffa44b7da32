"""Model repositories for model servers: OpenVINO Model Server, Triton's OpenVINO backend, KServe manifests.

Layouts, from the servers' documentation::

    ovms:    REPO/config.json                    model_config_list, one entry per model
             REPO/NAME/VERSION/model.xml|bin
    triton:  REPO/NAME/config.pbtxt              backend: "openvino"
             REPO/NAME/VERSION/model.xml|bin
    kserve:  REPO/NAME/VERSION/model.xml|bin     (the OVMS layout, for KServe's OpenVINO serving runtime)
             REPO/NAME.inferenceservice.yaml     an InferenceService (protocol v2) reading STORAGE_URI/NAME

Several models go into one repository; exporting a name again adds the next version and keeps the earlier
ones (the servers serve the newest). The IR carries ovq's metadata, so an edge PC needs only the model's URL.
``target_device`` is always written: OVMS's default prefers a discrete GPU when there is one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openvino as ov

from ovq.core.errors import ConfigError, OutputError, OvqError
from ovq.core.fileio import check_output_dir, free_bytes, write_text_atomic
from ovq.core.metadata import ModelInfo, write_info
from ovq.model.detector import load
from ovq.model.paths import is_version_name, refuse_urls, repository_version
from ovq.runtime.compilation import first_line
from ovq.runtime.devices import parse_device

logger = logging.getLogger(__name__)

FORMATS = ("ovms", "triton", "kserve")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_KUBE_NAME = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")  # scheme://rest, as KServe's storageUri takes
RESERVED_NAMES = ("config.json", "config.pbtxt")  # OVMS's REPO/config.json, Triton's REPO/NAME/config.pbtxt
_TRITON_TYPES = {"u8": "TYPE_UINT8", "f32": "TYPE_FP32", "f16": "TYPE_FP16", "i32": "TYPE_INT32", "i64": "TYPE_INT64"}


@dataclass(frozen=True)
class ExportOptions:
    """How the exported models are to be served."""

    format: str = "ovms"
    device: str = "CPU"  # OVMS target_device, Triton's TARGET_DEVICE parameter
    hint: str = "THROUGHPUT"  # PERFORMANCE_HINT
    nireq: int = 0  # OVMS infer requests, also KServe's OpenVINO runtime's (0: the server's choice)
    storage_uri: str = ""  # kserve: where the cluster finds REPO (s3://..., gs://..., pvc://...)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ConfigError(f"--format {self.format}: expected one of {', '.join(FORMATS)}")
        # as OpenVINO spells it: "cpu" was written as given, and the server could not load the model
        object.__setattr__(self, "device", parse_device(self.device).text)
        if self.hint.upper() not in ("THROUGHPUT", "LATENCY", "CUMULATIVE_THROUGHPUT"):
            raise ConfigError(f"--hint {self.hint}: expected throughput, latency or cumulative_throughput")
        if self.nireq < 0:
            raise ConfigError(f"--nireq {self.nireq}: expected 0 (the server's choice) or more")
        # an option the format writes nowhere was taken without a word (exit 0)
        if self.nireq and self.format == "triton":
            raise ConfigError(f"--nireq {self.nireq}: Triton's OpenVINO backend takes no infer-request count; drop "
                              "--nireq (--format ovms and kserve write it)")
        if self.storage_uri and self.format != "kserve":
            raise ConfigError(f"--storage-uri {self.storage_uri}: only --format kserve writes it (the manifest's "
                              "storageUri); drop it or add --format kserve")
        if self.storage_uri and not _URI.fullmatch(self.storage_uri):  # KServe's webhook refused it at apply time
            raise ConfigError(f"--storage-uri {self.storage_uri!r}: not a URI; expected where the cluster reads the "
                              "repository from, e.g. s3://bucket/models, gs://bucket/models or pvc://claim/models")


@dataclass(frozen=True)
class Exported:
    """One model written into a repository."""

    name: str
    version: int
    path: Path  # REPO/NAME/VERSION
    files: tuple[Path, ...]  # config files written or updated beside it


def export_serving(
    models: Sequence[str | Path], repo: str | Path, *, names: Sequence[str] = (), options: ExportOptions | None = None
) -> list[Exported]:
    """Write ``models`` (folders, ``.xml``, ``.onnx``, ``.pt``) into the repository ``repo``; see the module.

    Every name and every target is checked, and every model loaded, before anything is written; a write that
    fails (a full disk) takes back what this export created, so the repository is as it was."""
    options = options or ExportOptions()
    refuse_urls(models, "export-serving writes model files into a repository; give a model folder, .xml, .onnx or "
                        ".pt (the server has the model's files)")
    repo = Path(repo)
    check_output_dir(repo)  # a file in the way (REPO itself, or a folder above it) is named, before models load
    names = list(names)
    if len(names) > len(models):
        raise ConfigError(f"{len(names)} names for {len(models)} models")
    chosen = [names[i] if i < len(names) else model_stem(m) for i, m in enumerate(models)]
    for name in chosen:
        check_model_name(name)
        _check_targets(repo, name, options)
    if len(set(chosen)) != len(chosen):
        raise ConfigError(f"model names must be unique, got {chosen}; give each one with --name")
    if options.format == "kserve":
        _check_kube_names(repo, chosen)
    if options.format == "ovms":
        _read_ovms_config(repo)  # a broken config.json fails before any model loads; read again under the lock
    loaded = [load(m) for m in models]  # every model loads before anything is written
    made_repo: list[Path] = []
    created: list[Path] = []  # what this export made, taken back if a write fails
    try:
        _mkdir(repo, made_repo)
        with _locked(repo):
            try:
                return _write_all(repo, chosen, loaded, options, created)
            except BaseException:
                for path in reversed(created):
                    if path.is_dir():
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        path.unlink(missing_ok=True)
                raise
    except BaseException:
        for path in made_repo:  # only when empty: another export may have written into it since the lock was let go
            with contextlib.suppress(OSError):
                path.rmdir()
        raise


@contextlib.contextmanager
def _locked(repo: Path) -> Iterator[None]:
    """Hold an exclusive lock on the repository's folder: another export into it waits. Each reads config.json and
    the versions there and writes them back; two at once lost one's config.json entry, or both took one version."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; exports into one repository there must not run at once
        yield
        return
    try:
        fd = os.open(repo, os.O_RDONLY)
    except OSError as exc:
        raise OutputError(f"{repo}: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:  # a file system without flock (some network mounts)
            logger.warning("%s: cannot lock the repository (%s); another export into it at the same time could "
                           "undo this one's config", repo, exc.strerror or exc)
        yield
    finally:
        os.close(fd)


def _write_all(repo: Path, chosen: list[str], loaded: list[tuple[ov.Model, ModelInfo]], options: ExportOptions,
               created: list[Path]) -> list[Exported]:
    entries = _read_ovms_config(repo) if options.format == "ovms" else []
    done = []
    for name, (model, info) in zip(chosen, loaded, strict=True):
        _mkdir(repo / name, created)
        version, path = _write_version(repo, name, model, info)
        created.append(path)
        files: list[Path] = []
        if options.format == "triton":
            files.append(_new(_write_triton_config, repo / name / "config.pbtxt", created, repo, name, model, info,
                              options))
        elif options.format == "kserve":
            files.append(_new(_write_inference_service, repo / f"{name}.inferenceservice.yaml", created, repo, name,
                              info, options))
        done.append(Exported(name, version, path, tuple(files)))
    if options.format == "ovms":
        models_info = [(e.name, info) for e, (_, info) in zip(done, loaded, strict=True)]
        config = _write_ovms_config(repo, entries, models_info, options)
        done = [Exported(e.name, e.version, e.path, (config,)) for e in done]
    return done


def _mkdir(path: Path, created: list[Path]) -> None:
    if not path.exists():
        try:
            path.mkdir(parents=True)
        except FileExistsError:  # another export made it meanwhile: not this one's to take back
            return
        created.append(path)


def _new(write: Any, path: Path, created: list[Path], *args: Any) -> Path:
    """``write(*args)``, remembering ``path`` among the created files when it did not exist before."""
    existed = path.exists()
    result = write(*args)
    if not existed:
        created.append(path)
    return result


def _check_targets(repo: Path, name: str, options: ExportOptions) -> None:
    """What ``name`` will write must be writable as what it is: its folder a folder, its config a file."""
    folder = repo / name
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{folder}: exists and is not a folder")
    if folder.is_dir():  # a file named 2 took the version folder's name: 'cannot write the model: Not a directory'
        for entry in sorted(folder.iterdir()):
            if is_version_name(entry.name) and not entry.is_dir():
                raise ConfigError(f"{entry}: a file where a version folder goes (a server reads {name}'s versions "
                                  "from numbered folders); move it out of the repository")
    files = {"ovms": [repo / "config.json"], "triton": [folder / "config.pbtxt"],
             "kserve": [repo / f"{name}.inferenceservice.yaml"]}[options.format]
    for path in files:
        if path.is_dir():
            raise ConfigError(f"{path}: exists and is a folder")
    if options.format == "kserve":
        kube_name(name)


def _kube_label(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _check_kube_names(repo: Path, chosen: Sequence[str]) -> None:
    """Two models whose InferenceServices would have one name (fd_a, fd.a, fd-a, FD_A: 'fd-a'), in this export or
    beside a manifest already in ``repo``: `kubectl apply` of the second replaced the first, and nothing said so."""
    suffix = ".inferenceservice.yaml"
    taken = {}  # label -> (model name, its manifest in the repository or None)
    for path in sorted(repo.glob(f"*{suffix}")) if repo.is_dir() else []:
        taken.setdefault(_kube_label(path.name.removesuffix(suffix)), (path.name.removesuffix(suffix), path))
    for name in chosen:
        label = _kube_label(name)
        other, manifest = taken.setdefault(label, (name, None))
        if other != name:
            where = f" ({manifest})" if manifest is not None else ""
            raise ConfigError(f"model name '{name}': its InferenceService would be named '{label}', as model "
                              f"'{other}''s is{where}; applying both, the second replaces the first; give another "
                              "with --name")


def kube_name(name: str) -> str:
    """The InferenceService's ``metadata.name`` for a model name: lowercase, '-' for '_' and '.'; Kubernetes
    takes only a DNS-1035 label (a letter first, a letter or digit last, at most 63), so another is refused."""
    label = _kube_label(name)
    if not _KUBE_NAME.fullmatch(label):
        raise ConfigError(f"model name '{name}': a KServe InferenceService would be named '{label}', which "
                          "Kubernetes refuses (a DNS-1035 label: a lowercase letter first, letters, digits and "
                          "'-', a letter or digit last, at most 63 characters); give another with --name")
    return label


def check_model_name(name: str) -> None:
    """A model name is a folder and a URL path segment, and not one of the repository's own files."""
    if not _NAME.fullmatch(name):
        raise ConfigError(f"model name '{name}': use letters, digits, '_', '.' and '-', starting with a letter or "
                          "digit (it is a folder and a URL)")
    if name in RESERVED_NAMES or name.endswith(".inferenceservice.yaml"):
        raise ConfigError(f"model name '{name}': the name of a repository's own file; choose another")


def model_stem(model: str | Path) -> str:
    """A model's default name: its file's stem, its folder's name, NAME for a repository's NAME/VERSION/model.xml."""
    path = Path(model)
    if (version := repository_version(path)) is not None:  # REPO/NAME/VERSION was named VERSION ('1')
        stem = version[0]
    elif path.name == "model.xml":
        stem = path.parent.name
    else:
        stem = path.name if path.is_dir() else path.stem
    return re.sub(r"[^A-Za-z0-9_.-]", "_", stem).lstrip("_.-") or "model"


def _write_version(repo: Path, name: str, model: ov.Model, info: ModelInfo) -> tuple[int, Path]:
    """Save the IR as ``REPO/NAME/<next version>/model.xml``, complete or not at all."""
    folder = repo / name
    versions = [int(p.name) for p in folder.iterdir() if p.is_dir() and is_version_name(p.name)]
    version = max(versions, default=0) + 1
    target = folder / str(version)
    write_info(model, info)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=folder))
    except OSError as exc:
        raise OutputError(f"{target}: cannot write the model: {exc.strerror or exc}") from None
    try:
        ov.save_model(model, tmp / "model.xml", compress_to_fp16=False)
        tmp.chmod(0o777 & ~_umask())
        tmp.rename(target)
    except (OSError, RuntimeError) as exc:  # OpenVINO: "RuntimeError: basic_ios::clear: iostream error" on a full disk
        if isinstance(exc, OSError):
            why = exc.strerror or str(exc)
        else:  # the free space while the partial write still holds it: taken back, a 2 MB disk had 2 MB free again
            why = "no space left on the device" if free_bytes(folder) < 1_000_000 else \
                f"the write failed ({first_line(exc)})"
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(f"{target}: cannot write the model: {why}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("wrote %s (version %d of %s)", target / "model.xml", version, name)
    return version, target


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _read_ovms_config(repo: Path) -> list[dict[str, Any]]:
    """The entries of an existing ``config.json`` (none when there is no file); a broken one is an error."""
    path = repo / "config.json"
    if not path.exists():
        return []
    try:
        entries = json.loads(path.read_text(encoding="utf-8")).get("model_config_list", [])
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise ValueError("model_config_list is not a list of entries")
    except (ValueError, AttributeError, OSError) as exc:
        raise OvqError(f"{path}: not an OVMS config.json ({exc}); move it away or fix it") from exc
    return entries


def _write_ovms_config(repo: Path, entries: list[dict[str, Any]], models: Sequence[tuple[str, ModelInfo]],
                       options: ExportOptions) -> Path:
    """``config.json``: this export's models replace their entries, other models' entries are kept."""
    path = repo / "config.json"
    names = {name for name, _ in models}
    entries = [e for e in entries if (e.get("config") or {}).get("name") not in names]
    for name, info in models:
        config: dict[str, Any] = {"name": name, "base_path": name, "target_device": options.device,
                                  "plugin_config": _plugin_config(name, info, options)}
        if options.nireq:
            config["nireq"] = options.nireq
        entries.append({"config": config})
    write_text_atomic(path, json.dumps({"model_config_list": entries}, indent=2) + "\n")
    return path


# The inference precisions each plugin runs float layers at (OpenVINO's device docs), its default first: bf16 is a
# CPU's (with AMX or AVX-512 BF16), a GPU takes f16 or f32, an NPU f16. A device of another family is given neither
# bf16 nor a precision it is not known to run.
DEVICE_PRECISIONS = {"CPU": ("f32", "bf16", "f16"), "GPU": ("f16", "f32"), "NPU": ("f16",)}


def _compile_settings(name: str, info: ModelInfo, options: ExportOptions) -> dict[str, str]:
    """What the model stores for whoever compiles it (the precision its accuracy was validated at), less a precision
    the target device does not run, which is said: a model validated at bf16 (a CPU's) for a GPU, whose plugin
    takes f16 or f32 only, is written without the hint and runs at f16, the GPU's default, as close as it gets; for
    an NPU (f16 only) likewise. AUTO without a list picks a GPU or the CPU (an NPU only when named), so bf16 is
    left out there too."""
    settings = {k: str(v) for k, v in info.compile_config.items()}
    precision = settings.get("INFERENCE_PRECISION_HINT")
    if precision is None:
        return settings
    spec = parse_device(options.device)
    families = dict.fromkeys(d.split(".", 1)[0].upper() for d in spec.physical) or dict.fromkeys(("GPU", "CPU"))
    refusing = [f for f in families if precision not in DEVICE_PRECISIONS.get(f, ("f16", "f32"))]
    if not refusing:
        return settings
    del settings["INFERENCE_PRECISION_HINT"]
    if not spec.physical:
        logger.warning("%s: validated at inference precision %s, which %s may give to a GPU that does not run it (its "
                       "plugin takes f16 or f32): written without a precision hint, so it runs at the chosen device's "
                       "default", name, precision, options.device)
    elif "GPU" in refusing:
        logger.warning("%s: validated at inference precision %s, which a GPU does not run (its plugin takes f16 or "
                       "f32): written for %s without a precision hint, so it runs at f16, the GPU's default", name,
                       precision, options.device)
    elif "NPU" in refusing:
        logger.warning("%s: validated at inference precision %s, which an NPU does not run (its plugin takes f16): "
                       "written for %s without a precision hint, so it runs at f16, the NPU's default", name,
                       precision, options.device)
    else:
        logger.warning("%s: validated at inference precision %s, which %s is not known to run: written without a "
                       "precision hint, so it runs at the device's default", name, precision, options.device)
    return settings


def _plugin_config(name: str, info: ModelInfo, options: ExportOptions) -> dict[str, str]:
    """OpenVINO Model Server's plugin_config (config.json, and KServe's OpenVINO runtime): the hint, and what the
    model stores (the precision its accuracy was validated at) where the device runs it."""
    return {"PERFORMANCE_HINT": options.hint.upper(), **_compile_settings(name, info, options)}


def _triton_parameters(name: str, info: ModelInfo, options: ExportOptions) -> list[tuple[str, str]]:
    """Triton's OpenVINO backend takes a few named parameters, not OpenVINO's properties: of a stored precision it
    can set only bf16 (HINT_BF16, a CPU's precision, which the backend reads for the CPU alone); another is said,
    since that server then runs the model at the device's default."""
    found = []
    for key, value in _compile_settings(name, info, options).items():
        if key == "INFERENCE_PRECISION_HINT" and value == "bf16" and options.device == "CPU":
            found.append(("HINT_BF16", "YES"))
        elif key == "INFERENCE_PRECISION_HINT":
            default = ("bf16 on CPUs with AMX or AVX-512 BF16" if options.device == "CPU" else
                       "f16 on a GPU" if parse_device(options.device).names_family("GPU") else "its own")
            logger.warning("%s: validated at inference precision %s, which Triton's OpenVINO backend cannot be told "
                           "(its parameters set only bf16): it runs the model at the device's default (%s); "
                           "--format ovms or kserve keeps %s", name, value, default, value)
        else:
            logger.warning("%s: stores the compile setting %s=%s, which Triton's OpenVINO backend cannot be told; "
                           "--format ovms or kserve passes it", name, key, value)
    return found


def _dims(port: Any) -> str:
    return ", ".join(str(int(d)) for d in port.get_shape())


def _write_triton_config(repo: Path, name: str, model: ov.Model, info: ModelInfo, options: ExportOptions) -> Path:
    def tensor(port: Any) -> str:
        kind = _TRITON_TYPES.get(port.get_element_type().get_type_name(), "TYPE_FP32")
        return f'  {{\n    name: "{port.get_any_name()}"\n    data_type: {kind}\n    dims: [ {_dims(port)} ]\n  }}'

    # KIND_GPU is a CUDA GPU to Triton (the OpenVINO backend refuses an instance that is not KIND_CPU): an Intel
    # GPU is chosen with the backend's TARGET_DEVICE parameter, as in openvino_backend's tests/configs/*_gpu.pbtxt
    device = [] if options.device == "CPU" else [("TARGET_DEVICE", options.device)]
    # the backend reads its OpenVINO parameters (PERFORMANCE_HINT, HINT_BF16, NUM_STREAMS...) for the device CPU alone
    # (openvino_backend's ParseParameters(device)): written for another, the hint was ignored without a word
    hint = [("PERFORMANCE_HINT", options.hint.upper())] if options.device == "CPU" else []
    if not hint:
        logger.warning("%s: Triton's OpenVINO backend reads PERFORMANCE_HINT only when its device is CPU: --hint %s is "
                       "left out of config.pbtxt, so %s compiles the model with its own default hint; --format ovms or "
                       "kserve passes it", name, options.hint.upper(), options.device)
    text = "\n".join([
        f'name: "{name}"',
        'backend: "openvino"',
        "max_batch_size: 0  # the IR has a fixed batch of 1 (letterboxed u8 NHWC input)",
        "input [", ",\n".join(tensor(p) for p in model.inputs), "]",
        "output [", ",\n".join(tensor(p) for p in model.outputs), "]",
        "instance_group [ { count: 1, kind: KIND_CPU } ]",
        *(f'parameters: {{ key: "{key}" value: {{ string_value: "{value}" }} }}'
          for key, value in [*device, *hint, *_triton_parameters(name, info, options)]),
        "",
    ])
    path = repo / name / "config.pbtxt"
    write_text_atomic(path, text)
    return path


def _write_inference_service(repo: Path, name: str, info: ModelInfo, options: ExportOptions) -> Path:
    import yaml

    storage = options.storage_uri.rstrip("/") or "pvc://ovq-models"
    service = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": kube_name(name)},
        "spec": {"predictor": {"model": {
            "modelFormat": {"name": "openvino"},
            "protocolVersion": "v2",
            "storageUri": f"{storage}/{name}",
            "args": [f"--target_device={options.device}",
                     f"--plugin_config={json.dumps(_plugin_config(name, info, options), separators=(',', ':'))}",
                     *([f"--nireq={options.nireq}"] if options.nireq else [])],
            "resources": {"requests": {"cpu": "2", "memory": "2Gi"}, "limits": {"cpu": "4", "memory": "4Gi"}},
        }}},
    }
    path = repo / f"{name}.inferenceservice.yaml"
    header = (f"# ovq export-serving: {name} on KServe (v2 protocol, OpenVINO serving runtime).\n"
              f"# Copy {repo.name}/{name}/ to {storage}/{name}, then: kubectl apply -f {path.name}\n")
    write_text_atomic(path, header + yaml.safe_dump(service, sort_keys=False))
    return path
