"""Publishing: one MQTT session per device (its own credentials), paced by the simulated clock.

All sessions live in one selector loop driven by paho's external-loop API, so a thousand
devices cost a thousand sockets, not a thousand threads.
"""

from __future__ import annotations

import base64
import logging
import selectors
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from maillage.registry.models import DeviceCredentials
from maillage.simulators.engine import Publication
from maillage.simulators.payloads import iso

log = logging.getLogger(__name__)

RECONNECT_S = 2.0
MAX_UNACKED = 20_000  # stop feeding the sockets beyond this, so memory stays bounded


@dataclass
class Stats:
    """Counters shown live and in the summary."""

    started: float = field(default_factory=time.monotonic)
    published: int = 0
    acked: int = 0
    errors: int = 0
    connected: int = 0
    sessions: int = 0
    devices: int = 0
    bytes: int = 0
    sim_time: datetime | None = None
    labels: int = 0
    registration_s: float = 0.0
    error_kinds: dict[str, int] = field(default_factory=dict)

    def error(self, kind: str) -> None:
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


class Sink(Protocol):
    """Where publications go: MQTT sessions, or a file for dry runs."""

    stats: Stats
    inbox: list[tuple[str, bytes]]
    """Commands received (device id, payload), emptied by the publish loop."""

    def send(self, pub: Publication) -> None: ...

    def pump(self, timeout: float) -> None: ...

    def backlog(self) -> int: ...

    def close(self) -> None: ...


class FileSink:
    """Dry run: one JSON line per publication, in order (`payload_b64` for non-UTF-8 bytes)."""

    def __init__(self, path: Path, tenant: str, *, stats: Stats | None = None) -> None:
        self.inbox: list[tuple[str, bytes]] = []
        self._f = path.open("wb")
        self._tenant = tenant
        self.stats = stats or Stats()

    def send(self, pub: Publication) -> None:
        doc: dict[str, Any] = {"at": iso(pub.at),
                               "topic": f"maillage/{self._tenant}/{pub.device_id}/{pub.channel}"}
        try:
            doc["payload"] = pub.payload.decode()
        except UnicodeDecodeError:
            doc["payload_b64"] = base64.b64encode(pub.payload).decode()
        self._f.write(orjson.dumps(doc) + b"\n")
        self.stats.published += 1
        self.stats.acked += 1
        self.stats.bytes += len(pub.payload)

    def pump(self, timeout: float) -> None:
        pass

    def backlog(self) -> int:
        return 0

    def close(self) -> None:
        self._f.close()


class _Session:
    """One device's MQTT session."""

    __slots__ = ("client", "creds", "up", "retry_at", "unacked")

    def __init__(self, client: mqtt.Client, creds: DeviceCredentials) -> None:
        self.client = client
        self.creds = creds
        self.up = False
        self.retry_at = 0.0
        self.unacked = 0


