"""A small client for Mosquitto's dynamic-security plugin (commands over `$CONTROL`): broker credentials."""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from maillage.errors import StackError

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = "$CONTROL/dynamic-security/v1/response"
# Mosquitto 2.0 rewrites its whole dynsec file after every *command* that changes something (not
# once per control message), so a command costs time in proportion to the clients and roles
# already there (~20 ms at 1,000 devices, ~0.4 s at 10,000 on a small VM), and the broker, which
# is single-threaded, serves nobody while it works through a message. Chunks are therefore sized
# by time, not count: about TARGET_S of work each, so that a bulk import never holds the broker
# (or waits on one answer) for long.
CHUNK = 200  # at most this many commands per control message
FIRST_CHUNK = 8  # a probe: the first message tells how long a command takes on this broker
TARGET_S = 1.0


class DynsecClient:
    """Sends batches of dynsec commands and waits for their responses."""

    def __init__(self, host: str, port: int, username: str, password: str, timeout_s: float = 30) -> None:
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"maillage-dynsec-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv311,
        )
        self._client.username_pw_set(username, password)
        self._host, self._port, self._timeout = host, port, timeout_s
        self._cond = threading.Condition()
        self._responses: list[dict[str, Any]] = []
        self._connected = threading.Event()
        self._connect_rc: Any = None

    def __enter__(self) -> DynsecClient:
        sub_done = threading.Event()
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *a: sub_done.set()
        self._client.connect(self._host, self._port, keepalive=30)
        self._client.loop_start()
        if not self._connected.wait(self._timeout):
            raise StackError("could not connect to Mosquitto's control topic")
        if self._connect_rc is not None and self._connect_rc.is_failure:
            raise StackError(f"Mosquitto refused the admin account: {self._connect_rc}")
        sub_done.wait(self._timeout)
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self._connect_rc = rc
        if not rc.is_failure:
            # Again after a reconnect (clean session): answers must not go to nobody.
            client.subscribe(RESPONSE_TOPIC, qos=1)
        self._connected.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self._responses.extend(json.loads(msg.payload).get("responses", []))
            self._cond.notify_all()

    def run(self, commands: Sequence[dict[str, Any]], ignore: Iterable[str] = ()) -> list[dict[str, Any]]:
        """Run commands in chunks; raise on an error whose text contains none of `ignore`."""
        ignore = tuple(ignore)
        out: list[dict[str, Any]] = []
        it = iter(commands)
        size = min(FIRST_CHUNK, CHUNK)
        while chunk := list(itertools.islice(it, size)):
            with self._cond:
                self._responses.clear()
            started = time.monotonic()
            self._client.publish(CONTROL_TOPIC, json.dumps({"commands": chunk}), qos=1)
            expected = len(chunk)
            with self._cond:
                if not self._cond.wait_for(lambda: len(self._responses) >= expected,  # noqa: B023
                                           self._timeout):
                    raise StackError("Mosquitto's dynamic-security plugin did not answer")
                got = list(self._responses)
            per_command = (time.monotonic() - started) / len(chunk)
            size = max(1, min(CHUNK, int(TARGET_S / max(per_command, 1e-4))))
            for resp in got:
                err = resp.get("error")
                if err and not any(s in err for s in ignore):
                    raise StackError(f"dynsec {resp.get('command')}: {err}")
            out.extend(got)
        return out
