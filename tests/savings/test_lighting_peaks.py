"""Peaks over the subscribed or contracted power on curves with a known peak, through the API."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest
from fastapi.testclient import TestClient

from maillage.api.app import create_app
from maillage.db.peaks import Point, find_peaks
from maillage.db.writer import DeviceIds, LastSeen, Message, MetricIds, write_readings
from maillage.envelope import to_us
from maillage.registry.devices import add_devices
from maillage.registry.models import DeviceSpec, DeviceType
from maillage.registry.tenants import add_tenant
from maillage.registry.tokens import create_token

TZ = ZoneInfo("Europe/Paris")
DAY = datetime(2026, 2, 10, tzinfo=TZ)


def meter_w(t: datetime) -> float:
    """A town hall: 3 kW, 7 kW from 18:00 to 19:00 (local)."""
    return 7000.0 if 18 <= t.astimezone(TZ).hour < 19 else 3000.0


def cabinet_w(t: datetime) -> float:
    """A lighting circuit of 2 kW lit from 17:00 to 23:00."""
    return 2000.0 if 17 <= t.astimezone(TZ).hour < 23 else 0.0


@pytest.fixture(scope="module")
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url, autocommit=True) as c:
        yield c


@pytest.fixture(scope="module")
def client(db_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(db_url)) as c:
        yield c


@pytest.fixture(scope="module")
def tenant(conn: psycopg.Connection) -> str:
    """A meter (6 kVA subscribed), a lighting cabinet and a care hub (metered, to prove it is
    left out) in one district; energy indexes every 5 minutes over one day, stored by the
    storage writer."""
    tid = f"peak{uuid.uuid4().hex[:8]}"
    add_tenant(conn, tenant_id=tid)
    where = {"commune": "C", "district": "centre"}
    add_devices(conn, tenant=tid, dynsec=None, specs=[
        DeviceSpec(device_id="m1", type=DeviceType.METER, building="mairie", **where,
                   meta={"subscribed_power_va": 6000}),
        DeviceSpec(device_id="cab1", type=DeviceType.LIGHTING_CABINET, **where),
        DeviceSpec(device_id="hub1", type=DeviceType.CARE_HUB, **where)])
    msgs: list[Message] = []
    index = {"m1": 1e6, "cab1": 5e5, "hub1": 0.0}
    step = timedelta(minutes=5)
    t = DAY
    while t <= DAY + timedelta(days=1):
        for dev, power in (("m1", meter_w), ("cab1", cabinet_w), ("hub1", lambda _t: 50_000.0)):
            msgs.append((tid, dev, to_us(t), to_us(t), None, {"energy_import_wh": index[dev]}))
            index[dev] += power(t) * step.total_seconds() / 3600  # the power of (t, t + 5 min]
        t += step
    with conn.transaction():
        write_readings(conn, msgs, DeviceIds(), MetricIds(), LastSeen())
    return tid


def headers(conn: psycopg.Connection, tenant: str, role: str = "energy_manager") -> dict[str, str]:
    return {"Authorization": f"Bearer {create_token(conn, tenant=tenant, role=role)}"}


def test_meter_peak_over_subscribed_power(client: TestClient, conn: psycopg.Connection,
                                          tenant: str) -> None:
    """The 18:00-19:00 peak of the meter, its excess and hour; shift it to the quiet hours."""
    r = client.get("/v1/peaks", headers=headers(conn, tenant), params={
        "area": "meter", "name": "m1", "from": DAY.isoformat(),
        "to": (DAY + timedelta(days=1)).isoformat()})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["limit_va"] == 6000 and doc["limit_source"] == "subscribed"
    assert len(doc["curve"]) == 96
    assert doc["max"]["power_w"] == pytest.approx(7000)
    [peak] = doc["peaks"]
    assert datetime.fromisoformat(peak["start"]) == DAY.replace(hour=18)
    assert datetime.fromisoformat(peak["end"]) == DAY.replace(hour=19)
    assert peak["duration_min"] == 60
    assert peak["excess_w"] == pytest.approx(1000) and peak["excess_wh"] == pytest.approx(1000)
    assert doc["minutes_over_by_hour"] == {"18": 60}
    [rec] = doc["recommendations"]
    assert rec["action"] == "shift" and rec["energy_wh"] == pytest.approx(1000)
    assert datetime.fromisoformat(rec["to"]).astimezone(TZ).date() == DAY.date()


def test_district_peak_dimming_recommended(client: TestClient, conn: psycopg.Connection,
                                           tenant: str) -> None:
    """Meter + cabinet (not the care hub) over a contracted 8.1 kVA from 18:00 to 19:00: dimming
    the 2 kW circuit to 50 % sheds 920 W, more than the 900 W excess."""
    r = client.get("/v1/peaks", headers=headers(conn, tenant), params={
        "area": "district", "name": "centre", "from": DAY.isoformat(),
        "to": (DAY + timedelta(days=1)).isoformat(), "contracted_va": 8100, "curve": "false"})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["devices"] == 2 and doc["lighting_cabinets"] == ["cab1"] and "curve" not in doc
    assert doc["max"]["power_w"] == pytest.approx(9000)  # 7 + 2 kW: no 50 kW of the hub
    [peak] = doc["peaks"]
    assert peak["lighting_w"] == pytest.approx(2000) and peak["excess_w"] == pytest.approx(900)
    [rec] = doc["recommendations"]
    assert rec["action"] == "dim" and rec["cabinets"] == ["cab1"]
    assert rec["shed_w"] == pytest.approx(920)


def test_peaks_refusals(client: TestClient, conn: psycopg.Connection, tenant: str) -> None:
    h = headers(conn, tenant)
    base = {"area": "meter", "name": "m1"}
    assert client.get("/v1/peaks", headers=h, params={**base, "name": "nope"}).status_code == 404
    assert client.get("/v1/peaks", headers=h, params={**base, "area": "planet"}).status_code == 422
    bad = {**base, "from": "2026-02-11T00:00:00Z", "to": "2026-02-10T00:00:00Z"}
    assert client.get("/v1/peaks", headers=h, params=bad).status_code == 422
    naive = {**base, "from": "2026-02-10T00:00:00"}
    assert client.get("/v1/peaks", headers=h, params=naive).status_code == 422
    r = client.get("/v1/peaks", headers=headers(conn, tenant, "care_coordinator"), params=base)
    assert r.status_code == 403


def test_find_peaks_runs() -> None:
    """Consecutive buckets over the limit make one peak; a gap or a dip splits them."""
    t0 = datetime(2026, 2, 10, tzinfo=UTC)
    q = timedelta(minutes=15)
    curve = [Point(t0 + k * q, w, 0.0) for k, w in enumerate([1, 5, 6, 1, 5])]
    curve.append(Point(t0 + 6 * q, 5, 0.0))  # after a missing bucket
    found = find_peaks(curve, 4)
    assert [(p["start"], p["end"], p["max_w"]) for p in found] == [
        (t0 + q, t0 + 3 * q, 6), (t0 + 4 * q, t0 + 5 * q, 5), (t0 + 6 * q, t0 + 7 * q, 5)]
    assert found[0]["excess_wh"] == pytest.approx((1 + 2) / 4)
    assert find_peaks(curve, 10) == []