class MqttSink:
    """One MQTT session per device, all in one selector loop; QoS 1, retained online/offline."""

    def __init__(self, host: str, port: int, creds: Mapping[str, DeviceCredentials],
                 *, stats: Stats | None = None, keepalive: int = 120,
                 listeners: Iterable[str] = ()) -> None:
        self.host, self.port, self.keepalive = host, port, keepalive
        self.listeners = frozenset(listeners)  # devices that take commands on `down/#`
        self.inbox: list[tuple[str, bytes]] = []
        self.stats = stats or Stats()
        self.stats.sessions = len(creds)
        self._sel = selectors.DefaultSelector()
        self._sessions: dict[str, _Session] = {}
        self._unacked = 0
        self._last_misc = 0.0
        for device_id, c in creds.items():
            self._sessions[device_id] = _Session(self._client(c), c)

    def _client(self, c: DeviceCredentials) -> mqtt.Client:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=c.mqtt_username,
                             protocol=mqtt.MQTTv311, clean_session=True)
        client.username_pw_set(c.mqtt_username, c.mqtt_password)
        client.will_set(f"{c.topic_prefix}status", b"offline", qos=1, retain=True)
        client.max_inflight_messages_set(50)
        client.user_data_set(c.device_id)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_socket_open = self._sock_open
        client.on_socket_close = self._sock_close
        client.on_socket_register_write = self._want_write
        client.on_socket_unregister_write = self._no_write
        return client

    # --- selector plumbing (paho external loop) ---
    def _sock_open(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._sel.register(sock, selectors.EVENT_READ, client)

    def _sock_close(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        try:
            self._sel.unregister(sock)
        except (KeyError, ValueError):
            pass

    def _want_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        try:
            self._sel.modify(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, client)
        except (KeyError, ValueError):
            pass

    def _no_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        try:
            self._sel.modify(sock, selectors.EVENT_READ, client)
        except (KeyError, ValueError):
            pass

    # --- paho callbacks ---
    def _on_connect(self, client: mqtt.Client, device_id: str, flags: Any, rc: Any,
                    props: Any) -> None:
        s = self._sessions[device_id]
        if rc.is_failure:
            self.stats.error(f"connect refused: {rc}")
            s.retry_at = time.monotonic() + 30  # bad credentials will not heal quickly
            client.disconnect()
            return
        s.up = True
        self.stats.connected += 1
        if device_id in self.listeners:
            client.subscribe(f"{s.creds.topic_prefix}down/#", qos=1)
        client.publish(f"{s.creds.topic_prefix}status", b"online", qos=1, retain=True)
        self._unacked += 1
        s.unacked += 1

    def _on_disconnect(self, client: mqtt.Client, device_id: str, flags: Any, rc: Any,
                       props: Any) -> None:
        s = self._sessions[device_id]
        if s.up:
            self.stats.connected -= 1
        s.up = False
        if not self._closing:
            self.stats.error("disconnected")
            s.retry_at = max(s.retry_at, time.monotonic() + RECONNECT_S)

    def _on_publish(self, client: mqtt.Client, device_id: str, mid: int, rc: Any,
                    props: Any) -> None:
        s = self._sessions[device_id]
        s.unacked -= 1
        self._unacked -= 1
        self.stats.acked += 1

    def _on_message(self, client: mqtt.Client, device_id: str, msg: mqtt.MQTTMessage) -> None:
        self.inbox.append((device_id, bytes(msg.payload)))

    _closing = False

    def open(self, timeout: float = 30.0) -> None:
        """Connect every device's session and wait (up to `timeout`) until they are up."""
        for s in self._sessions.values():
            self._connect(s)
        deadline = time.monotonic() + timeout
        while self.stats.connected < len(self._sessions) and time.monotonic() < deadline:
            self.pump(0.05)
        if self.stats.connected < len(self._sessions):
            log.warning("%d of %d devices connected after %.0f s", self.stats.connected,
                        len(self._sessions), timeout)

    def _connect(self, s: _Session) -> None:
        try:
            s.client.connect(self.host, self.port, keepalive=self.keepalive)
        except OSError as exc:
            self.stats.error(f"connect: {exc.__class__.__name__}")
            s.retry_at = time.monotonic() + RECONNECT_S

    def send(self, pub: Publication) -> None:
        s = self._sessions.get(pub.device_id)
        if s is None:
            self.stats.error("no credentials")
            return
        info = s.client.publish(f"{s.creds.topic_prefix}{pub.channel}", pub.payload, qos=1)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            self.stats.error(f"publish: {mqtt.error_string(info.rc)}")
            return
        # Not connected: paho keeps QoS 1 messages and sends them after the reconnection.
        self.stats.published += 1
        self.stats.bytes += len(pub.payload)
        s.unacked += 1
        self._unacked += 1

    def backlog(self) -> int:
        return self._unacked

    def pump(self, timeout: float) -> None:
        """Run the network loop once: reads, writes, keepalives, reconnections."""
        for key, mask in self._sel.select(timeout):
            client: mqtt.Client = key.data
            if mask & selectors.EVENT_READ:
                client.loop_read()
            if mask & selectors.EVENT_WRITE:
                client.loop_write()
        now = time.monotonic()
        if now - self._last_misc >= 1.0:
            self._last_misc = now
            for s in self._sessions.values():
                if s.up:
                    s.client.loop_misc()
                elif s.retry_at and now >= s.retry_at and not self._closing:
                    s.retry_at = 0.0
                    self._reconnect(s)

    def _reconnect(self, s: _Session) -> None:
        try:
            s.client.reconnect()
        except OSError as exc:
            self.stats.error(f"connect: {exc.__class__.__name__}")
            s.retry_at = time.monotonic() + RECONNECT_S

    def drain(self, timeout: float) -> None:
        """Wait until every published message is acknowledged (or the timeout)."""
        deadline = time.monotonic() + timeout
        while self._unacked > 0 and time.monotonic() < deadline:
            self.pump(0.05)

    def close(self) -> None:
        """Say `offline` (retained) for every device, wait for the acks, disconnect."""
        self.drain(10)
        self._closing = True
        for s in self._sessions.values():
            if s.up:
                s.client.publish(f"{s.creds.topic_prefix}status", b"offline", qos=1, retain=True)
                self._unacked += 1
                s.unacked += 1
        self.drain(10)
        for s in self._sessions.values():
            if s.up:
                s.client.disconnect()
        self.pump(0.1)
        self._sel.close()


class Pacer:
    """Maps simulated time to wall time: `speed` times faster, never ahead of the real clock."""

    def __init__(self, sim_start: datetime, speed: float, *, unpaced: bool = False) -> None:
        self.sim_start = sim_start
        self.speed = speed
        self.unpaced = unpaced
        self.wall_start = time.time()

    def sim_now(self, floor: datetime) -> datetime:
        """The simulated time now (not before `floor`, the next publication's time when unpaced)."""
        if self.unpaced:
            return floor
        t = self.sim_start + timedelta(seconds=(time.time() - self.wall_start) * self.speed)
        return min(t, datetime.now(UTC)).replace(microsecond=0)

    def wall_due(self, sim_t: datetime) -> float:
        """Wall-clock time (epoch seconds) at which a publication of sim time `sim_t` goes out."""
        if self.unpaced:
            return 0.0
        scaled = self.wall_start + (sim_t - self.sim_start).total_seconds() / self.speed
        # A device cannot report a measurement from the future: accelerated runs that catch up
        # with the present continue in real time.
        return max(scaled, sim_t.timestamp())


Commands = Callable[[str, bytes, datetime], list[Publication]]


def run(pubs: Iterable[Publication], sink: Sink, pacer: Pacer, stop: threading.Event,
        *, wall_deadline: float | None = None, on_tick: Any = None,
        on_command: Commands | None = None) -> None:
    """Feed publications to the sink at their paced wall time until exhausted, stopped or timed out.

    Commands the devices received are handed to `on_command` at the current simulated time, and
    its answers (acknowledgements) go out at once.
    """
    it: Iterator[Publication] = iter(pubs)
    last_tick = 0.0
    for pub in it:
        due = pacer.wall_due(pub.at)
        while True:
            if sink.inbox and on_command is not None:
                inbox, sink.inbox = sink.inbox, []
                for device_id, payload in inbox:
                    for answer in on_command(device_id, payload, pacer.sim_now(pub.at)):
                        sink.send(answer)
            now = time.time()
            if stop.is_set() or (wall_deadline is not None and now >= wall_deadline):
                return
            if on_tick is not None and now - last_tick >= 0.25:
                last_tick = now
                on_tick()
            if now >= due and sink.backlog() < MAX_UNACKED:
                break
            sink.pump(min(0.2, max(0.0, due - now)) if now < due else 0.01)
        sink.stats.sim_time = pub.at
        sink.send(pub)
        # Keep the sockets moving even when a burst is due at once.
        if sink.stats.published % 200 == 0:
            sink.pump(0)
