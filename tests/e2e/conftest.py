"""A real `maillage up` (subprocess, own data dir, every service embedded) for end-to-end tests."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest

from maillage.stack.process import free_port


def maillage_cmd(data_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the `maillage` CLI against `data_dir`."""
    env = dict(os.environ, MAILLAGE_DATA_DIR=str(data_dir))
    env.pop("MAILLAGE_DATABASE_URL", None)
    proc = subprocess.run([sys.executable, "-m", "maillage", *args], capture_output=True, text=True,
                          env=env, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"maillage {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc


START_S = 300
"""How long `maillage up` may take to be up (under a minute on a quiet 2-core machine; far more
when the machine is shared: Kafka's JVM, then a Python process per processor)."""


def start_stack(data_dir: Path, *extra: str,
                env_extra: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """Start `maillage up` and wait until `maillage status --json` says every part is up."""
    env = dict(os.environ, MAILLAGE_DATA_DIR=str(data_dir), MAILLAGE_API_PORT=str(free_port()),
               **(env_extra or {}))
    env.pop("MAILLAGE_DATABASE_URL", None)
    log = open(data_dir.parent / f"{data_dir.name}-up.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "maillage", "up", *extra], stdout=log,
                            stderr=subprocess.STDOUT, env=env)
    deadline = time.time() + START_S
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"maillage up exited: {(data_dir.parent / f'{data_dir.name}-up.log').read_text()}")
        st = maillage_cmd(data_dir, "status", "--json", check=False)
        if st.returncode == 0:
            doc = json.loads(st.stdout)
            if doc["api_url"] and doc["parts"].get("api") and all(doc["parts"].values()):
                try:
                    if httpx.get(doc["api_url"] + "/health", timeout=2).status_code == 200:
                        return proc, doc
                except httpx.HTTPError:
                    pass
        time.sleep(0.5)
    # SIGTERM: `maillage up` stops its children (a SIGKILL would leave them running).
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
    raise AssertionError(f"maillage up did not come up in {START_S} s: "
                         f"{(data_dir.parent / f'{data_dir.name}-up.log').read_text()[-3000:]}")


@dataclass
class Device:
    """A registered device and its credentials."""

    tenant: str
    device_id: str
    username: str
    password: str
    prefix: str


@dataclass
class Stack:
    """The running stack, with helpers to act as an operator, a device and an API client."""

    data_dir: Path
    status: dict[str, Any]

    @property
    def api(self) -> str:
        return str(self.status["api_url"])

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return maillage_cmd(self.data_dir, *args, check=check)

    def tenant(self) -> str:
        name = f"t{uuid.uuid4().hex[:10]}"
        self.cli("tenants", "add", name)
        return name

    def token(self, tenant: str, role: str = "admin") -> str:
        out = self.cli("tokens", "create", "--tenant", tenant, "--role", role, "--json")
        return str(json.loads(out.stdout)["token"])

    def device(self, tenant: str, type_: str = "meter", device_id: str | None = None) -> Device:
        did = device_id or f"d{uuid.uuid4().hex[:8]}"
        out = json.loads(self.cli("devices", "add", "--tenant", tenant, "--id", did, "--type", type_,
                                  "--json").stdout)
        return Device(tenant, did, out["mqtt_username"], out["mqtt_password"], out["topic_prefix"])

    def get(self, path: str, token: str, **params: Any) -> httpx.Response:
        return httpx.get(self.api + path, params=params, headers={"Authorization": f"Bearer {token}"},
                         timeout=30)

    def db(self) -> str:
        return str(self.status["database_url"])


class Publisher:
    """An MQTT client connected with a device's own credentials (MQTT v5 to see reason codes)."""

    def __init__(self, stack: Stack, device: Device) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"test-{device.device_id}-{uuid.uuid4().hex[:4]}",
                                  protocol=mqtt.MQTTv5)
        self.client.username_pw_set(device.username, device.password)
        self.device = device
        self.acks: dict[int, Any] = {}
        self._cond = threading.Condition()
        self._connected = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: self._connected.set()
        self.client.on_publish = self._on_publish
        self.client.connect(stack.status["mqtt_host"], stack.status["mqtt_port"])
        self.client.loop_start()
        assert self._connected.wait(10), "device could not connect"

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        with self._cond:
            self.acks[mid] = rc
            self._cond.notify_all()

    def publish(self, channel: str, payload: bytes | str, topic: str | None = None) -> Any:
        """Publish QoS 1 and wait for the broker's PUBACK; returns its reason code."""
        info = self.client.publish(topic or self.device.prefix + channel, payload, qos=1)
        with self._cond:
            assert self._cond.wait_for(lambda: info.mid in self.acks, 10), "no PUBACK"
            return self.acks[info.mid]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait_until(predicate: Callable[[], bool], timeout: float = 30, interval: float = 0.2) -> bool:
    """Poll until true or timeout; returns the last answer."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


@contextmanager
def running_stack(prefix: str, *extra: str,
                  env_extra: dict[str, str] | None = None) -> Iterator[tuple[Path, dict[str, Any]]]:
    """`maillage up` in a fresh data dir: yields (data dir, status); SIGTERM and clean-up after."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    root.chmod(0o755)
    data_dir = root / "data"
    try:
        proc, status = start_stack(data_dir, *extra, env_extra=env_extra)
    except BaseException:
        if not os.environ.get("MAILLAGE_TEST_KEEP"):
            shutil.rmtree(root, ignore_errors=True)
        raise
    try:
        yield data_dir, status
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        if not os.environ.get("MAILLAGE_TEST_KEEP"):
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="package")  # stopped once the tests of the folder ran
def stack() -> Iterator[Stack]:
    """One `maillage up` for the e2e tests of the session."""
    with running_stack("maillage-e2e-") as (data_dir, status):
        yield Stack(data_dir, status)
