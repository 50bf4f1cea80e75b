"""Device credentials for Mosquitto as files rendered from the registry, reloaded with SIGHUP.

Mosquitto 2.0's dynamic-security plugin rewrites its whole JSON file after every command, so
registering thousands of devices through it takes hours. Devices are therefore kept in the
broker's `password_file` and `acl_file`, rendered from the `devices` table (which keeps each
password as a Mosquitto `$7$` PBKDF2-SHA512 hash) and reloaded by SIGHUP: 10,000 devices take
seconds. The service accounts (admin, gateway) stay in dynamic security, which answers first;
it defers to the files for the clients it does not know.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import secrets
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from maillage.errors import StackError
from maillage.registry.secret_files import write_secret
from maillage.topics import device_prefix

log = logging.getLogger(__name__)

PASSWORD_FILE = "devices.passwd"
ACL_FILE = "devices.acl"
_ITERATIONS = 101  # what mosquitto_passwd uses for $7$ hashes
_RENDER_LOCK = 0x6D6C6761  # advisory lock: renders are serialised, the last one sees every commit


def hash_password(password: str) -> str:
    """A Mosquitto `$7$` (PBKDF2-SHA512) hash of `password`."""
    salt = secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, _ITERATIONS, 64)
    return f"$7${_ITERATIONS}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def ensure_files(directory: Path) -> None:
    """Create empty files so that Mosquitto starts before any device is registered."""
    for name in (PASSWORD_FILE, ACL_FILE):
        path = directory / name
        if not path.exists():
            write_secret(path, "")


def render(conn: psycopg.Connection, directory: Path) -> int:
    """Write the password and ACL files of every device that has a password; returns how many."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_RENDER_LOCK,))
        rows = conn.execute(
            "SELECT mqtt_username, mqtt_password_hash, tenant_id, device_id FROM devices "
            "WHERE mqtt_password_hash IS NOT NULL ORDER BY pk").fetchall()
        passwd: list[str] = []
        acl: list[str] = []
        for username, pw_hash, tenant, device_id in rows:
            prefix = device_prefix(tenant, device_id)
            passwd.append(f"{username}:{pw_hash}\n")
            acl.append(f"user {username}\ntopic write {prefix}up/#\ntopic write {prefix}status\n"
                       f"topic read {prefix}down/#\n\n")
        _replace(directory / PASSWORD_FILE, "".join(passwd))
        _replace(directory / ACL_FILE, "".join(acl))
    return len(rows)


def _replace(path: Path, text: str) -> None:
    write_secret(path, text)  # created 0600, never world-readable in between


@dataclass
class FileAuth:
    """The device credentials of one embedded Mosquitto: its folder, PID and address."""

    directory: Path
    pid: int
    host: str
    port: int

    def sync(self, conn: psycopg.Connection, probe: tuple[str, str] | None = None,
             timeout_s: float = 20.0) -> int:
        """Render the files, reload the broker, and wait until `probe` (user, password) connects."""
        count = render(conn, self.directory)
        try:
            os.kill(self.pid, signal.SIGHUP)
        except ProcessLookupError as exc:
            raise StackError(f"the MQTT broker (pid {self.pid}) is not running") from exc
        if probe is not None:
            self._wait_accepts(*probe, timeout_s=timeout_s)
        return count

    def _wait_accepts(self, username: str, password: str, timeout_s: float) -> None:
        """Connect as the probe until the reloaded broker accepts it."""
        deadline = time.monotonic() + timeout_s
        while True:
            if _connects(self.host, self.port, username, password):
                return
            if time.monotonic() > deadline:
                raise StackError("the MQTT broker did not take the new device credentials")
            time.sleep(0.05)


def _connects(host: str, port: int, username: str, password: str) -> bool:
    """True when the broker accepts these credentials (MQTT CONNECT only)."""
    done = threading.Event()
    result: list[bool] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"maillage-probe-{secrets.token_hex(4)}",
                         protocol=mqtt.MQTTv311)
    client.username_pw_set(username, password)

    def on_connect(c: mqtt.Client, u: object, f: object, rc: ReasonCode, p: object) -> None:
        result.append(not rc.is_failure)
        done.set()

    client.on_connect = on_connect
    try:
        client.connect(host, port, keepalive=10)
    except OSError:
        return False
    client.loop_start()
    done.wait(5)
    client.disconnect()
    client.loop_stop()
    return bool(result and result[0])
