"""Fixtures of the reliability tests: a fresh tenant, devices registered in the real database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
import pytest

from maillage.registry.devices import add_devices
from maillage.registry.models import DeviceSpec
from maillage.registry.tenants import add_tenant
from tests.e2e.conftest import Stack, running_stack


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
    Mosquitto logs refused publications and subscriptions (the attack matrix reads them)."""
    with running_stack("maillage-reliability-",
                       env_extra={"MAILLAGE_MQTT_LOG_DENIED": "1"}) as (data_dir, status):
        yield Stack(data_dir, status)
