"""Metered savings through the project's own path (issue 16, acceptance 1), and what hangs on it.

opendsm's sample `il-electricity-cdd-hdd-daily` goes in as the project stores data: the meter's
energy index (one reading at each midnight, written by the storage writer into the real
PostgreSQL) and the outdoor temperature imported from a CSV by `maillage savings weather
import`. A project (baseline: the 365 days before the sample's blackout; reporting: the 365
days after it) is created over the API, `maillage savings compute` runs the savings job, and
`GET /v1/savings` must report the avoided energy opendsm's CalTRACK daily model gives on the raw
sample (computed here independently), within 1 %, with the same uncertainty.
"""

from __future__ import annotations

import csv
import math
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import psycopg
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from maillage.api.app import create_app
from maillage.cli.main import app as cli
from maillage.db import savings as db
from maillage.db.retention import set_retention
from maillage.db.writer import DeviceIds, LastSeen, MetricIds, write_readings
from maillage.registry.devices import register
from maillage.registry.models import DeviceSpec
from maillage.registry.tenants import add_tenant
from maillage.registry.tokens import create_token

SAMPLE = "il-electricity-cdd-hdd-daily"
ISSUE_KWH = 890.6  # what the issue measured with opendsm 1.2.7
COMMUNE = "Ville-Test"


@dataclass
class Reference:
    """opendsm on the raw sample: avoided kWh, its uncertainty, the periods, the raw series."""

    avoided_kwh: float
    uncertainty_kwh: float
    baseline: tuple[date, date]
    reporting: tuple[date, date]
    meter: Any
    temp_f: Any


@pytest.fixture(scope="module")
def reference() -> Reference:
    """opendsm's CalTRACK daily model on the sample as its documentation uses it."""
    import pandas as pd

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from opendsm import eemeter as em
        from opendsm.common.metrics import ReportingMetrics

        meter, temp, meta = em.load_sample(SAMPLE)
        bs, be = meta["blackout_start_date"], meta["blackout_end_date"]
        year = pd.Timedelta(days=365)
        base = meter[(meter.index >= bs - year) & (meter.index < bs)]
        rep = meter[(meter.index >= be) & (meter.index < be + year)]
        model = em.DailyModel().fit(
            em.DailyBaselineData.from_series(base, temp, is_electricity_data=True))
        pred = model.predict(em.DailyReportingData.from_series(rep, temp, is_electricity_data=True))
        unc = ReportingMetrics(baseline_metrics=model.baseline_metrics, reporting_df=pred,
                               data_frequency="daily").total_savings_uncertainty
    avoided = float((pred["predicted"] - pred["observed"]).sum())
    return Reference(avoided, float(unc), ((bs - year).date(), bs.date()),
                     (be.date(), (be + year).date()), meter, temp)


@dataclass
class World:
    tenant: str
    project_id: int
    project: str
    http: TestClient
    headers: dict[str, str]
    db_url: str
    env: dict[str, str]


def _us(t: datetime) -> int:
    return int(t.timestamp() * 1_000_000)


def _cli(env: dict[str, str], *args: str) -> Any:
    result = CliRunner().invoke(cli, list(args), env=env)
    assert result.exit_code == 0, (args, result.output)
    return orjson.loads(result.stdout)


