"""Hole 2: unknown metric names are bounded per tenant; beyond, refused with a reason.

On dc046fb every new name took a `metrics` row (a smallint key) whatever its tenant: the 4
names past the bound below were stored like the others, and no reading was refused (the
assertions on `too_many_metric_names` failed). Now the tenant's readings beyond the bound go to
`rejected`, while another tenant's new names and everyone's known metrics are still stored.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import psycopg
import pytest
from aiokafka.structs import ConsumerRecord

from maillage import topics
from maillage.db import metric_names
from maillage.envelope import to_us
from maillage.processors.storage import StorageSink
from tests.reliability.conftest import register

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def _reading(offset: int, tenant: str, device: str, values: dict[str, float]) -> ConsumerRecord[bytes, bytes]:
    ts = to_us(T0 + timedelta(seconds=offset))
    doc = {"tenant": tenant, "device_id": device, "kind": "reading", "ts": ts, "rx": ts,
           "fmt": "json", "values": values,
           "unknown": [n for n in values if n not in ("voltage_v", "active_power_w")]}
    value = orjson.dumps({k: v for k, v in doc.items() if v != []})
    return ConsumerRecord(topics.READINGS, 0, offset, 0, 0, b"k", value, None, 1, len(value), ())


def test_unknown_names_beyond_the_tenant_bound_are_refused(db_url: str, tenant: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metric_names, "PER_TENANT", 6)
    register(db_url, tenant, [("m1", "meter", {})])
    other = f"{tenant}o"
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("INSERT INTO tenants (id, name) VALUES (%s, %s)", (other, other))
    register(db_url, other, [("m1", "meter", {})])
    sink = StorageSink(db_url)
    try:
        for i in range(10):  # one new name a message, with a known metric beside it
            sink.add(_reading(i, tenant, "m1", {f"x_{tenant}_{i}": float(i), "voltage_v": 230.0}))
        sink.add(_reading(20, tenant, "m1", {"voltage_v": 231.0}))
        sink.add(_reading(21, other, "m1", {f"x_{other}_0": 1.0}))
        sink.flush()
        sink.add(_reading(30, tenant, "m1", {f"x_{tenant}_2": 2.5}))  # a name it already has
        sink.flush()
    finally:
        sink.close()
    with psycopg.connect(db_url) as conn:
        refused = conn.execute("SELECT device_id, reason FROM rejected WHERE tenant_id = %s",
                               (tenant,)).fetchall()
        stored = conn.execute(
            "SELECT count(*) FROM readings r JOIN devices d ON d.pk = r.device_pk "
            "WHERE d.tenant_id = %s", (tenant,)).fetchone()
        others = conn.execute(
            "SELECT count(*) FROM readings r JOIN devices d ON d.pk = r.device_pk "
            "WHERE d.tenant_id = %s", (other,)).fetchone()
        names = conn.execute("SELECT count(*) FROM metrics WHERE name LIKE %s",
                             (f"x\\_{tenant}\\_%",)).fetchone()
    assert refused == [("m1", "too_many_metric_names")] * 4
    assert stored == (6 * 2 + 1 + 1,)  # 6 admitted messages (2 values each), the known one, the repeat
    assert others == (1,)
    assert names == (6,)
