"""Open data exports (issue 17, acceptance 4): no care data, no household-level data, no
residential group under the threshold; GeoJSON valid under RFC 7946; licence everywhere; who
may read them."""

from __future__ import annotations

import asyncio
import csv
import io
import json

import geojson
import psycopg
import pytest

from maillage.db import opendata as db_opendata
from maillage.opendata.exports import DEFAULT_MIN_HOUSEHOLDS, LICENCE
from tests.opendata import rfc7946
from tests.opendata.conftest import CARE_WH, LAMP_WH, PUBLIC_WH, Territory

EXPORTS = ("lighting-consumption", "public-buildings-consumption", "residential-consumption",
           "lighting-savings", "streetlights")


def _get(t: Territory, path: str, who: str = "opendata", **params: str) -> object:
    r = t.client.get(f"/v1/opendata/{path}", params=params, headers=t.headers(who))
    assert r.status_code == 200, r.text
    return r.json()


def _rows(t: Territory, path: str) -> dict[tuple[str, str], dict[str, object]]:
    doc = _get(t, path)
    assert isinstance(doc, dict)
    return {(i["commune"], i["month"]): i for i in doc["items"]}


def test_lighting_and_public_buildings_per_commune_and_month(territory: Territory) -> None:
    """Streetlights only (not the cabinet, no care device), public buildings without dwellings."""
    lighting = _rows(territory, "lighting-consumption")
    assert set(lighting) == {("Bourg", "2026-10"), ("Hameau", "2026-10")}
    bourg, hameau = lighting[("Bourg", "2026-10")], lighting[("Hameau", "2026-10")]
    assert bourg["energy_kwh"] == pytest.approx((500 + 700 + 300) / 1000)
    assert (bourg["lamps"], hameau["lamps"]) == (3, 2)
    assert hameau["energy_kwh"] == pytest.approx((400 + 450) / 1000)
    assert bourg["complete"] is True
    public = _rows(territory, "public-buildings-consumption")
    assert list(public) == [("Bourg", "2026-10")]
    assert public[("Bourg", "2026-10")]["energy_kwh"] == pytest.approx(PUBLIC_WH / 1000)
    assert public[("Bourg", "2026-10")]["meters"] == 1  # the caretaker's flat is a household


def test_lighting_savings_per_commune_and_month(territory: Territory) -> None:
    """Lamp-nights summed per commune and month of the night: kWh, causes, €, kg CO2."""
    rows = _rows(territory, "lighting-savings")
    assert set(rows) == {("Bourg", "2026-09"), ("Bourg", "2026-10")}
    october = rows[("Bourg", "2026-10")]
    assert (october["reference_kwh"], october["measured_kwh"], october["saved_kwh"]) == \
        pytest.approx((3.8, 1.4, 2.4))
    assert (october["led_retrofit_kwh"], october["dimming_kwh"]) == pytest.approx((1.8, 0.6))
    assert october["saved_eur"] == pytest.approx(0.48) and october["lamps"] == 2
    assert october["saved_kg_co2"] == pytest.approx(0.12)
    assert rows[("Bourg", "2026-09")]["saved_eur"] is None  # a night without a tariff


def test_residential_groups_under_the_threshold_are_suppressed(territory: Territory) -> None:
    """Bourg (13 households) is published with its exact sum; Hameau (4) is not, anywhere."""
    doc = _get(territory, "residential-consumption")
    assert isinstance(doc, dict)
    assert doc["min_households"] == DEFAULT_MIN_HOUSEHOLDS == 10
    assert all(i["households"] >= DEFAULT_MIN_HOUSEHOLDS for i in doc["items"])
    rows = {(i["commune"], i["month"]): i for i in doc["items"]}
    assert list(rows) == [("Bourg", "2026-10")]
    bourg_homes = {k: v for k, v in territory.household_wh.items()
                   if k.startswith("home-b") or k == "loge-gardien"}
    assert rows[("Bourg", "2026-10")]["households"] == len(bourg_homes) == 13
    assert rows[("Bourg", "2026-10")]["energy_kwh"] == pytest.approx(
        sum(bourg_homes.values()) / 1000)
    csv_text = territory.client.get("/v1/opendata/residential-consumption",
                                    params={"format": "csv"},
                                    headers=territory.headers("opendata")).text
    assert "Hameau" not in csv_text and "Bourg" in csv_text


def test_threshold_boundary(territory: Territory) -> None:
    """Hameau's 4 households: published at a threshold of 4, not at 5."""

    async def communes(threshold: int) -> set[str]:
        async with await psycopg.AsyncConnection.connect(territory.db_url,
                                                         autocommit=True) as conn:
            rows = await db_opendata.monthly_consumption(
                conn=conn, dataset="residential", tenant=territory.tenant, commune=None,
                start=None, end=None, min_households=threshold)
        return {r["commune"] for r in rows}

    assert asyncio.run(communes(4)) == {"Bourg", "Hameau"}
    assert asyncio.run(communes(5)) == {"Bourg"}


