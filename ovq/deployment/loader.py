"""Pipeline YAML files: read one, fill in ``${VAR}`` references, check it into a :class:`PipelineConfig`.

.. code-block:: yaml

    model: models/detector          # folder / .xml / .onnx / .pt, relative to this file
    quantize:                       # optional: quantize first; skipped when the output is up to date
      data: datasets/line1/data.yaml
      max_drop: 0.01                # any option of ovq quantize (ovq.quantization.options.QuantizeOptions)
      output: models/detector-int8
    device: AUTO:GPU,CPU            # precision, hint, nireq, cache too
    sources:
      - {name: cam1, url: "rtsp://${CAM1_USER}:${CAM1_PASSWORD}@10.0.0.11/stream1"}
      - synth://conveyor?fps=30
    track: true
    conf: 0.4
    sinks:                          # video and jsonl: a series of files, the newest kept (ovq.streaming.rolling)
      video: {path: out/line1.mp4, segment: 10m, keep: 144}
      jsonl: {path: out/line1.jsonl, rotate: 1h, keep: 48}      # rotate: a duration or a size (100MB)
      mqtt: {topic_prefix: factory/line1}
    max_frames: null
    stats_interval: 10
    reconnect: {initial_delay: 0.5, max_delay: 30, stall_timeout: 5}
    realtime: false                 # true: read video files at their frame rate, like a camera
    serve: {listen: "127.0.0.1:8080", fps: 10}  # live view in a browser; token from $OVQ_SERVE_TOKEN

String values may reference environment variables as ``${VAR}`` or ``${VAR:-default}``, and a value that is one
whole reference may be a number or true/false (``conf: ${CONF:-0.4}``: its text read as the file would read it);
credentials belong in the environment, so a password written literally in a URL is rejected. Relative paths are relative to the file.
The keys and their checks are in :mod:`ovq.deployment.schema`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from ovq.core.errors import ConfigError
from ovq.core.urls import (
    UNOPENABLE_SOURCE,
    UNSENDABLE_TOKEN,
    expand_env,
    has_literal_password,
    undecodable_reference,
)
from ovq.core.yamlio import read_yaml
from ovq.deployment.fields import Origin
from ovq.deployment.schema import PipelineConfig

_PASSWORD_IN_FILE = (
    "holds a password written in the file; reference the environment instead, "
    "e.g. rtsp://${CAM_USER}:${CAM_PASSWORD}@host/stream or ...?user=${CAM_USER}&pwd=${CAM_PASSWORD} "
    "(MQTT: OVQ_MQTT_USERNAME / OVQ_MQTT_PASSWORD)"
)


_WHOLE_REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}")
_SOURCE_URL = re.compile(r"sources\[\d+\](\.url)?")  # a source's string (or a mapping's url)
_NESTED_DEFAULT = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*):-[^}]*\$\{")


def parse_pipeline_config(
    data: Any, path: str | Path, *, resolve_env: bool | Collection[str] = True,
    environ: Mapping[str, str] | None = None,
) -> PipelineConfig:
    """Build a :class:`PipelineConfig` from parsed YAML ``data`` that came from ``path``.

    ``resolve_env=False`` leaves ``${VAR}`` references as they are (to rewrite a file without its secrets); top-level
    keys (``("model", "quantize")``: the files a bundle reads where it is built) resolves only theirs.
    ``environ`` replaces ``os.environ`` as the source of their values.
    """
    path = Path(path)
    origin = Origin.yaml_file(path, unresolved_env=resolve_env is not True)
    env = dict(os.environ if environ is None else environ) if resolve_env else None
    if isinstance(resolve_env, bool) or not isinstance(data, dict):
        return PipelineConfig.from_mapping(_expand(data, "", origin, env), origin, raw=data)
    expanded = _expand(data, "", origin, None)
    for key in resolve_env:
        if key in data:
            expanded[key] = _expand(data[key], key, origin, env)
    return PipelineConfig.from_mapping(expanded, origin, raw=data)


def load_pipeline_config(
    path: str | Path, *, resolve_env: bool | Collection[str] = True, environ: Mapping[str, str] | None = None
) -> PipelineConfig:
    """Read and check a pipeline YAML file. Raises :class:`ConfigError` naming the file and key on any problem."""
    return parse_pipeline_config(read_yaml(path), path, resolve_env=resolve_env, environ=environ)


def _expand(value: Any, key: str, origin: Origin, environ: dict[str, str] | None) -> Any:
    """A copy of ``value`` with ``${VAR}`` filled in from ``environ`` (``None``: left as written).

    Every string is first checked for a password written out in a URL: the file is what gets committed and
    copied, so that is where it must not be, whether or not the references are resolved.
    """
    if isinstance(value, str):
        nested = _NESTED_DEFAULT.search(value)
        if nested:  # ${A:-${B}}: the reference would end at the first '}' and leave the rest as text
            raise origin.error(key, f"${{{nested.group(1)}:-${{...}}}}: a default that is itself a reference is not "
                                    f"supported; write a plain one: ${{{nested.group(1)}:-VALUE}}")
        if has_literal_password(value):
            raise origin.error(key, _PASSWORD_IN_FILE)
        if key == "serve.token" and "${" not in value:
            raise origin.error(key, "a token written in the file; reference the environment instead, "
                                    "e.g. token: ${OVQ_SERVE_TOKEN} (or leave it out: OVQ_SERVE_TOKEN is read anyway)")
        if _WHOLE_REFERENCE.fullmatch(value.strip()):  # its text may be a number or true/false: Origin.env_scalar
            origin.from_env.add(key)
        if environ is None:
            return value
        why = UNSENDABLE_TOKEN if key == "serve.token" else UNOPENABLE_SOURCE if _SOURCE_URL.fullmatch(key) else None
        bad = undecodable_reference(value, environ) if why else None
        if bad is not None:  # named by the variable the value came from, never shown: it may be a secret
            raise origin.error("", f"${bad} ({key}) is not UTF-8 text; {why}")
        try:
            return expand_env(value, environ)
        except ConfigError as exc:
            raise origin.error(key, str(exc)) from None
    if isinstance(value, dict):
        return {k: _expand(v, f"{key}.{k}" if key else str(k), origin, environ) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, f"{key}[{i}]", origin, environ) for i, v in enumerate(value)]
    return value
