"""Lighting savings by cause on a simulated territory against the simulator's ground truth.

The lamps' publications go through the gateway's parser, become the records the gateway produces
to `maillage.readings`, and are stored by the storage processor's sink (no broker in between:
the records are handed to the sink as its consumer would) in the session's PostgreSQL; `compute`
reads only the stored readings and the registry; the simulator's own accounting
(`LampModel.truth`) is read by the test alone.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest
from aiokafka.structs import ConsumerRecord

from maillage import topics
from maillage.db import lighting_savings as db
from maillage.db.savings import set_tariff
from maillage.ingest.formats import MessageContext, parse_message
from maillage.processors.savings import lighting
from maillage.processors.savings.tariffs import FRENCH_MIX_KG_CO2_PER_KWH
from maillage.processors.storage import StorageSink
from maillage.registry.devices import add_devices
from maillage.registry.tenants import add_tenant
from maillage.simulators.engine import Engine
from maillage.simulators.scenario import Scenario
from maillage.simulators.streetlights import LampModel

TZ = ZoneInfo("Europe/Paris")
NIGHT = date(2026, 1, 14)
CAUSES = ("led_retrofit", "dimming", "switch_off", "presence")


def scenario(tenant: str) -> Scenario:
    """Two communes: mid-night switch-off in the town, dimming in the village; some streets
    driven by presence sensors, half the streets retrofitted to LED."""
    return Scenario.model_validate({
        "tenant": tenant, "timezone": "Europe/Paris", "seed": 6,
        "communes": [
            {"name": "Bourg-Nuit", "lat": 48.11, "lon": -1.68, "weight": 2,
             "lighting": {"mode": "cutoff", "night_from": "23:00", "night_to": "05:30"}},
            {"name": "Val-Doux", "lat": 48.35, "lon": -1.2, "weight": 1,
             "lighting": {"mode": "dimming", "night_from": "22:00", "night_to": "06:00",
                          "dim_level_pct": 40}},
        ],
        "fleet": {"streetlights": 60, "lamps_per_cabinet": 6, "presence_share": 0.35,
                  "led_share": 0.5, "luminosity_per_commune": 0},
        "anomalies": {"enabled": False},
    })


@pytest.fixture(scope="module")
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url, autocommit=True) as c:
        yield c


@pytest.fixture(scope="module")
def world(conn: psycopg.Connection, db_url: str) -> tuple[str, Engine]:
    """A simulated night of lighting stored through the storage path; (tenant, engine)."""
    tenant = f"light{uuid.uuid4().hex[:8]}"
    sc = scenario(tenant)
    add_tenant(conn, tenant_id=tenant, timezone="Europe/Paris")
    start = datetime(2026, 1, 14, 11, 50, tzinfo=TZ)
    engine = Engine(sc, start=start)
    add_devices(conn, tenant=tenant, specs=engine.territory.specs(), dynsec=None)
    sink = StorageSink(db_url)
    lamps = {lamp.device_id for lamp in engine.territory.lamps}
    offset = 0
    for pub in engine.publications(until=datetime(2026, 1, 15, 12, 10, tzinfo=TZ)):
        if pub.device_id not in lamps:
            continue
        ctx = MessageContext(tenant, pub.device_id, pub.channel, pub.at, "streetlight")
        for env in parse_message(pub.payload, ctx):
            value = env.to_kafka()
            sink.add(ConsumerRecord(topics.READINGS, 0, offset, env.ts_us // 1000, 0, env.key,
                                    value, None, len(env.key), len(value), ()))
            offset += 1
        if sink.full():
            sink.flush()
    sink.flush()
    sink.close()
    assert sink.stored > 0
    return tenant, engine


def truth_by_commune(engine: Engine) -> dict[str, dict[str, float]]:
    names = [c.name for c in engine.territory.communes]
    commune_of = {lamp.device_id: names[lamp.commune] for lamp in engine.territory.lamps}
    out: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for dev in engine.devices:
        if isinstance(dev.model, LampModel):
            rec = dev.model.truth()[NIGHT]
            for key, wh in rec.items():
                out[commune_of[dev.model.device_id]][key] += wh
    return out


def test_savings_by_cause_match_the_simulator(conn: psycopg.Connection,
                                              world: tuple[str, Engine]) -> None:
    """Per commune and cause, the stored night equals the simulated truth within 1 %."""
    tenant, engine = world
    stored = lighting.compute(conn, tenant_id=tenant)
    assert stored == len(engine.territory.lamps)  # one night per lamp, nothing half-covered
    rows = {r["name"]: r for r in db.daily(conn, tenant_id=tenant, area="commune", name=None,
                                           start=NIGHT, end=NIGHT + timedelta(days=1))}
    truth = truth_by_commune(engine)
    assert set(rows) == set(truth) == {"Bourg-Nuit", "Val-Doux"}
    seen: set[str] = set()
    for commune, t in truth.items():
        row = rows[commune]
        assert row["day"] == NIGHT and row["lamps"] > 0
        assert row["reference_wh"] == pytest.approx(t["reference_wh"], rel=0.01)
        assert row["measured_wh"] == pytest.approx(t["measured_wh"], rel=0.01)
        for cause in CAUSES:
            if t[cause] > 0:
                seen.add(cause)
                assert row[cause] == pytest.approx(t[cause], rel=0.01), (commune, cause)
            else:
                assert abs(row[cause]) <= 0.01 * t["reference_wh"], (commune, cause)
        # What no cause explains is the clocks' offsets and the sampling: small.
        assert abs(row["other_wh"]) < 0.01 * t["reference_wh"]
    assert seen == set(CAUSES)  # the territory exercises every cause
    # Switch-off only where the commune switches off, dimming only where it dims.
    assert rows["Val-Doux"]["switch_off"] == pytest.approx(0, abs=1.0)
    assert rows["Bourg-Nuit"]["dimming"] == pytest.approx(0, abs=1.0)


def test_areas_add_up_priced_when_computed(conn: psycopg.Connection,
                                           world: tuple[str, Engine]) -> None:
    """Lamps, cabinets, streets, districts and communes hold the same total; a recomputation
    replaces the rows and prices them with the tariff then in force (the default CO2 factor)."""
    tenant, engine = world
    set_tariff(conn=conn, tenant=tenant, valid_from=date(2025, 1, 1), base_eur_kwh=0.2,
               source="test")
    again = lighting.compute(conn, tenant_id=tenant, since=NIGHT, until=NIGHT)
    assert again == len(engine.territory.lamps)
    after = NIGHT + timedelta(days=1)
    totals = {}
    for area in ("lamp", "cabinet", "site", "district", "commune"):
        rows = db.daily(conn, tenant_id=tenant, area=area, name=None, start=NIGHT, end=after)
        totals[area] = sum(r["saved_wh"] for r in rows)
        assert sum(r["lamps"] for r in rows) == len(engine.territory.lamps)
    assert len(set(round(v, 3) for v in totals.values())) == 1
    one = db.daily(conn, tenant_id=tenant, area="commune", name="Val-Doux", start=NIGHT,
                   end=NIGHT + timedelta(days=3))
    assert [r["name"] for r in one] == ["Val-Doux"]
    assert db.daily(conn, tenant_id=tenant, area="commune", name=None, start=after,
                    end=after + timedelta(days=1)) == []
    causes = {r["cause"]: r for r in db.by_cause(conn=conn, tenant=tenant, level="commune",
                                                 name="Val-Doux", start=NIGHT, end=after)}
    assert set(causes) == set(CAUSES)
    for cause, r in causes.items():
        assert r["kwh"] == pytest.approx(one[0][cause] / 1000)
        assert r["eur"] == pytest.approx(0.2 * r["kwh"])
        assert r["kg_co2"] == pytest.approx(FRENCH_MIX_KG_CO2_PER_KWH * r["kwh"])
    with pytest.raises(ValueError, match="unknown area"):
        db.daily(conn, tenant_id=tenant, area="planet", name=None, start=NIGHT, end=after)
