"""MQTT sink: one JSON message per frame (see :func:`~ovq.streaming.sinks.frame_record`), topic ``PREFIX/STREAM``."""

from __future__ import annotations

import json
import logging
import os
import secrets
import ssl
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ovq.core.errors import ConfigError, DependencyError, OutputError
from ovq.core.urls import Url, check_secret_text, parse_url
from ovq.streaming.pipeline import FrameResult
from ovq.streaming.sinks import frame_record

logger = logging.getLogger(__name__)


MQTT_SCHEMES = ("mqtt", "mqtts", "tcp", "ssl")  # mqtts:// and ssl:// are TLS
TLS_SCHEMES = ("mqtts", "ssl")


def parse_broker_url(text: str) -> Url:
    """A broker URL (``mqtt://host[:port]``, ``mqtts://...``; ``host[:port]`` alone means ``mqtt://``), checked
    by the parser every stream URL goes through; :class:`ConfigError` naming the problem, password hidden.
    WebSocket brokers (``ws://``, ``wss://``) are not supported, by ``ovq pipeline --check`` as by the run."""
    url = parse_url(text if "://" in text else f"mqtt://{text}", schemes=MQTT_SCHEMES, what="MQTT broker")
    return url


CREDENTIAL_ENV = ("OVQ_MQTT_USERNAME", "OVQ_MQTT_PASSWORD")
_UNSENDABLE = "MQTT sends credentials as UTF-8, so no broker could accept it (give UTF-8 text)"


def check_credentials(environ: Mapping[str, str], url: Url | None = None, url_name: str = "") -> None:
    """A :class:`ConfigError` naming the variable (or the URL ``url_name``) whose user name or password is not
    UTF-8 text (paho-mqtt raised UnicodeEncodeError on it, a traceback), never the value."""
    for name in CREDENTIAL_ENV:
        check_secret_text(environ.get(name), name, _UNSENDABLE)
    if url is not None:
        check_secret_text(url.username, f"{url_name}: the user name", _UNSENDABLE)
        check_secret_text(url.password, f"{url_name}: the password", _UNSENDABLE)


def mqtt_settings(url: str | None = None) -> dict[str, Any]:
    """Broker host, port, TLS and credentials from ``url`` or ``$OVQ_MQTT_URL`` plus the credential variables.

    ``$OVQ_MQTT_USERNAME`` / ``$OVQ_MQTT_PASSWORD`` win over credentials embedded in the URL.
    """
    from_env = not url
    url = url or os.environ.get("OVQ_MQTT_URL")
    if not url:
        raise ConfigError("no MQTT broker: pass a URL (mqtt://HOST[:PORT]) or set OVQ_MQTT_URL")
    parsed = parse_broker_url(url)
    check_credentials(os.environ, parsed, "OVQ_MQTT_URL" if from_env else parsed.redacted())
    tls = parsed.scheme in TLS_SCHEMES
    username = os.environ.get("OVQ_MQTT_USERNAME") or parsed.username or None
    password = os.environ.get("OVQ_MQTT_PASSWORD") or parsed.password or None
    return {"host": parsed.host, "port": parsed.port or (8883 if tls else 1883), "tls": tls,
            "username": username, "password": password, "display": parsed.redacted()}