@pytest.fixture(scope="module")
def world(db_url: str, reference: Reference, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[World]:
    """The sample stored as the project stores data, a project, tariffs, and one job run."""
    tenant = f"sv{uuid.uuid4().hex[:8]}"
    env = {"MAILLAGE_DATABASE_URL": db_url}
    with psycopg.connect(db_url, autocommit=True) as conn:
        add_tenant(conn, tenant_id=tenant, timezone="UTC")  # the sample's days are UTC days
        # The sample is of 2015-2018: older than the default raw retention (2 years), which the
        # rollups skip. Imported history is kept by extending the tenant's retention.
        for kind in ("raw", "rollup_15m", "rollup_1h"):
            set_retention(conn, tenant=tenant, kind=kind, keep=None)
        register(conn, [(tenant, DeviceSpec(device_id="compteur-mairie", type="meter",
                                            commune=COMMUNE)),
                        (tenant, DeviceSpec(device_id="env-1", type="care_env")),
                        (tenant, DeviceSpec(device_id="lum-1", type="luminosity"))], dynsec=None)
        token = create_token(conn, tenant=tenant, role="energy_manager")
        # The meter's index at each midnight: the energy of day d is index(d+1) - index(d).
        rx = _us(datetime.now(UTC))
        index_wh, msgs = 0.0, []
        for ts, kwh in reference.meter["value"].items():
            msgs.append((tenant, "compteur-mairie", _us(ts.to_pydatetime()), rx, None,
                         {"energy_import_wh": index_wh}))
            if math.isnan(kwh):
                break
            index_wh += kwh * 1000
        with conn.transaction():
            written, _ = write_readings(conn, msgs, DeviceIds(), MetricIds(), LastSeen())
        assert written == len(msgs)
    csv_path = tmp_path_factory.mktemp("weather") / "ohare.csv"
    with csv_path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["ts", "temperature_c"])
        for ts, value in reference.temp_f.items():
            if not math.isnan(value):
                out.writerow([ts.isoformat(), repr((value - 32) * 5 / 9)])
    imported = _cli(env, "savings", "weather", "import", str(csv_path), "--tenant", tenant,
                    "--station", "ohare")
    assert imported["stored"] == imported["read"] > 8000
    _cli(env, "savings", "tariffs", "set", "--tenant", tenant, "--valid-from", "2016-01-01",
         "--base", "0.2", "--source", "test")
    _cli(env, "savings", "tariffs", "set", "--tenant", tenant, "--valid-from", "2017-07-01",
         "--peak", "0.3", "--offpeak", "0.12", "--offpeak-hours", "22:00-06:00")
    with TestClient(create_app(db_url)) as http:
        headers = {"Authorization": f"Bearer {token}"}
        r = http.post("/v1/savings/projects", headers=headers, json={
            "name": "Mairie (isolation)", "meter": "compteur-mairie",
            "baseline_start": reference.baseline[0].isoformat(),
            "baseline_end": reference.baseline[1].isoformat(),
            "reporting_start": reference.reporting[0].isoformat(),
            "reporting_end": reference.reporting[1].isoformat(),
            "temperature_station": "ohare"})
        assert r.status_code == 201, r.text
        pid = r.json()["id"]
        job = _cli(env, "savings", "compute", "--tenant", tenant)
        assert job["computed"] == [pid], job
        yield World(tenant, pid, "Mairie (isolation)", http, headers, db_url, env)


def _savings(w: World, **params: str) -> dict[str, Any]:
    r = w.http.get("/v1/savings", headers=w.headers, params=params)
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


def test_daily_energy_read_back_equals_the_sample(world: World, reference: Reference) -> None:
    """The job's input: each day's kWh from the stored index equals the sample's value."""
    with psycopg.connect(world.db_url, autocommit=True) as conn:
        (pk,) = conn.execute("SELECT pk FROM devices WHERE tenant_id = %s AND device_id = %s",
                             (world.tenant, "compteur-mairie")).fetchone() or (None,)
        got = db.daily_energy_kwh(conn=conn, device_pk=pk, metric="energy_import_wh", tz="UTC",
                                  start=reference.baseline[0], end=reference.reporting[1])
    expected = {ix.date(): v for ix, v in reference.meter["value"].items()
                if reference.baseline[0] <= ix.date() < reference.reporting[1]}
    wrong = {d: (got.get(d), v) for d, v in expected.items()
             if got.get(d) is None or abs(got[d] - v) > 1e-6}
    assert not wrong, sorted(wrong.items())[:10]
    # Over the whole history: every day but the first (a meter's first day is taken as partial;
    # here it began at midnight) and none after the last reading.
    with psycopg.connect(world.db_url, autocommit=True) as conn:
        every = db.daily_energy_kwh(conn=conn, device_pk=pk, metric="energy_import_wh", tz="UTC",
                                    start=date(2015, 1, 1), end=date(2019, 1, 1))
    sample_days = [ix.date() for ix, v in reference.meter["value"].items() if not math.isnan(v)]
    assert sorted(every) == sample_days[1:]


def test_temperatures_read_back_equal_the_sample(world: World, reference: Reference) -> None:
    """The job's other input: the imported station's hourly temperatures, in °C."""
    project = {"tz": "UTC", "tenant": world.tenant, "temperature_station": "ohare"}
    with psycopg.connect(world.db_url, autocommit=True) as conn:
        got = dict(db.temperatures_c(conn=conn, project=project, start=reference.baseline[0],
                                     end=reference.reporting[1]))
    lo = datetime.combine(reference.baseline[0], datetime.min.time(), UTC) - timedelta(days=1)
    hi = datetime.combine(reference.reporting[1], datetime.min.time(), UTC) + timedelta(days=1)
    expected = {ts.to_pydatetime(): (v - 32) * 5 / 9 for ts, v in reference.temp_f.items()
                if lo <= ts.to_pydatetime() < hi and not math.isnan(v)}
    assert len(got) == len(expected)
    wrong = {t: (got.get(t), v) for t, v in expected.items()
             if got.get(t) is None or abs(got[t] - v) > 1e-9}
    assert not wrong, sorted(wrong.items())[:5]