@pytest.mark.parametrize("path", EXPORTS)
@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_no_care_nor_household_data_in_any_export(territory: Territory, path: str,
                                                  fmt: str) -> None:
    """No care device, resident, dwelling or household meter id, and no care energy, ever."""
    r = territory.client.get(f"/v1/opendata/{path}", params={"format": fmt},
                             headers=territory.headers("energy_manager"))
    assert r.status_code == 200, r.text
    text = r.text
    for secret in [*territory.care_ids, *territory.household_ids, "R-7", "apt-7", "-apt",
                   territory.other, "lamp-x9"]:
        assert secret not in text, (path, fmt, secret)
    assert "care" not in text.lower()
    assert str(CARE_WH / 1000) not in text


def test_csv_and_json_carry_the_licence(territory: Territory) -> None:
    """JSON: a licence member; CSV: a licence column on every row; a Link rel=license header."""
    for path in EXPORTS:
        r = territory.client.get(f"/v1/opendata/{path}", headers=territory.headers("opendata"))
        assert r.json()["licence"] == LICENCE and "etalab" in LICENCE["url"]
        assert 'rel="license"' in r.headers["link"]
        c = territory.client.get(f"/v1/opendata/{path}", params={"format": "csv"},
                                 headers=territory.headers("opendata"))
        assert c.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(c.text)))
        assert len(rows) == len(r.json()["items"])
        assert all(LICENCE["url"] in row["licence"] for row in rows), path


def test_streetlight_inventory_is_valid_rfc7946_geojson(territory: Territory) -> None:
    """A FeatureCollection of the tenant's 5 lamps, [lon, lat] as registered, null geometry for
    the lamp without a location; valid for the geojson package and the RFC rules it misses."""
    r = territory.client.get("/v1/opendata/streetlights", params={"format": "geojson"},
                             headers=territory.headers("opendata"))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/geo+json")
    obj = geojson.loads(r.text)
    assert obj.is_valid, obj.errors()
    doc = json.loads(r.text)
    assert rfc7946.problems(doc) == []
    assert doc["licence"] == LICENCE
    features = {f["id"]: f for f in doc["features"]}
    assert set(features) == set(LAMP_WH)
    assert features["lamp-b1"]["geometry"] == {"type": "Point", "coordinates": [-1.6801, 48.1101]}
    assert features["lamp-b3"]["geometry"] is None
    assert features["lamp-b1"]["properties"]["cabinet"] == "cab-b"
    assert features["lamp-b1"]["properties"]["installed_on"] == "2019-03-01"


def test_the_rfc7946_checker_can_fail() -> None:
    """What the checker is for: a crs member, out-of-range positions, a Feature with features."""
    bad = {"type": "FeatureCollection", "crs": {"type": "name"}, "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [200.0, 48.0]},
         "properties": {}, "features": []},
        {"type": "Feature", "properties": {}}]}
    found = rfc7946.problems(bad)
    assert len(found) == 4, found


def test_geojson_only_for_the_inventory(territory: Territory) -> None:
    r = territory.client.get("/v1/opendata/lighting-consumption", params={"format": "geojson"},
                             headers=territory.headers("opendata"))
    assert r.status_code == 422 and "geojson" in r.json()["error"]["message"]


@pytest.mark.parametrize(("params", "problem"), [({"from": "2026-13"}, "from"),
                                                 ({"from": "2026-11", "to": "2026-10"}, "to")])
def test_bad_months_are_refused(territory: Territory, params: dict[str, str],
                                problem: str) -> None:
    r = territory.client.get("/v1/opendata/lighting-consumption", params=params,
                             headers=territory.headers("opendata"))
    assert r.status_code == 422 and problem in r.json()["error"]["message"]


def test_month_filters(territory: Territory) -> None:
    assert _get(territory, "lighting-consumption", **{"from": "2026-11"})["items"] == []  # type: ignore[index]  # a dict
    assert len(_get(territory, "lighting-consumption", to="2026-10")["items"]) == 2  # type: ignore[index]  # a dict


def test_who_reads_open_data(territory: Territory) -> None:
    """opendata, energy_manager and admin tokens read; care coordinators do not (403); without a
    token only once the tenant opted in (`maillage opendata publish`), naming it."""
    t = territory
    for who in ("opendata", "energy_manager", "admin"):
        assert t.client.get("/v1/opendata/streetlights", headers=t.headers(who)).status_code == 200
    assert t.client.get("/v1/opendata/streetlights",
                        headers=t.headers("care_coordinator")).status_code == 403
    root = t.client.get("/v1/opendata/streetlights", headers=t.headers("root"))
    assert root.status_code == 422  # an all-tenants token names the tenant
    assert t.client.get("/v1/opendata/streetlights", params={"tenant": t.tenant},
                        headers=t.headers("root")).status_code == 200
    anonymous = t.client.get("/v1/opendata/streetlights", params={"tenant": t.tenant})
    assert anonymous.status_code == 401
    with psycopg.connect(t.db_url, autocommit=True) as conn:
        assert db_opendata.set_public(conn=conn, tenant=t.tenant, public=True)
        try:
            r = t.client.get("/v1/opendata/streetlights", params={"tenant": t.tenant})
            assert r.status_code == 200 and len(r.json()["items"]) == 5
            assert t.client.get("/v1/opendata/streetlights",
                                params={"tenant": t.other}).status_code == 401
            assert t.client.get("/v1/opendata/streetlights").status_code == 401
        finally:
            db_opendata.set_public(conn=conn, tenant=t.tenant, public=False)
    assert t.client.get("/v1/opendata/streetlights",
                        params={"tenant": t.tenant}).status_code == 401
