"""The meter stream the detection crash and rebalance tests feed, and what they check after it.

Twelve meters of the `det_tenant`, 400 one-minute readings each, alternating calm and high load
(opens, updates and closes with the small test rules); the expected transitions are what the
engine gives on the same records in one uninterrupted pass."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg

from maillage.envelope import Envelope
from maillage.processors.detection.engine import Engine, load_tables
from maillage.processors.detection.model import DeviceInfo, Transition
from tests.processors.detection.conftest import MIN, T0, read_anomalies, reading

METERS = 12
READINGS_PER_METER = 400
RULES = "tests.processors.detection.rules_fixture"


def power(meter: int, i: int) -> float:
    """Alternating calm and high load, sometimes critical: opens, updates and closes."""
    phase = (i + 3 * meter) // 6
    if phase % 2 == 0:
        return 100.0 + meter
    rises = phase % 3 == 1 and (i + 3 * meter) % 6 >= 3  # warning, then critical: an update
    return 2500.0 + 10 * (i % 7) if rises else 1500.0 + 10 * (i % 5)


def rules_engine() -> Engine:
    """The engine of the small test rules, as a detection process runs it."""
    t = load_tables([RULES])
    return Engine(t.rules, t.group_rules, quality=t.quality)


def add_meters(db_url: str, tenant: str) -> None:
    """Register the meters `m0`..`m11` of `tenant`."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        for m in range(METERS):
            conn.execute("INSERT INTO devices (tenant_id, device_id, type, mqtt_username) "
                         "VALUES (%s, %s, 'meter', %s) ON CONFLICT DO NOTHING",
                         (tenant, f"m{m}", f"{tenant}-m{m}"))


def meter_readings(tenant: str, start: int, end: int) -> list[Envelope]:
    """Readings `start` to `end` (excluded) of every meter, minute after minute."""
    return [reading(tenant, f"m{m}", T0 + i * MIN, active_power_w=power(m, i))
            for i in range(start, end) for m in range(METERS)]


def expected(tenant: str) -> list[Transition]:
    """The transitions of the whole stream in one uninterrupted pass."""
    eng = rules_engine()
    out: list[Transition] = []
    for m in range(METERS):
        dev = DeviceInfo(tenant, f"m{m}", "meter")
        for i in range(READINGS_PER_METER):
            out += eng.handle(dev, reading(tenant, dev.device_id, T0 + i * MIN,
                                           active_power_w=power(m, i)))
    return out


def assert_stored(db_url: str, tenant: str, transitions: list[Transition], log: str = "") -> None:
    """The `anomalies` rows of the meters are exactly those of `transitions`, each once, in its
    final state."""
    final = {t.anomaly.id: t.anomaly for t in transitions}
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT id, severity, score, (extract(epoch FROM end_ts) * 1e6)::bigint FROM anomalies "
            "WHERE tenant_id = %s AND device_id LIKE 'm%%'", (tenant,)).fetchall()
    stored = {r[0] for r in rows}
    assert len(rows) == len(stored), "an anomaly was stored twice"
    assert stored == set(final), (f"missing {len(set(final) - stored)}, unexpected "
                                  f"{len(stored - set(final))}; log: {log[-2000:]}")
    for rid, severity, score, end_us in rows:
        a = final[rid]
        assert (severity, score, end_us) == (str(a.severity), a.score, a.end_us), rid


def assert_produced_once(bootstrap: str, tenant: str, transitions: list[Transition],
                         log: str = "") -> None:
    """`maillage.anomalies` holds every one of `transitions` of `tenant` once, and nothing else."""
    want = {t.event_id for t in transitions}
    produced: list[dict[str, Any]] = asyncio.run(read_anomalies(bootstrap, tenant))
    ids = [d["event_id"] for d in produced]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    assert not twice, f"produced twice: {twice[:5]}; log: {log[-2000:]}"
    assert set(ids) == want, (f"topic: missing {sorted(want - set(ids))[:5]}, "
                              f"unexpected {sorted(set(ids) - want)[:5]}")
