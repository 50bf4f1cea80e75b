"""The retrofit "what if" of the remaining sodium lamps, through the API on the real database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date, timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient

from maillage.api.app import create_app
from maillage.db import lighting_savings
from maillage.db import retrofit as db
from maillage.db.savings import set_factor, set_tariff
from maillage.registry.devices import add_devices
from maillage.registry.models import DeviceSpec, DeviceType
from maillage.registry.tenants import add_tenant
from maillage.registry.tokens import create_token


@pytest.fixture(scope="module")
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url, autocommit=True) as c:
        yield c


@pytest.fixture(scope="module")
def client(db_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(db_url)) as c:
        yield c


def lamp(device_id: str, commune: str, tech: str, watts: float) -> DeviceSpec:
    return DeviceSpec(device_id=device_id, type=DeviceType.STREETLIGHT, lat=48.1, lon=-1.7,
                      commune=commune, district="centre", site="rue-1",
                      meta={"lamp_tech": tech, "nominal_power_w": str(watts), "cabinet": "cab-1"})


@pytest.fixture(scope="module")
def tenant(conn: psycopg.Connection) -> str:
    """Commune A: sodium lamps of 150, 100 and 70 W (the 70 W one with 40 measured nights of
    10 full-power hours), an LED; commune B: one sodium lamp."""
    tid = f"retro{uuid.uuid4().hex[:8]}"
    add_tenant(conn, tenant_id=tid)
    add_devices(conn, tenant=tid, dynsec=None, specs=[
        lamp("hps-150", "A", "HPS", 150), lamp("hps-100", "A", "HPS", 100),
        lamp("hps-70", "A", "SHP", 70), lamp("led-40", "A", "LED", 40), lamp("hps-b", "B", "HPS", 100)])
    today = date.today()
    rows = [{"tenant_id": tid, "device_id": "hps-70", "night": today - timedelta(days=k),
             "cabinet": "cab-1", "site": "rue-1", "district": "centre", "commune": "A",
             "tech": "SHP", "replaced_tech": None, "dusk": None, "dawn": None,
             "reference_wh": 784.0, "measured_wh": 784.0, "led_retrofit_wh": 0.0,
             "dimming_wh": 0.0, "switch_off_wh": 0.0, "presence_wh": 0.0, "other_wh": 0.0,
             "readings": 100, "eur_per_kwh": 0.15, "kg_co2_per_kwh": 0.06}
            for k in range(1, 41)]
    with conn.transaction():
        lighting_savings.store(conn, rows=rows)
    return tid


def test_retrofit_what_if(client: TestClient, conn: psycopg.Connection, tenant: str) -> None:
    """kWh, €, kg CO2 a year and payback per lamp and in total; best payback first."""
    token = create_token(conn, tenant=tenant, role="energy_manager")
    r = client.get("/v1/savings/retrofit", headers={"Authorization": f"Bearer {token}"},
                   params={"commune": "A", "lamp_cost_eur": 400, "led_power_w": 40,
                           "eur_per_kwh": 0.2, "kg_co2_per_kwh": 0.05})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["lamps"] == 3 and doc["price_source"] == "eur: parameter; co2: parameter"
    items = {i["device_id"]: i for i in doc["items"]}
    assert [i["device_id"] for i in doc["items"]] == ["hps-150", "hps-100", "hps-70"]
    # 150 W sodium: 168 W with its ballast, 4,100 h a year (no measured night) -> 40 W LED.
    assert items["hps-150"]["kwh_saved_per_year"] == pytest.approx((168 - 40) * 4.1)
    assert items["hps-150"]["eur_saved_per_year"] == pytest.approx((168 - 40) * 4.1 * 0.2)
    assert items["hps-150"]["payback_years"] == pytest.approx(400 / ((168 - 40) * 4.1 * 0.2))
    assert items["hps-100"]["kwh_saved_per_year"] == pytest.approx((112 - 40) * 4.1)
    # 70 W (78.4 W): 784 Wh a night = 10 h at full power, 3,650 h a year.
    assert items["hps-70"]["hours_source"] == "measured"
    assert items["hps-70"]["hours_per_year"] == pytest.approx(3650)
    assert items["hps-70"]["kwh_saved_per_year"] == pytest.approx((78.4 - 40) * 3.65)
    kwh = (168 - 40) * 4.1 + (112 - 40) * 4.1 + (78.4 - 40) * 3.65
    assert doc["kwh_saved_per_year"] == pytest.approx(kwh)
    assert doc["eur_saved_per_year"] == pytest.approx(kwh * 0.2)
    assert doc["kg_co2_saved_per_year"] == pytest.approx(kwh * 0.05)
    assert doc["investment_eur"] == 1200
    assert doc["payback_years"] == pytest.approx(1200 / (kwh * 0.2))


def test_retrofit_prices_and_refusals(client: TestClient, conn: psycopg.Connection,
                                      tenant: str) -> None:
    """Without prices given, those the nights were stored with; the whole tenant without a
    commune; bad input 422; another tenant's lamps never counted."""
    token = create_token(conn, tenant=tenant, role="admin")
    h = {"Authorization": f"Bearer {token}"}
    doc = client.get("/v1/savings/retrofit", headers=h,
                     params={"commune": "A", "lamp_cost_eur": 400}).json()
    assert doc["eur_per_kwh"] == pytest.approx(0.15) and doc["kg_co2_per_kwh"] == pytest.approx(0.06)
    assert doc["price_source"] == "eur: stored nights; co2: stored nights"
    # Default LED: 40 % of the sodium lamp's nominal power.
    assert {i["device_id"]: i["led_power_w"] for i in doc["items"]}["hps-150"] == 60
    whole = client.get("/v1/savings/retrofit", headers=h, params={"lamp_cost_eur": 400}).json()
    assert whole["lamps"] == 4
    b = client.get("/v1/savings/retrofit", headers=h, params={"commune": "B", "lamp_cost_eur": 1}).json()
    assert b["price_source"] == "eur: default; co2: default" and b["eur_per_kwh"] == db.DEFAULT_EUR_PER_KWH
    set_tariff(conn=conn, tenant=tenant, valid_from=date(2020, 1, 1), base_eur_kwh=0.18)
    set_factor(conn=conn, tenant=tenant, valid_from=date(2020, 1, 1), kg_co2_per_kwh=0.07,
               source="test")
    set_tariff(conn=conn, tenant=tenant, valid_from=date.today() + timedelta(days=30),
               base_eur_kwh=0.5)  # not in force yet
    b = client.get("/v1/savings/retrofit", headers=h, params={"commune": "B", "lamp_cost_eur": 1}).json()
    assert b["price_source"] == "eur: tariff in force; co2: factor in force"
    assert (b["eur_per_kwh"], b["kg_co2_per_kwh"]) == (0.18, 0.07)
    for bad in ({"lamp_cost_eur": -1}, {}, {"lamp_cost_eur": 1, "led_power_w": 0}):
        r = client.get("/v1/savings/retrofit", headers=h, params=bad)
        assert r.status_code == 422, bad
    other = create_token(conn, tenant="*", role="admin")
    r = client.get("/v1/savings/retrofit", headers={"Authorization": f"Bearer {other}"},
                   params={"lamp_cost_eur": 1})
    assert r.status_code == 422 and "tenant" in r.text
    care = create_token(conn, tenant=tenant, role="care_coordinator")
    r = client.get("/v1/savings/retrofit", headers={"Authorization": f"Bearer {care}"},
                   params={"lamp_cost_eur": 1})
    assert r.status_code == 403