def test_avoided_energy_equals_opendsm_on_the_sample(world: World, reference: Reference) -> None:
    """Acceptance 1: stored readings -> savings job -> GET /v1/savings = opendsm within 1 %."""
    assert reference.avoided_kwh == pytest.approx(ISSUE_KWH, rel=0.01)
    doc = _savings(world, area="commune", name=COMMUNE,
                   **{"from": reference.reporting[0].isoformat(),
                      "to": reference.reporting[1].isoformat()})
    metered = doc["metered"]
    (project,) = metered["projects"]
    assert project["status"] == "ok" and project["days"] >= 360
    assert metered["kwh"] == pytest.approx(reference.avoided_kwh, rel=0.01)
    assert metered["uncertainty_kwh"] == pytest.approx(reference.uncertainty_kwh, rel=0.01)
    assert metered["confidence"] == 0.9
    assert doc["total"]["kwh"] == pytest.approx(metered["kwh"])  # no lighting in this tenant
    assert project["predicted_kwh"] - project["observed_kwh"] == pytest.approx(metered["kwh"])


def test_each_day_priced_with_the_tariff_in_force_and_the_default_factor(world: World) -> None:
    """€: base 0.20 until June 2017, then 8 off-peak hours at 0.12 and 16 at 0.30; CO2: the
    French mix default (no tenant factor)."""
    with psycopg.connect(world.db_url) as conn:
        rows = conn.execute("SELECT day, avoided_kwh, eur, kg_co2, factor_source "
                            "FROM savings_metered_days WHERE project_id = %s",
                            (world.project_id,)).fetchall()
    before = sum(a for d, a, *_ in rows if d < date(2017, 7, 1))
    after = sum(a for d, a, *_ in rows if d >= date(2017, 7, 1))
    doc = _savings(world)
    expected_eur = before * 0.2 + after * (8 / 24 * 0.12 + 16 / 24 * 0.3)
    assert doc["metered"]["eur"] == pytest.approx(expected_eur, rel=1e-9)
    assert doc["metered"]["kg_co2"] == pytest.approx((before + after) * 0.052, rel=1e-9)
    assert {r[4] for r in rows} == {doc["metered"]["projects"][0]["factor_sources"]}
    assert "ADEME" in rows[0][4]


def test_job_skips_unchanged_data_and_a_later_tariff_leaves_past_savings(world: World) -> None:
    """Nothing changed: nothing recomputed. A tariff from 2019 on changes the inputs (the job
    recomputes) but not one past day's price."""
    before = _savings(world)["metered"]
    again = _cli(world.env, "savings", "compute", "--tenant", world.tenant)
    assert again["unchanged"] == [world.project_id] and again["computed"] == []
    _cli(world.env, "savings", "tariffs", "set", "--tenant", world.tenant, "--valid-from",
         "2019-01-01", "--base", "0.5")
    third = _cli(world.env, "savings", "compute", "--tenant", world.tenant)
    assert third["computed"] == [world.project_id]
    after = _savings(world)["metered"]
    assert after["eur"] == pytest.approx(before["eur"], rel=1e-9)
    assert after["kwh"] == pytest.approx(before["kwh"], rel=1e-9)


def test_a_project_computed_elsewhere_is_left_alone(world: World) -> None:
    """Two savings processes (or a one-shot compute beside the processor) never compute one
    project at once: the second leaves it, and says so."""
    with psycopg.connect(world.db_url, autocommit=True) as other, \
            db.project_lock(conn=other, project_id=world.project_id) as held:
        assert held
        job = _cli(world.env, "savings", "compute", "--tenant", world.tenant, "--force")
    assert job["busy"] == [world.project_id] and job["computed"] == []


