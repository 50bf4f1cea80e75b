"""Fixtures of the reliability tests: a fresh tenant, devices registered in the real database."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from maillage.registry.devices import add_devices
from maillage.registry.models import DeviceSpec
from maillage.registry.tenants import add_tenant
from maillage.stack.process import free_port
from tests.e2e.conftest import Stack, maillage_cmd


@pytest.fixture
def tenant(db_url: str) -> str:
    """A fresh tenant in the session's database."""
    name = f"t{uuid.uuid4().hex[:10]}"
    with psycopg.connect(db_url, autocommit=True) as conn:
        add_tenant(conn, tenant_id=name)
    return name


def register(db_url: str, tenant: str, devices: Sequence[tuple[str, str, dict[str, Any]]]) -> None:
    """Register (device_id, type, meta) devices without broker credentials."""
    specs = [DeviceSpec(device_id=d, type=t, meta=m) for d, t, m in devices]  # type: ignore[arg-type]
    with psycopg.connect(db_url) as conn:
        add_devices(conn, tenant=tenant, specs=specs, dynsec=None)


@pytest.fixture(scope="package")  # stopped once the tests of the folder ran
def up() -> Iterator[Stack]:
    """One real `maillage up` shared by the fault suite, the attack matrix and schemathesis; its
    Mosquitto logs refused publications and subscriptions (the attack matrix reads them). It may
    take up to `UP_TIMEOUT_S` to start (Kafka's JVM on a busy CI machine)."""
    root = Path(tempfile.mkdtemp(prefix="maillage-reliability-", dir="/tmp"))
    root.chmod(0o755)
    data_dir = root / "data"
    env = dict(os.environ, MAILLAGE_DATA_DIR=str(data_dir), MAILLAGE_API_PORT=str(free_port()),
               MAILLAGE_MQTT_LOG_DENIED="1")
    env.pop("MAILLAGE_DATABASE_URL", None)
    with open(root / "up.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "maillage", "up"], stdout=log,
                                stderr=subprocess.STDOUT, env=env)
    try:
        yield Stack(data_dir, _wait_up(proc, data_dir, root / "up.log"))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        if not os.environ.get("MAILLAGE_TEST_KEEP"):
            shutil.rmtree(root, ignore_errors=True)


UP_TIMEOUT_S = 240


def _wait_up(proc: subprocess.Popen[bytes], data_dir: Path, log: Path) -> dict[str, Any]:
    """`maillage status --json` once every part is up and the API answers /health."""
    deadline = time.monotonic() + UP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"maillage up exited: {log.read_text()[-3000:]}")
        st = maillage_cmd(data_dir, "status", "--json", check=False)
        if st.returncode == 0:
            doc: dict[str, Any] = json.loads(st.stdout)
            if doc["api_url"] and doc["parts"].get("api") and all(doc["parts"].values()):
                try:
                    if httpx.get(doc["api_url"] + "/health", timeout=2).status_code == 200:
                        return doc
                except httpx.HTTPError:
                    pass
        time.sleep(1)
    proc.kill()
    raise AssertionError(f"maillage up did not come up in {UP_TIMEOUT_S} s: {log.read_text()[-3000:]}")
