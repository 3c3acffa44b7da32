"""The ``ovq`` command line: a thin layer over the Python API.

Each command lives in its own module with ``register(subparsers)``; the list below is the registry.
Every :class:`ovq.core.errors.OvqError` and every ``OSError`` (a full disk, a read-only folder, a path through
a regular file) becomes one line on stderr naming the path and the reason, and exit code 2; Ctrl-C, from the
first moment, one line and exit code 130.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback
from collections.abc import Sequence

from ovq.core.errors import OvqError, os_error_message

COMMANDS = (
    "convert", "predict", "quantize", "run", "devices", "pipeline", "bundle", "health", "eval", "bench", "capacity",
    "families", "demo", "serve", "export-serving",
)


def build_parser() -> argparse.ArgumentParser:
    from ovq import __version__

    parser = argparse.ArgumentParser(prog="ovq", description="Object detectors to production on Intel hardware.")
    parser.add_argument("--version", action="version", version=f"ovq {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"ovq.cli.{name.replace('-', '_')}").register(sub)
    return parser


# syslog priorities (sd-daemon(3)): journald reads a "<N>" line prefix as the line's priority
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class _JournalFormatter(logging.Formatter):
    """No timestamp (journald stamps each line) and the level as a ``<N>`` priority prefix."""

    def format(self, record: logging.LogRecord) -> str:
        return f"<{_PRIORITY.get(record.levelno, 6)}>" + super().format(record)


def stderr_is_journal() -> bool:
    """Whether stderr is the journal stream systemd set up (``$JOURNAL_STREAM`` is its ``device:inode``)."""
    import os

    try:
        dev, ino = (int(x) for x in os.environ.get("JOURNAL_STREAM", "").split(":"))
        st = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else logging.DEBUG if verbose > 1 else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    if stderr_is_journal():
        handler.setFormatter(_JournalFormatter("%(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger("ovq")
    root.handlers[:] = [handler]
    root.setLevel(level)
    # third-party chatter stays at warning level unless -vv
    for name in ("nncf", "ultralytics"):
        logging.getLogger(name).setLevel(logging.DEBUG if verbose > 1 else logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    command, verbose = "ovq", 0
    try:
        args = build_parser().parse_args(argv)
        command, verbose = f"ovq {args.command}", getattr(args, "verbose", 0)
        _setup_logging(verbose, getattr(args, "quiet", False))
        return int(args.func(args) or 0)
    except (OvqError, OSError) as exc:
        if verbose:  # -v: where it came from, through NNCF's callbacks and all
            traceback.print_exception(exc, file=sys.stderr)
        message = os_error_message(exc) if isinstance(exc, OSError) else str(exc)
        print(f"{command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # also during start-up (the command's imports): one line, never a traceback
        print(f"{command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


def entry() -> None:
    """The ``ovq`` command (console script and ``python -m ovq``): :func:`main`, then exit with its code.

    After a Ctrl-C the process ends at once (``os._exit``), its one line written: an interrupt that lands while
    a library starts a thread (``import openvino`` starts a thread pool) can leave a worker that nothing will
    wake, and the interpreter would wait for it forever at exit (seen: a SIGINT 0.5 s into ``ovq run``).
    """
    code = main()
    if code == 130:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    sys.exit(code)