def test_window_area_and_csv(world: World, reference: Reference) -> None:
    """A window sums its days (its uncertainty smaller than the year's); another commune has
    nothing; CSV has one row per cause."""
    year = _savings(world)["metered"]
    march = _savings(world, **{"from": "2017-03-01", "to": "2017-04-01"})["metered"]
    (p,) = march["projects"]
    assert p["days"] == 31 and p["first_day"] == "2017-03-01" and p["last_day"] == "2017-03-31"
    assert 0 < march["uncertainty_kwh"] < year["uncertainty_kwh"]
    other = _savings(world, area="commune", name="Ailleurs")
    assert other["metered"]["projects"] == [] and other["total"]["kwh"] == 0
    r = world.http.get("/v1/savings", headers=world.headers, params={"format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    lines = list(csv.DictReader(r.text.splitlines()))
    assert [x["cause"] for x in lines] == [f"metered:{world.project}"]
    assert float(lines[0]["kwh"]) == pytest.approx(year["kwh"])


def test_monthly_report_is_printable_html_with_the_api_numbers(world: World) -> None:
    """The report of March 2017 shows the project and the month's avoided kWh of the API."""
    march = _savings(world, area="commune", name=COMMUNE,
                     **{"from": "2017-03-01", "to": "2017-04-01"})["metered"]
    r = world.http.get("/v1/savings/report", headers=world.headers,
                       params={"commune": COMMUNE, "month": "2017-03"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert world.project in html.replace("&#39;", "'") and "@page" in html
    assert "{:,.1f}".format(march["kwh"]).replace(",", " ") in html
    assert "maillage savings compute --tenant" in html
    bad = world.http.get("/v1/savings/report", headers=world.headers,
                         params={"commune": COMMUNE, "month": "2017-13"})
    assert bad.status_code == 422 and "YYYY-MM" in bad.json()["error"]["message"]


@pytest.mark.parametrize(("change", "status", "words"), [
    ({"meter": "nope"}, 404, "no device"),
    ({"meter": "lum-1"}, 422, "not a meter"),
    ({"temperature_station": None, "temperature_device": "env-1"}, 422, "care device"),
    ({"temperature_device": "lum-1"}, 422, "one temperature source"),
    ({"baseline_end": "2015-01-01"}, 422, "periods"),
    ({"name": "Mairie (isolation)"}, 409, "exists"),
])
def test_bad_projects_are_refused_clearly(world: World, change: dict[str, Any], status: int,
                                          words: str) -> None:
    """Unknown meter, a lamp sensor as meter, care data as temperature, two sources, bad
    periods, a taken name: 4xx with the reason."""
    body = {"name": f"p-{uuid.uuid4().hex[:6]}", "meter": "compteur-mairie",
            "baseline_start": "2016-01-01", "baseline_end": "2016-06-01",
            "reporting_start": "2016-07-01", "temperature_station": "ohare", **change}
    r = world.http.post("/v1/savings/projects", headers=world.headers, json=body)
    assert r.status_code == status, r.text
    assert words in r.json()["error"]["message"]


def test_care_coordinator_may_not_read_savings(world: World) -> None:
    with psycopg.connect(world.db_url, autocommit=True) as conn:
        token = create_token(conn, tenant=world.tenant, role="care_coordinator")
    r = world.http.get("/v1/savings", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 403


def test_missing_temperature_is_reported_not_raised(world: World) -> None:
    """A project whose station has no data ends `insufficient`, with opendsm's or our reason."""
    r = world.http.post("/v1/savings/projects", headers=world.headers, json={
        "name": "sans meteo", "meter": "compteur-mairie", "baseline_start": "2016-01-01",
        "baseline_end": "2016-06-01", "reporting_start": "2016-07-01",
        "reporting_end": "2016-09-01", "temperature_station": "vide"})
    assert r.status_code == 201
    job = _cli(world.env, "savings", "compute", "--tenant", world.tenant)
    pid = str(r.json()["id"])
    assert "temperature" in job["insufficient"][pid]
    listed = world.http.get("/v1/savings/projects", headers=world.headers).json()["items"]
    assert {p["name"]: p["status"] for p in listed}["sans meteo"] == "insufficient"


def test_a_weather_device_gives_the_same_savings(world: World, reference: Reference) -> None:
    """The other temperature source: a device's temperature_c readings, stored by the storage
    writer, give the same avoided energy as the imported station."""
    with psycopg.connect(world.db_url, autocommit=True) as conn:
        register(conn, [(world.tenant, DeviceSpec(device_id="meteo-1", type="luminosity",
                                                  commune=COMMUNE))], dynsec=None)
        rx = _us(datetime.now(UTC))
        msgs = [(world.tenant, "meteo-1", _us(ts.to_pydatetime()), rx, None,
                 {"temperature_c": (v - 32) * 5 / 9})
                for ts, v in reference.temp_f.items() if not math.isnan(v)]
        with conn.transaction():
            write_readings(conn, msgs, DeviceIds(), MetricIds(), LastSeen())
    r = world.http.post("/v1/savings/projects", headers=world.headers, json={
        "name": "Mairie (capteur)", "meter": "compteur-mairie",
        "baseline_start": reference.baseline[0].isoformat(),
        "baseline_end": reference.baseline[1].isoformat(),
        "reporting_start": reference.reporting[0].isoformat(),
        "reporting_end": reference.reporting[1].isoformat(), "temperature_device": "meteo-1"})
    assert r.status_code == 201, r.text
    job = _cli(world.env, "savings", "compute", "--tenant", world.tenant)
    assert job["computed"] == [r.json()["id"]]
    projects = {p["name"]: p for p in _savings(world)["metered"]["projects"]}
    assert projects["Mairie (capteur)"]["kwh"] == pytest.approx(
        projects[world.project]["kwh"], rel=1e-9)