class MqttSink:
    """One MQTT message per frame, JSON (see :func:`frame_record`), on topic ``{topic_prefix}/{stream}``.

    The broker comes from ``url`` or ``$OVQ_MQTT_URL``; credentials from ``$OVQ_MQTT_USERNAME`` and
    ``$OVQ_MQTT_PASSWORD`` (or embedded in ``$OVQ_MQTT_URL``). ``mqtts://`` verifies the broker against the
    system's CAs or ``ca_file``; ``cert_file``/``key_file`` are a client certificate. paho-mqtt's network thread
    connects in the background and reconnects with back-off (1 to 30 s) whenever the broker goes away; messages
    published while disconnected are dropped and counted (``unsent``) rather than piling up in memory.

    A refused login and a failed TLS handshake are logged as errors (once per distinct reason). With
    ``strict`` a sink that cannot deliver fails the run: :meth:`start` waits up to ``connect_timeout`` seconds
    for the broker - no longer than its first answer: a refused connection, login or handshake fails it at
    once, with that reason as the one error line - and a message that cannot be sent raises
    :class:`~ovq.core.errors.OutputError`.
    """

    def __init__(
        self, url: str | None = None, *, topic_prefix: str = "ovq", labels: list[str] | None = None, qos: int = 0,
        client_id: str | None = None, ca_file: str | Path | None = None, cert_file: str | Path | None = None,
        key_file: str | Path | None = None, strict: bool = False, connect_timeout: float = 10.0,
    ) -> None:
        try:
            import paho.mqtt.client as mqtt
        except ImportError:
            raise DependencyError("the MQTT sink needs paho-mqtt: pip install 'ovq[mqtt]'") from None
        if qos not in (0, 1):
            raise ConfigError(f"MQTT qos must be 0 or 1, got {qos}")
        settings = mqtt_settings(url)
        if (ca_file or cert_file) and not settings["tls"]:
            raise ConfigError(f"{settings['display']}: a CA file or client certificate needs a TLS broker URL "
                              "(mqtts://)")
        if key_file and not cert_file:
            raise ConfigError("MQTT: a client key without its certificate (give the certificate file too)")
        self.host, self.port = settings["host"], settings["port"]
        self.strict = strict
        self.connect_timeout = connect_timeout
        self.failure: str | None = None  # the last reason the broker could not be reached
        self.topic_prefix = topic_prefix.rstrip("/")
        self.labels = labels
        self.qos = qos
        self.sent = 0
        self.unsent = 0
        self._connected = threading.Event()
        self._answered = threading.Event()  # the broker connected, or an attempt failed with a reason
        self._started = False
        self._last: Any = None
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"ovq-{os.getpid()}-{secrets.token_hex(3)}",
            reconnect_on_failure=True,
        )
        if settings["username"]:
            client.username_pw_set(settings["username"], settings["password"])
        if settings["tls"]:
            try:
                client.tls_set(ca_certs=_opt(ca_file), certfile=_opt(cert_file), keyfile=_opt(key_file))
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError: a file that is no PEM
                which = next(str(f) for f in (ca_file, cert_file, key_file, "TLS setup") if f)
                raise ConfigError(f"MQTT: {which}: cannot load it for TLS: {exc}") from None
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.max_queued_messages_set(1000)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        self._client = client
        self._was_connected = False
        self._closing = False
        client.connect_async(self.host, self.port, keepalive=30)
        client.loop_start()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None) -> None:
        if getattr(reason, "is_failure", False):
            self._failed(f"the broker refused the connection: {reason}")
            return
        self.failure = None
        self._connected.set()
        self._answered.set()
        if self._was_connected:
            logger.warning("MQTT: reconnected to %s:%d", self.host, self.port)
        else:
            logger.info("MQTT: connected to %s:%d", self.host, self.port)
        self._was_connected = True

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        if was and not self._closing:
            logger.warning("MQTT: lost the broker %s:%d (%s); reconnecting", self.host, self.port, reason)

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        # paho calls this from inside its ``except OSError`` around the connection attempt, without the error
        exc = sys.exc_info()[1]
        if isinstance(exc, ssl.SSLError):
            self._failed(f"TLS handshake failed: {exc.reason or exc}")
        elif isinstance(exc, OSError):
            self._failed(f"cannot connect: {exc.strerror or exc}")
        else:
            self._failed("cannot connect")

    def _failed(self, why: str) -> None:
        # once per reason, not once per retry; before a strict start() the reason is its error, not a log line too
        if why != self.failure and (self._started or not self.strict):
            logger.error("MQTT %s:%d: %s", self.host, self.port, why)
        self.failure = why
        self._answered.set()

    def start(self, names: list[str]) -> None:
        """Called by the pipeline before the first frame: with ``strict``, wait for the broker (or fail)."""
        if self.strict and not (self._answered.wait(self.connect_timeout) and self._connected.is_set()):
            why = self.failure or f"no connection within {self.connect_timeout:g} s"
            raise OutputError(f"MQTT {self.host}:{self.port}: {why} (strict: the run needs the broker)")
        self._started = True

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def topic(self, stream: str) -> str:
        return f"{self.topic_prefix}/{stream}"

    def write(self, result: FrameResult) -> None:
        if not self._connected.is_set():
            self.unsent += 1
            if self.strict:
                why = self.failure or "not connected"
                raise OutputError(f"MQTT {self.host}:{self.port}: {why}; frame {result.frame_index} of "
                                  f"{result.stream} not sent (strict)")
            if self.unsent == 1 or self.unsent % 100 == 0:
                logger.warning("MQTT: not connected to %s:%d; %d message(s) dropped", self.host, self.port, self.unsent)
            return
        payload = json.dumps(frame_record(result, self.labels), separators=(",", ":"))
        info = self._client.publish(self.topic(result.stream), payload, qos=self.qos)
        if info.rc == 0:
            self.sent += 1
            self._last = info
        else:
            self.unsent += 1

    def close(self, timeout: float = 5.0) -> None:
        self._closing = True
        last = self._last
        if last is not None and self._connected.is_set():
            try:
                last.wait_for_publish(timeout)
            except (RuntimeError, ValueError) as exc:
                logger.warning("MQTT: last message not confirmed: %s", exc)
        self._client.disconnect()
        self._client.loop_stop()
        if self.unsent:
            level = logging.ERROR if self.sent == 0 else logging.WARNING
            logger.log(level, "MQTT %s:%d: %d of %d message(s) were not sent%s", self.host, self.port, self.unsent,
                       self.unsent + self.sent, f" ({self.failure})" if self.failure else "")

    def abort(self) -> None:
        """The run failed: stop without waiting for the last message."""
        self._closing = True
        self._client.disconnect()
        self._client.loop_stop()


def _opt(path: str | Path | None) -> str | None:
    return str(path) if path else None
