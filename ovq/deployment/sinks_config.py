"""The ``sinks`` section of a pipeline config: an annotated video, a JSON Lines file, MQTT, a window.

Checked key by key like the rest of :mod:`ovq.deployment.schema` (which re-exports these classes), with messages
naming the file and key, or the flag of ``ovq run``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ovq.core.errors import ConfigError
from ovq.core.fileio import is_stream, same_file
from ovq.core.urls import mask_url
from ovq.deployment.fields import Origin, given
from ovq.streaming.mqtt import TLS_SCHEMES, parse_broker_url
from ovq.streaming.rolling import Series, format_duration, format_size, parse_duration, parse_rotate

MQTT_URL_ENV = "OVQ_MQTT_URL"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass
class MqttConfig:
    """Publish detections to MQTT. ``url`` wins over ``url_env`` (the variable holding the broker URL)."""

    url: str | None = None
    url_env: str = MQTT_URL_ENV
    topic_prefix: str = "ovq"
    ca_file: Path | None = None  # CA bundle to verify an mqtts:// broker (default: the system's)
    cert_file: Path | None = None  # client certificate (PEM), and its key when not in the same file
    key_file: Path | None = None
    strict: bool = False  # a broker that cannot be reached, or a message not sent, fails the run

    @classmethod
    def from_value(cls, value: Any, origin: Origin) -> MqttConfig | None:
        """From ``true``/``false``, a broker URL, or ``{url, url_env, topic_prefix}``."""
        if value is True or value is False:
            return cls() if value else None
        if isinstance(value, str):
            return cls(url=_broker_url(origin, value, "sinks.mqtt"))
        m = origin.mapping(value, "sinks.mqtt",
                           ("url", "url_env", "topic_prefix", "ca_file", "cert_file", "key_file", "strict"))
        cfg = cls()
        if given(m, "url"):
            cfg.url = _broker_url(origin, m["url"], "sinks.mqtt.url")
        if given(m, "url_env"):
            cfg.url_env = origin.string(m["url_env"], "sinks.mqtt.url_env")
            if not _ENV_NAME.fullmatch(cfg.url_env):
                raise origin.error("sinks.mqtt.url_env", f"'{cfg.url_env}' is not an environment variable name")
        if given(m, "topic_prefix"):
            cfg.topic_prefix = origin.string(m["topic_prefix"], "sinks.mqtt.topic_prefix")
            if any(c in cfg.topic_prefix for c in "#+"):
                raise origin.error("sinks.mqtt.topic_prefix", "MQTT wildcards # and + cannot be published to")
        for key in ("ca_file", "cert_file", "key_file"):
            if given(m, key):
                setattr(cfg, key, origin.path(m[key], f"sinks.mqtt.{key}"))
        if cfg.key_file is not None and cfg.cert_file is None:
            raise origin.error("sinks.mqtt.key_file", "a client key needs its certificate (cert_file)")
        plain = cfg.url and not origin.is_reference(cfg.url) and parse_broker_url(cfg.url).scheme not in TLS_SCHEMES
        if (cfg.ca_file or cfg.cert_file) and plain:
            raise origin.error("sinks.mqtt", "a CA file or client certificate needs a TLS broker URL (mqtts://)")
        if "strict" in m:
            cfg.strict = origin.boolean(m["strict"], "sinks.mqtt.strict")
        return cfg

    def to_dict(self, mask_secrets: bool = True) -> dict[str, Any]:
        url = mask_url(self.url) if (mask_secrets and self.url) else self.url
        files = {k: str(v) if v else None for k, v in
                 (("ca_file", self.ca_file), ("cert_file", self.cert_file), ("key_file", self.key_file))}
        return {"url": url, "url_env": self.url_env, "topic_prefix": self.topic_prefix, **files, "strict": self.strict}


def _broker_url(origin: Origin, value: Any, key: str) -> str:
    text = origin.string(value, key)
    if origin.is_reference(text):
        return text
    try:  # the parser the sink uses, so --check and the run agree on what is a broker URL
        parse_broker_url(text)
    except ConfigError as exc:
        raise origin.error(key, str(exc)) from None
    return text


@dataclass
class SinksConfig:
    """Where results go: an annotated video, a JSON-lines file, MQTT, a window.

    ``video_segment`` (seconds) and ``jsonl_rotate_seconds`` / ``jsonl_rotate_bytes`` make a series of files
    instead of one (:mod:`ovq.streaming.rolling`); ``*_keep`` keeps the newest of them.
    """

    video: Path | None = None
    video_fps: float | None = None
    video_segment: float | None = None
    video_keep: int | None = None
    jsonl: Path | None = None
    jsonl_append: bool = False  # append to the file instead of replacing it with this run's records
    jsonl_rotate_seconds: float | None = None
    jsonl_rotate_bytes: int | None = None
    jsonl_keep: int | None = None
    mqtt: MqttConfig | None = None
    show: bool = False

    @classmethod
    def from_mapping(cls, value: Any, origin: Origin) -> SinksConfig:
        s = origin.mapping(value, "sinks", ("video", "jsonl", "mqtt", "show"))
        sinks = cls()
        if isinstance(s.get("video"), dict):
            v = origin.mapping(s["video"], "sinks.video", ("path", "fps", "segment", "keep"))
            if not given(v, "path"):
                raise origin.error("sinks.video.path", "required: the video file to write")
            sinks.video = origin.path(v["path"], "sinks.video.path")
            if given(v, "fps"):
                sinks.video_fps = origin.number(v["fps"], "sinks.video.fps", low=0.0, low_open=True)
            if given(v, "segment"):
                sinks.video_segment = _rolling(origin, v["segment"], "sinks.video.segment", parse_duration)
            sinks.video_keep = _keep(origin, v, "sinks.video", "segment", sinks.video_segment is not None)
        elif given(s, "video"):
            sinks.video = origin.path(s["video"], "sinks.video")
        if isinstance(s.get("jsonl"), dict):
            j = origin.mapping(s["jsonl"], "sinks.jsonl", ("path", "append", "rotate", "keep"))
            if not given(j, "path"):
                raise origin.error("sinks.jsonl.path", "required: the JSON Lines file to write")
            sinks.jsonl = _jsonl_path(origin, j["path"], "sinks.jsonl.path")
            if "append" in j:
                sinks.jsonl_append = origin.boolean(j["append"], "sinks.jsonl.append")
            if given(j, "rotate"):
                rotate = _rolling(origin, j["rotate"], "sinks.jsonl.rotate", parse_rotate)
                sinks.jsonl_rotate_seconds, sinks.jsonl_rotate_bytes = rotate
                if sinks.jsonl_append:
                    raise origin.error("sinks.jsonl.rotate", f"not with {origin.name_of('sinks.jsonl.append')}: a "
                                       "rotating file adds to its series, replacing nothing (what a killed run "
                                       "left is named at the next start)")
            sinks.jsonl_keep = _keep(origin, j, "sinks.jsonl", "rotate", given(j, "rotate"))
        elif given(s, "jsonl"):
            sinks.jsonl = _jsonl_path(origin, s["jsonl"], "sinks.jsonl")
        if given(s, "mqtt"):
            sinks.mqtt = MqttConfig.from_value(s["mqtt"], origin)
        if "show" in s:
            sinks.show = origin.boolean(s["show"], "sinks.show")
        if sinks.video is not None and sinks.jsonl is not None and same_file(sinks.video, sinks.jsonl):
            raise origin.error("sinks.jsonl", f"{sinks.jsonl}: the same file as the video output (one would replace the other)")
        return sinks

    @property
    def jsonl_rotate(self) -> str | None:
        """The JSON Lines rotation as a config writes it (``1h``, ``100MB``), or None."""
        if self.jsonl_rotate_seconds is not None:
            return format_duration(self.jsonl_rotate_seconds)
        return None if self.jsonl_rotate_bytes is None else format_size(self.jsonl_rotate_bytes)

    def to_dict(self, mask_secrets: bool = True) -> dict[str, Any]:
        video: dict[str, Any] | None = None
        if self.video is not None:
            video = {"path": str(self.video), "fps": self.video_fps}
            if self.video_segment is not None:
                video |= {"segment": format_duration(self.video_segment), "keep": self.video_keep}
        jsonl: dict[str, Any] | None = None
        if self.jsonl is not None:
            jsonl = {"path": str(self.jsonl), "append": self.jsonl_append}
            if self.jsonl_rotate is not None:
                jsonl |= {"rotate": self.jsonl_rotate, "keep": self.jsonl_keep}
        return {  # the shape from_mapping reads, so a printed config loads again (--check printed video_fps)
            "video": video,
            "jsonl": jsonl,
            "mqtt": None if self.mqtt is None else self.mqtt.to_dict(mask_secrets),
            "show": self.show,
        }


def derived_file(sinks: SinksConfig, streams: list[str], file: str | Path) -> tuple[str, str, bool] | None:
    """Which sink would write over or delete ``file`` by a name it derives from its path (not the path itself):
    ``(its key, which file of it in words, whether its keep would delete it)``, else None. Several streams'
    videos (``--out cam.mp4`` writes ``cam_a.mp4`` for stream a), a video's file in progress (``.out.partial.mp4``),
    and the older files of a series that ``keep`` deletes."""
    from ovq.streaming.videosink import VideoSink  # OpenCV: only for a config that has a file to compare

    if sinks.video is not None and not is_stream(sinks.video):
        hit = VideoSink.endangers(sinks.video, streams, file, segment=sinks.video_segment, keep=sinks.video_keep)
        if hit is not None:
            return ("sinks.video", *hit)
    if sinks.jsonl is not None and sinks.jsonl_keep is not None and Series(sinks.jsonl).holds(file):
        return "sinks.jsonl", f"a file of its series {Series(sinks.jsonl).glob}", True
    return None


def refuse_deriving_a_source(origin: Origin, sinks: SinksConfig, streams: list[str], files: dict[str, Path]) -> None:
    """An error naming the sink when a file it derives from its path (:func:`derived_file`) would replace or
    delete a source video (``files``: how each is named -> its file): ``--source cam.20261203T063000Z.mp4 --out
    cam.mp4 --segment 10m --keep 1`` deleted the source. :func:`ovq.deployment.schema.refuse_writing_an_input`
    compares the paths themselves."""
    for name, file in files.items():
        hit = derived_file(sinks, streams, file)
        if hit is not None:
            key, what, deletes = hit
            output, keep = (sinks.video, sinks.video_keep) if key == "sinks.video" else (sinks.jsonl, sinks.jsonl_keep)
            harm = (f"{origin.name_of(f'{key}.keep')} {keep} would delete the input" if deletes
                    else "writing there would replace the input")
            raise origin.error(key, f"{output}: the video source {name} is {what}; {harm} (give another file)")


def refuse_deriving_an_output(origin: Origin, sinks: SinksConfig, streams: list[str], key: str,
                              output: str | Path | None) -> None:
    """An error naming ``key`` when the output ``output`` (the JSON Lines file, ``ovq run``'s summary) is a file
    another sink derives from its path (:func:`derived_file`): with two streams ``--out x.mp4 --summary-json
    x_s0.mp4`` wrote the summary over stream s0's video, ``--jsonl x_s1.mp4`` the records over s1's, exit 0."""
    if output is None or is_stream(output):
        return
    hit = derived_file(sinks, streams, output)
    if hit is None or hit[0] == key:
        return
    sink, what, deletes = hit
    path, keep = (sinks.video, sinks.video_keep) if sink == "sinks.video" else (sinks.jsonl, sinks.jsonl_keep)
    harm = f"{origin.name_of(f'{sink}.keep')} {keep} would delete it" if deletes else "one would replace the other"
    raise origin.error(key, f"{output}: the same file as {origin.name_of(sink)} {path} writes ({what}); {harm} "
                            "(give another file)")


def _rolling(origin: Origin, value: Any, key: str, parse: Callable[[Any], Any]) -> Any:
    """A segment length or rotation limit read by ``parse`` (:mod:`ovq.streaming.rolling`), its error named."""
    try:
        return parse(value)
    except ConfigError as exc:
        raise origin.error(key, str(exc)) from None


def _keep(origin: Origin, section: dict[str, Any], key: str, rolled_by: str, rolling: bool) -> int | None:
    """``keep``: how many of the newest files of a series stay; only for a series (``segment``, ``rotate``)."""
    if not given(section, "keep"):
        return None
    keep = origin.integer(section["keep"], f"{key}.keep", low=1)
    if not rolling:
        raise origin.error(f"{key}.keep", "keeps the newest files of a series, which "
                           f"{origin.name_of(f'{key}.{rolled_by}')} makes: give it too")
    return keep


def _jsonl_path(origin: Origin, value: Any, key: str) -> Path:
    """The JSON Lines file, relative to the pipeline file. ``-`` wrote a file named '-' beside it where standard
    output was meant: ovq's name for that is ``/dev/stdout`` (as ``ovq run --jsonl -`` says)."""
    if origin.string(value, key) == "-":
        raise origin.error(key, "'-' is not standard output to ovq; write /dev/stdout (or ./- for a file named '-')")
    return origin.path(value, key)
