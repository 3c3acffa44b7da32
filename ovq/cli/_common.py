"""Options shared by several commands."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from ovq.core.errors import ConfigError
from ovq.core.labels import LABEL_SETS


class Parser(argparse.ArgumentParser):
    """The parser of ``ovq`` and its commands: a value that starts with ``-`` is taken as the value of the option
    before it, as ``--flag=VALUE`` is. Plain argparse takes ``-1h`` (``--jsonl-rotate -1h``), ``-1e3`` or ``-inf``
    for an unknown option and printed its usage block, "expected one argument", where ``--jsonl-rotate=-1h`` got
    ovq's one line naming the flag and the value; only plain negative numbers (``-1``, ``-0.5``) passed. A value
    argparse cannot read (``--max-frames x``, ``--precision f64``) is one line too; a command line of the wrong
    shape (a missing argument, an unknown option) still gets the usage."""

    def parse_known_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:
        return super().parse_known_args(None if args is None else _join_dash_values(self, args), namespace)

    def error(self, message: str) -> Any:
        if _VALUE_ERROR.match(message):
            self.exit(2, f"{self.prog}: error: {message}\n")
        super().error(message)


# argparse's own messages (3.11) for a value it could not read: "argument --nireq: invalid int value: 'x'",
# "argument --precision: invalid choice: 'f64' (choose from ...)"
_VALUE_ERROR = re.compile(r"argument [^:]+: invalid (choice: |\S+ value: )")


def _join_dash_values(parser: argparse.ArgumentParser, args: Sequence[str]) -> list[str]:
    """``args`` with each ``--flag VALUE`` whose flag takes one value and whose VALUE starts with a single ``-`` that
    begins none of the parser's options (``-v``, ``-o``...) written ``--flag=VALUE``, which argparse reads as a
    value. Nothing after ``--``."""
    # argparse lists its actions only in _actions (every Python 3 has it; the tests above parse through it)
    takes_one = {s for a in parser._actions if a.nargs is None and a.option_strings for s in a.option_strings}
    options = {s for a in parser._actions for s in a.option_strings}
    out, i = [], 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return [*out, *args[i:]]
        nxt = args[i + 1] if i + 1 < len(args) else ""
        if (arg in takes_one and nxt.startswith("-") and not nxt.startswith("--") and len(nxt) > 1
                and nxt[:2] not in options):
            out.append(f"{arg}={nxt}")
            i += 2
            continue
        out.append(arg)
        i += 1
    return out


def _logging_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parent.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    return parent


def add_command(sub: argparse._SubParsersAction, name: str, help: str) -> argparse.ArgumentParser:
    """A sub-command parser that also takes -v/-q after the command name (and knows itself: :func:`unrecognized`)."""
    p = sub.add_parser(name, help=help, description=help, parents=[_logging_options()])
    p.set_defaults(command_parser=p)
    return p


def unrecognized(args: argparse.Namespace, extra: Sequence[str]) -> None:
    """Exit 2 on arguments the command does not take, with its usage and the closest flag it has: the top-level
    parser said "ovq: error: unrecognized arguments: --outt a.mp4" under ovq's own usage, not the command's."""
    import difflib

    p: argparse.ArgumentParser = args.command_parser
    flags = [f for action in p._actions for f in action.option_strings if f.startswith("--")]
    first = next((a.split("=", 1)[0] for a in extra if a.startswith("--")), None)
    close = difflib.get_close_matches(first, flags, n=1, cutoff=0.75) if first else []
    p.error(f"unrecognized arguments: {' '.join(extra)}" + (f"; did you mean {close[0]}?" if close else ""))


def add_device(p: argparse.ArgumentParser, default: str = "CPU", *, served_too: bool = False) -> None:
    """``--device``. Where MODEL may be a served model (``served_too``) it is ``None`` when not given and the command
    applies ``default``: :func:`refuse_local_options` then refuses only a ``--device`` the user gave."""
    p.add_argument("--device", default=None if served_too else default,
                   help=f"OpenVINO device: CPU, GPU, GPU.1, NPU, AUTO, AUTO:GPU,CPU... (default {default})")


def refuse_local_options(model: object, given: Mapping[str, Any], *, instead: str = "") -> None:
    """For a served ``model`` (a serving URL), a :class:`ConfigError` naming the first option in ``given`` (flag ->
    the value the user gave, a list for a repeatable one; ``None``: not given) that only a local model honours, and
    saying what to do (``instead`` replaces the advice). Nothing for a local model. Checked before any connection:
    the option would otherwise be dropped without a word, and the results reported as if it had taken effect.
    What a served model does instead: :data:`ovq.serving.urls.SERVER_DECIDES` (a pipeline file's check uses it too)."""
    from ovq.core.urls import is_serving_url, redact
    from ovq.serving.urls import GRAPH_ONLY, server_decides

    if not is_serving_url(model):
        return
    for flag, value in given.items():
        key, shown = flag.removeprefix("--"), value[0] if isinstance(value, list) and value else value
        what = server_decides(key, shown)
        if what is None:
            continue
        advice = instead or (f"or give {flag} python" if key in GRAPH_ONLY else "choose it where the model is served")
        raise ConfigError(f"{flag} {shown}: {redact(str(model))} {what}; drop {flag} ({advice})")


def refuse_empty_folder(flag: str, value: str | None, what: str) -> None:
    """A :class:`ConfigError` for an output folder given as ``""`` (``-o "$OUT"`` with OUT unset), which ``Path``
    reads as the working folder: the outputs landed there; or as ``-``, which made a folder named '-' where standard
    output was meant (the file outputs point ``-`` at /dev/stdout, :func:`check_file_outputs`; a folder has no such
    stream). ``what`` says what to give instead."""
    if value is not None and not value.strip():
        raise ConfigError(f"{flag} {value!r}: an empty path; give {what}")
    if value == "-":
        raise ConfigError(f"{flag} -: the output is a folder, not standard output; give {what}, or ./- for a folder "
                          "named '-'")


def check_file_outputs(given: Mapping[str, str | None], *, models: Sequence[object] = ()) -> None:
    """A :class:`ConfigError` for the first output file in ``given`` (flag -> value; ``None``: not given) given as
    ``""``: taken for no file at all, the command ran and wrote nothing, exit 0 (or for the working folder, found to
    be a folder only after the work); or as ``-``, which wrote a file named '-' where standard output was meant.
    Standard output has one name in ovq, ``/dev/stdout`` (what :func:`report_to` and the sinks recognise, as a YAML
    pipeline's sinks can say it too), so ``-`` points there rather than becoming a second spelling. Also for one
    that is a file of one of ``models``: ``ovq bench m --json m/model.xml`` wrote its numbers over the model it
    measured, exit 0."""
    from ovq.core.fileio import is_stream, same_file
    from ovq.model.paths import model_files

    for flag, value in given.items():
        if value is not None and not value.strip():
            raise ConfigError(f"{flag} {value!r}: an empty file name; give a file (/dev/stdout: standard output)")
        if value == "-":
            raise ConfigError(f"{flag} -: standard output is /dev/stdout to ovq; give {flag} /dev/stdout (or ./- for a "
                              "file named '-')")
        if value is None or is_stream(value):  # /dev/stdout, a FIFO: nothing is replaced
            continue
        for model in models:
            if any(same_file(value, f) for f in model_files(model)):
                raise ConfigError(f"{flag} {value}: is a file of the model {model}; writing there would replace it "
                                  "(give another file)")


def check_thresholds(given: Mapping[str, float | None]) -> None:
    """A :class:`ConfigError` naming the flag of a threshold outside [0, 1] (NaN too), before the model loads: the
    model's own check named it as Python does ('conf 2.0: expected a number from 0 to 1')."""
    for flag, value in given.items():
        if value is not None and not 0.0 <= value <= 1.0:
            raise ConfigError(f"{flag} {value:g}: expected a number from 0 to 1")


@contextmanager
def flags_named(flags: Mapping[str, str]) -> Iterator[None]:
    """A :class:`ConfigError` that the API says of one of its options ('iou 0.3: ...', checked once the model's
    family is known) said again of the command's flag ('--iou 0.3: ...')."""
    try:
        yield
    except ConfigError as exc:
        text = str(exc)
        for name, flag in flags.items():
            if text.startswith((f"{name} ", f"{name}:")):
                raise ConfigError(flag + text[len(name):]) from None
        raise


def add_precision(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--precision", choices=("default", "f32", "bf16", "f16"), default=None,
        help="inference precision hint for float layers (default: what the model was validated with, else the device default)",
    )


def add_resize_decode(p: argparse.ArgumentParser) -> None:
    """``--resize``, ``--nms`` and ``--decode``, checked where the pipeline's options are (one message for CLI and YAML)."""
    p.add_argument(
        "--resize", default="auto", metavar="WHERE",
        help="where frames are resized to the model input: python, graph (inside OpenVINO, for streams of one fixed "
             "size) or auto (default: graph on GPU/NPU, python on CPU)",
    )
    p.add_argument(
        "--nms", default="auto", metavar="WHERE",
        help="where boxes are decoded and NMS'd: python, graph (OpenVINO outputs the final boxes; the families "
             "with NMS: yolo, yolov5, yolox, yolox_decoded, fastestdet) or auto (default: graph on CPU for those families, "
             "else python)",
    )
    p.add_argument(
        "--decode", default="auto", metavar="MODE",
        help="video decoding of files and stream URLs: auto (hardware when OpenCV's FFmpeg offers it, else software), software, "
             "vaapi, mfx, d3d11; the summary says what each stream got",
    )


def add_conf(p: argparse.ArgumentParser, default: float | None = None) -> None:
    p.add_argument("--conf", type=float, default=default, help="confidence threshold (default: the model's)")


_LABEL_FILE_SUFFIXES = {".txt", ".names", ".labels", ".csv", ".json", ".yaml", ".yml"}
_STRUCTURED_SUFFIXES = {".json", ".yaml", ".yml"}  # read as data: a list, {0: name}, or a dataset file's 'names'


def _structured_labels(value: str, path: Path, text: str) -> list[str]:
    """The class names a JSON or YAML labels file holds: ``["a", "b"]``, ``{0: a, 1: b}`` or a dataset file with
    ``names`` (an Ultralytics data YAML). Read line by line, ``- bolt`` was a label and a JSON list one label."""
    import json

    from ovq.core.yamlio import parse_yaml

    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else parse_yaml(text, path)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--labels {value}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    if isinstance(data, dict) and "names" in data:
        data = data["names"]
    if isinstance(data, dict) and data:
        try:
            by_id = {int(k): v for k, v in data.items()}
        except (TypeError, ValueError):
            by_id = {}
        data = [by_id[k] for k in range(len(by_id))] if sorted(by_id) == list(range(len(data))) else None
    if not isinstance(data, list) or not data or not all(
            isinstance(x, (str, int, float)) and not isinstance(x, bool) and str(x).strip() for x in data):
        raise ConfigError(f"--labels {value}: expected a list of class names, a mapping 0: name, 1: name..., or a "
                          "dataset file with 'names'")
    return [str(x).strip() for x in data]


def parse_labels(value: str | None) -> list[str] | None:
    """Labels from a comma-separated list or a text file with one label a line (UTF-8; blank lines only at the end),
    or a label set by name (``coco91``: torchvision's COCO category slots; ``coco80``), unless a file has that name.

    A value that looks like a path (a separator, or a label-file suffix such as ``.txt``) is a file, and a missing
    one is an error rather than a single label named after it."""
    if value is None:  # '' (an unset $LABELS) is refused below: the model's own labels were kept without a word
        return None
    path = Path(value)
    if value.strip().lower() in LABEL_SETS and not path.is_file():
        return list(LABEL_SETS[value.strip().lower()])
    looks_like_path = "/" in value or "\\" in value or path.suffix.lower() in _LABEL_FILE_SUFFIXES
    if path.is_file() or looks_like_path:
        try:
            text = path.read_text(encoding="utf-8-sig")  # Notepad's byte-order mark is not part of the first name
        except UnicodeDecodeError:
            raise ConfigError(f"--labels {value}: not a UTF-8 text file (expected one label a line)") from None
        except OSError as exc:
            raise ConfigError(f"--labels {value}: {exc.strerror or exc}") from None
        if path.suffix.lower() in _STRUCTURED_SUFFIXES:
            return _structured_labels(value, path, text)
        lines = text.splitlines()
        while lines and not lines[-1].strip():
            lines.pop()
        blank = next((i for i, ln in enumerate(lines, 1) if not ln.strip()), None)
        if blank is not None:
            raise ConfigError(
                f"--labels {value}: line {blank} is blank (one label a line; a blank line would shift every later class)"
            )
        labels = [ln.strip() for ln in lines]
    else:
        labels = [x.strip() for x in value.split(",")]
    if not labels or any(not x for x in labels):
        raise ConfigError(f"--labels '{value}': expected a comma-separated list or a file with one label a line")
    return labels


def report_to(outputs: Iterable[str | Path | None]) -> TextIO:
    """Where a command prints what it did: standard output, or standard error when one of ``outputs`` is standard
    output (``--jsonl /dev/stdout | jq ...``: the records alone on the pipe)."""
    from ovq.core.fileio import is_stdout

    return sys.stderr if any(p is not None and is_stdout(p) for p in outputs) else sys.stdout
