"""Fixtures of the alerting tests: a tenant with a meter and a care hub, transition records."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest

from maillage.processors.detection.model import Anomaly, Kind, Severity, Transition
from maillage.registry.tenants import add_tenant

# An hour ago, whole minutes (epoch µs): recent enough to be notified (alert_notify_max_age_s).
T0 = (int(time.time()) // 60 - 60) * 60_000_000
MIN = 60_000_000


@pytest.fixture
def al_tenant(db_url: str) -> str:
    """A fresh tenant with a meter `m1` and a care hub `h1`."""
    name = f"t{uuid.uuid4().hex[:10]}"
    with psycopg.connect(db_url, autocommit=True) as conn:
        add_tenant(conn, tenant_id=name)
        for did, dtype in (("m1", "meter"), ("m2", "meter"), ("h1", "care_hub")):
            conn.execute("INSERT INTO devices (tenant_id, device_id, type, mqtt_username) "
                         "VALUES (%s, %s, %s, %s)", (name, did, dtype, f"{name}-{did}"))
    return name


def transition(tenant: str, device: str, kind: str, start_us: int, change: str = "open",
               severity: str = "warning", end_us: int | None = None,
               group: str | None = None) -> Transition:
    """A transition as the detection stage produces it."""
    if change == "close" and end_us is None:
        end_us = start_us + MIN
    a = Anomaly(tenant, device, Kind(kind), Severity(severity), 1.0, start_us,
                end_us if change == "close" else None, {"value": 1}, group)
    return Transition(a, change)  # type: ignore[arg-type]  # change is one of the Literal's


def records(transitions: Iterable[Transition]) -> list[Any]:
    """Consumer-record stand-ins (the sink reads topic, partition, offset, value)."""
    return [SimpleNamespace(topic="maillage.anomalies", partition=0, offset=i, value=t.to_kafka())
            for i, t in enumerate(transitions)]


def alerts(db_url: str, tenant: str) -> list[dict[str, Any]]:
    """The tenant's alerts, oldest first."""
    with psycopg.connect(db_url) as conn:
        cur = conn.cursor(row_factory=psycopg.rows.dict_row)
        return cur.execute("SELECT * FROM alerts WHERE tenant_id = %s ORDER BY id",
                           (tenant,)).fetchall()


def events(db_url: str, tenant: str) -> list[tuple[int, str]]:
    """(alert id, action) of the tenant's alert events, in order."""
    with psycopg.connect(db_url) as conn:
        return [(r[0], r[1]) for r in conn.execute(
            "SELECT alert_id, action FROM alert_events WHERE tenant_id = %s ORDER BY id",
            (tenant,)).fetchall()]
