"""MQTT sink: one JSON message per frame (see :func:`~ovq.streaming.sinks.frame_record`), topic ``PREFIX/STREAM``."""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
from typing import Any

from ovq.core.errors import ConfigError, DependencyError
from ovq.core.urls import Url, parse_url
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


def mqtt_settings(url: str | None = None) -> dict[str, Any]:
    """Broker host, port, TLS and credentials from ``url`` or ``$OVQ_MQTT_URL`` plus the credential variables.

    ``$OVQ_MQTT_USERNAME`` / ``$OVQ_MQTT_PASSWORD`` win over credentials embedded in the URL.
    """
    url = url or os.environ.get("OVQ_MQTT_URL")
    if not url:
        raise ConfigError("no MQTT broker: pass a URL (mqtt://HOST[:PORT]) or set OVQ_MQTT_URL")
    parsed = parse_broker_url(url)
    tls = parsed.scheme in TLS_SCHEMES
    username = os.environ.get("OVQ_MQTT_USERNAME") or parsed.username or None
    password = os.environ.get("OVQ_MQTT_PASSWORD") or parsed.password or None
    return {"host": parsed.host, "port": parsed.port or (8883 if tls else 1883), "tls": tls,
            "username": username, "password": password, "display": parsed.redacted()}


class MqttSink:
    """One MQTT message per frame, JSON (see :func:`frame_record`), on topic ``{topic_prefix}/{stream}``.

    The broker comes from ``url`` or ``$OVQ_MQTT_URL``; credentials from ``$OVQ_MQTT_USERNAME`` and
    ``$OVQ_MQTT_PASSWORD`` (or embedded in ``$OVQ_MQTT_URL``). paho-mqtt's network thread connects in the
    background and reconnects with back-off (1 to 30 s) whenever the broker goes away; messages published while
    disconnected are dropped and counted (``unsent``) rather than piling up in memory.
    """

    def __init__(
        self, url: str | None = None, *, topic_prefix: str = "ovq", labels: list[str] | None = None, qos: int = 0,
        client_id: str | None = None,
    ) -> None:
        try:
            import paho.mqtt.client as mqtt
        except ImportError:
            raise DependencyError("the MQTT sink needs paho-mqtt: pip install 'ovq[mqtt]'") from None
        if qos not in (0, 1):
            raise ConfigError(f"MQTT qos must be 0 or 1, got {qos}")
        settings = mqtt_settings(url)
        self.host, self.port = settings["host"], settings["port"]
        self.topic_prefix = topic_prefix.rstrip("/")
        self.labels = labels
        self.qos = qos
        self.sent = 0
        self.unsent = 0
        self._connected = threading.Event()
        self._last: Any = None
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"ovq-{os.getpid()}-{secrets.token_hex(3)}",
            reconnect_on_failure=True,
        )
        if settings["username"]:
            client.username_pw_set(settings["username"], settings["password"])
        if settings["tls"]:
            client.tls_set()
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.max_queued_messages_set(1000)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        self._client = client
        self._was_connected = False
        self._closing = False
        client.connect_async(self.host, self.port, keepalive=30)
        client.loop_start()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None) -> None:
        if getattr(reason, "is_failure", False):
            logger.warning("MQTT broker %s:%d refused the connection: %s", self.host, self.port, reason)
            return
        self._connected.set()
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
            logger.warning("MQTT: %d of %d message(s) were not sent", self.unsent, self.unsent + self.sent)
