"""Liveness for supervisors: systemd's notify protocol, and a heartbeat file for everyone else.

:class:`LivenessSink` is an ordinary pipeline sink (``build_pipeline(..., extra_sinks=[...])``), so it sees
results exactly when they leave the pipeline: a frozen source or a deadlocked stage stops its calls.

- systemd (``Type=notify``, ``WatchdogSec=``): ``READY=1`` after the first result (tried again at most once a second
  while it fails), ``WATCHDOG=1`` at most every half watchdog period while results flow, ``STOPPING=1`` when the
  pipeline closes its sinks. The datagrams go to ``$NOTIFY_SOCKET`` (a filesystem path, or ``@name`` in the
  abstract namespace) as sd_notify(3) sends them; no library needed. Without ``$NOTIFY_SOCKET`` nothing is sent.
- other supervisors (Docker ``HEALTHCHECK``, a PLC's script): ``$OVQ_HEARTBEAT_FILE`` names a file whose
  modification time is the last result's (written atomically at most once a second); ``ovq health FILE
  --max-age S`` exits 0 while it is fresh (and holds what a pipeline writes, dated no later than now).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import socket
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ovq.core.errors import ConfigError

logger = logging.getLogger(__name__)

HEARTBEAT_ENV = "OVQ_HEARTBEAT_FILE"


def notify_address(environ: Mapping[str, str]) -> str | None:
    """The socket address of ``$NOTIFY_SOCKET`` (``@`` becomes the abstract namespace's leading NUL)."""
    path = environ.get("NOTIFY_SOCKET", "")
    if not path:
        return None
    if path.startswith("@"):
        return "\0" + path[1:]
    if not path.startswith("/"):
        raise ConfigError(f"NOTIFY_SOCKET={path}: expected an absolute socket path or @name")
    return path


def watchdog_interval(environ: Mapping[str, str]) -> float | None:
    """Half of ``$WATCHDOG_USEC`` in seconds when the watchdog is meant for this process (``$WATCHDOG_PID``)."""
    usec = environ.get("WATCHDOG_USEC", "")
    pid = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2e6


class Notifier:
    """Sends sd_notify(3) state strings (``READY=1``, ``WATCHDOG=1``, ``STATUS=...``) to one socket address."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._failure: str | None = None  # why the last send failed: said once, not at every ping

    def send(self, *states: str) -> bool:
        """Send the states in one datagram; a failure is logged (a supervisor's trouble must not stop the run), once
        per reason, and the first send that works after it says so.

        Never blocks: a unix datagram socket whose reader lags holds only a few datagrams (net.unix.max_dgram_qlen)
        and a blocking send would then stall the pipeline's result thread; that datagram is dropped instead.
        """
        where = self.address.lstrip("\0")
        try:
            self._sock.sendto("\n".join(states).encode(), socket.MSG_DONTWAIT, self.address)
        except BlockingIOError:
            logger.debug("sd_notify %s dropped: %s is not reading", states[0], where)
            return False
        except OSError as exc:
            # a socket that is gone logged a warning at every result until READY=1 got through (30 a second), then
            # at every watchdog ping, for as long as the service ran
            reason = exc.strerror or str(exc)
            if reason != self._failure:
                logger.warning("sd_notify %s to %s failed: %s (said again only if the reason changes)", states[0],
                               where, exc)
                self._failure = reason
            else:
                logger.debug("sd_notify %s to %s failed: %s", states[0], where, exc)
            return False
        if self._failure is not None:  # at the failure's level, so whoever saw it (-q) sees it end
            logger.warning("sd_notify to %s works again", where)
            self._failure = None
        return True

    def close(self) -> None:
        self._sock.close()


class LivenessSink:
    """A sink that reports liveness (see the module docstring); ``from_environment`` builds it when asked for."""

    def __init__(self, notifier: Notifier | None = None, *, watchdog: float | None = None,
                 heartbeat: Path | None = None, clock=time.monotonic) -> None:
        self.notifier = notifier
        self.watchdog = watchdog
        self.heartbeat = heartbeat
        self._clock = clock
        self._ready = False
        self._last_ping = self._last_beat = float("-inf")
        self._beat_failure: str | None = None  # why the last heartbeat could not be written: said once, not each second
        self.results = 0

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> LivenessSink | None:
        """The sink ``$NOTIFY_SOCKET`` / ``$OVQ_HEARTBEAT_FILE`` ask for, or ``None`` when neither is set."""
        environ = os.environ if environ is None else environ
        address = notify_address(environ)
        beat = environ.get(HEARTBEAT_ENV) or None
        if address is None and beat is None:
            return None
        notifier = Notifier(address) if address is not None else None
        return cls(notifier, watchdog=watchdog_interval(environ), heartbeat=Path(beat) if beat else None)

    def write(self, result) -> None:
        self.results += 1
        now = self._clock()
        if self.notifier is not None:
            if not self._ready:
                # a READY=1 that failed is tried again at most once a second (or each half watchdog period, if
                # shorter), not at every result: a socket that is not there cost a system call per frame all run
                if now - self._last_ping >= min(1.0, self.watchdog or 1.0):
                    self._ready = self.notifier.send("READY=1", f"STATUS=running: first result from {result.stream}")
                    self._last_ping = now
            elif self.watchdog is not None and now - self._last_ping >= self.watchdog:
                self.notifier.send("WATCHDOG=1")
                self._last_ping = now
        if self.heartbeat is not None and now - self._last_beat >= 1.0:
            self._last_beat = now
            self._beat(result.stream)

    def _beat(self, stream: str) -> None:
        tmp = self.heartbeat.with_name(f".{self.heartbeat.name}.tmp")
        try:
            tmp.write_text(json.dumps({"time": time.time(), "results": self.results, "stream": stream}) + "\n",
                           encoding="utf-8")
            os.replace(tmp, self.heartbeat)
        except OSError as exc:
            # once per reason: a service whose heartbeat path is a folder logged it every second for as long as it ran
            reason = exc.strerror or str(exc)
            if reason != self._beat_failure:
                logger.warning("%s: cannot write the heartbeat: %s (said again only if the reason changes)",
                               self.heartbeat, exc)
                self._beat_failure = reason
            with contextlib.suppress(OSError):
                tmp.unlink()
            return
        if self._beat_failure is not None:  # at the failure's level, so whoever saw it (-q) sees it end
            logger.warning("%s: the heartbeat is written again", self.heartbeat)
            self._beat_failure = None

    def close(self) -> None:
        if self.notifier is not None:
            self.notifier.send("STOPPING=1", f"STATUS=stopped after {self.results} results")
            self.notifier.close()


# How far ahead of this clock a heartbeat may be dated before the clock (or the file) counts as wrong: the
# file's time is the kernel's at the write, and a file system may round it up to its granularity (2 s on FAT).
FUTURE_TOLERANCE_S = 2.0


@dataclass(frozen=True)
class Heartbeat:
    """What a heartbeat file says: seconds since the last result, results so far; ``problem`` when the file
    cannot be trusted (not what a pipeline writes, or dated in the future), so it does not count as alive."""

    age: float
    results: int | None
    problem: str | None = None


def read_heartbeat(path: str | Path, now: float | None = None) -> Heartbeat:
    """The heartbeat file :class:`LivenessSink` writes (JSON ``{"time", "results", "stream"}``, its modification
    time the last result's); :class:`ConfigError` when there is no such file (a wrong path, not a stopped
    pipeline)."""
    path = Path(path)
    try:
        info = path.stat()
    except OSError as exc:
        raise ConfigError(f"{path}: no heartbeat ({exc.strerror or exc}); is the pipeline running with "
                          f"{HEARTBEAT_ENV} set?") from None
    if not stat.S_ISREG(info.st_mode):  # a folder's time says nothing about a pipeline: a wrong path, not "stale"
        raise ConfigError(f"{path}: not a file; give the heartbeat file the pipeline writes ({HEARTBEAT_ENV})")
    now = time.time() if now is None else now
    age = now - info.st_mtime
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not the JSON a pipeline writes"
        return Heartbeat(age, None, f"cannot read the heartbeat: {'empty' if not info.st_size else reason}")
    written, results = (data.get("time"), data.get("results")) if isinstance(data, dict) else (None, None)
    if not (isinstance(written, (int, float)) and math.isfinite(written) and isinstance(results, int)) \
            or isinstance(results, bool):
        return Heartbeat(age, None, "not a heartbeat: expected JSON with a 'time' and a 'results' count")
    ahead = max(info.st_mtime, written) - now
    if ahead > FUTURE_TOLERANCE_S:
        return Heartbeat(age, results, f"the last result is dated {ahead:.0f} s in the future: this clock or the "
                                       "file's is wrong")
    return Heartbeat(max(age, 0.0), results)
