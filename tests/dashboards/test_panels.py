"""Acceptance 1 of issue #17: every panel query of every built dashboard, expanded as Grafana
expands it, runs on the real PostgreSQL as the grafana_reader role over demo data, and the main
panels return rows; tenant scoping and the care views' pseudonyms hold."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from maillage.dashboards.build import dashboards
from maillage.dashboards.expand import Variable, expand
from maillage.dashboards.queries import ALL_COMMUNES, QUERIES
from maillage.db.dashboards import add_reader
from maillage.db.migrate import GRAFANA_ROLE, set_grafana_password
from tests.dashboards.world import HERMITAGE, VITRE, World, make_world


def _targets() -> list[tuple[str, str, dict[str, Any]]]:
    """(dashboard uid, panel title, target) of every panel of every dashboard."""
    out = []
    for uid, model in dashboards().items():
        for panel in model["panels"]:
            for target in panel.get("targets", []):
                out.append((uid, panel["title"], target))
    return out


def _variable_queries() -> list[tuple[str, str]]:
    return [(uid, v["query"]) for uid, m in dashboards().items() for v in m["templating"]["list"]
            if v["type"] == "query"]


TARGETS = _targets()
SQL_TO_KEY = {q.sql.strip(): q.key for q in QUERIES.values()}


def _as_role(db_url: str, role: str, password: str) -> str:
    base, _, dbname = db_url.rpartition("/")
    scheme, _, hostpart = base.partition("://")
    return f"{scheme}://{role}:{password}@{hostpart.rpartition('@')[2]}/{dbname}"


@pytest.fixture(scope="module")
def world(db_url: str) -> World:
    return make_world(db_url)


@pytest.fixture(scope="module")
def reader(db_url: str, world: World) -> Iterator[psycopg.Connection]:
    """A connection as grafana_reader, the role of the provisioned data source."""
    password = uuid.uuid4().hex
    set_grafana_password(db_url, password)
    with psycopg.connect(_as_role(db_url, GRAFANA_ROLE, password), autocommit=True) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (GRAFANA_ROLE,)
        yield conn


def _timescaledb(conn: psycopg.Connection) -> list[bool]:
    """Expand $__timeGroup both ways where TimescaleDB is installed, else the plain way."""
    row = conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    return [False, True] if row and row[0] else [False]


def _run(conn: psycopg.Connection, sql: str, world: World, *, communes: list[str] | None = None,
         tenant: str | None = None, timescaledb: bool = False) -> list[tuple[Any, ...]]:
    variables = {
        "tenant": Variable(tenant or world.tenant),
        "commune": (Variable(communes) if communes else
                    Variable([VITRE, HERMITAGE], all_value=ALL_COMMUNES, is_all=True)),
    }
    text = expand(sql, variables, time_from=world.now - timedelta(days=7), time_to=world.now,
                  timescaledb=timescaledb)
    assert "$" not in text, text
    return conn.execute(text).fetchall()  # type: ignore[arg-type]  # expanded panel SQL


def test_every_panel_sql_lives_in_queries_module() -> None:
    """Every target and variable of the built dashboards is a query of `db/grafana_panels.py`, and every
    query there is used; the five dashboards and the geomap are there."""
    used = {SQL_TO_KEY.get(t["rawSql"]) for _, _, t in TARGETS}
    used |= {SQL_TO_KEY.get(q) for _, q in _variable_queries()}
    assert None not in used
    assert used == set(QUERIES)
    assert {uid for uid, _, _ in TARGETS} == {
        "maillage-territoire", "maillage-compteurs", "maillage-eclairage", "maillage-soins",
        "maillage-plateforme"}
    types = {p["type"] for m in dashboards().values() for p in m["panels"]}
    assert {"geomap", "timeseries", "table", "stat", "barchart"} <= types
    for _, _, t in TARGETS:
        assert t["datasource"] == {"type": "grafana-postgresql-datasource", "uid": "maillage-pg"}
        assert "--" not in t["rawSql"]  # Grafana strips SQL comments: none to lose


@pytest.mark.parametrize(("uid", "title", "target"), TARGETS, ids=[f"{u}:{t}" for u, t, _ in TARGETS])
def test_panel_runs_as_grafana_reader(reader: psycopg.Connection, world: World, uid: str, title: str,
                                      target: dict[str, Any]) -> None:
    """No error; rows for the main panels; time series carry the `time` column Grafana wants."""
    query = QUERIES[SQL_TO_KEY[target["rawSql"]]]
    for ts in _timescaledb(reader):
        cur_rows = _run(reader, target["rawSql"], world, timescaledb=ts)
        if query.main:
            assert cur_rows, f"{uid} / {title}: no rows"
    if query.format == "time_series":
        names = [c.name for c in reader.execute(  # type: ignore[union-attr]
            expand(target["rawSql"], {"tenant": Variable(world.tenant), "commune": Variable(
                [VITRE], all_value=ALL_COMMUNES, is_all=True)}, time_from=world.now - timedelta(days=7),
                time_to=world.now)).description]  # type: ignore[arg-type]
        assert names[0] == "time"


def test_variables_run_and_list_what_they_should(reader: psycopg.Connection, world: World) -> None:
    """The tenant variable lists both tenants (grafana_reader reads all); communes of the tenant."""
    tenants = {r[0] for r in _run(reader, QUERIES["var_tenant"].sql, world)}
    assert {world.tenant, world.other} <= tenants
    communes = [r[0] for r in _run(reader, QUERIES["var_commune"].sql, world)]
    assert communes == sorted([HERMITAGE, VITRE])


def test_values_on_the_demo_data(reader: psycopg.Connection, world: World) -> None:
    """A few panels computed by hand: devices online, lamps on the map, peaks, today vs last week."""
    online, offline, unknown = _run(reader, QUERIES["territory_devices"].sql, world)[0]
    assert (online, offline, unknown) == (7, 1, 0)  # 8 non-care devices, sl-1 offline
    lamps = _run(reader, QUERIES["lighting_map"].sql, world)
    assert sorted(r[0] for r in lamps) == ["cab-1", "sl-1", "sl-2", "sl-3", "sl-4"]
    assert {r[0]: r[6] for r in lamps}["sl-1"] == 1  # its open lamp_failure alert
    peaks = {r[0]: r for r in _run(reader, QUERIES["meters_peaks"].sql, world)}
    assert peaks["linky-1"][4] == pytest.approx(7200 * 1.05)
    assert peaks["linky-1"][6] >= 6  # 19:00 every day of the week
    assert peaks["linky-2"][6] == 0
    today, last_week = _run(reader, QUERIES["territory_today_vs_last_week"].sql, world)[0]
    assert today is not None and last_week is not None and today > 0 and last_week > 0
    assert {r[0] for r in _run(reader, QUERIES["territory_open_alerts"].sql, world)} == {"warning"}
    savings = {r[0]: r for r in _run(reader, QUERIES["lighting_savings_per_commune"].sql, world)}
    assert set(savings) == {VITRE, HERMITAGE}
    assert savings[VITRE][1] > 0 and savings[VITRE][4] > 0  # HPS 150 W replaced by LED 70 W
    project = _run(reader, QUERIES["meters_savings"].sql, world)
    assert [(r[0], r[1], r[4], float(r[7]), float(r[8])) for r in project] == [
        ("Mairie isolée", "linky-1", 3, 30.0, 6.0)]
    window = _run(reader, QUERIES["meters_peak_windows"].sql, world)
    assert [(r[2], r[3], r[4]) for r in window] == [("commune", VITRE, 50)]
    # Vitré's three lamps lit at 18:00-20:00 (UTC), and the evening before
    assert float(window[0][7]) == pytest.approx(3 * 0.07) and float(window[0][8]) == pytest.approx(3 * 0.07)
    reasons = {r[1] for r in _run(reader, QUERIES["platform_dlq_rate"].sql, world)}
    assert reasons == {"bad_checksum", "unknown_metric"}


def test_commune_filter_quotes_and_filters(reader: psycopg.Connection, world: World) -> None:
    """One commune selected (with a quote in its name): only its lamps and meters."""
    lamps = _run(reader, QUERIES["lighting_map"].sql, world, communes=[HERMITAGE])
    assert [r[0] for r in lamps] == ["sl-4"]
    peaks = _run(reader, QUERIES["meters_peaks"].sql, world, communes=[HERMITAGE, "O'Neil"])
    assert [r[0] for r in peaks] == ["linky-3"]


def test_care_panels_show_pseudonyms_only(reader: psycopg.Connection, world: World) -> None:
    """Care alerts and sensor health by resident pseudonym; no care device id or dwelling; the
    energy views never show a care device or a care alert."""
    alerts = _run(reader, QUERIES["care_alerts"].sql, world)
    assert [r[1] for r in alerts] == [world.residents[0]] and alerts[0][2] == "panic_button"
    health = _run(reader, QUERIES["care_device_health"].sql, world)
    assert {r[0] for r in health} == set(world.residents) and len(health) == 4
    assert {r[5] for r in health} == {80.0, 20.0, None}  # the motion sensors' batteries
    cells = {str(c) for rows in (alerts, health) for r in rows for c in r}
    assert not cells & set(world.care_device_ids)
    assert not any("log-" in c for c in cells)
    columns = {r[0] for r in reader.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'grafana' "
        "AND table_name IN ('care_alerts', 'care_devices')").fetchall()}
    assert not columns & {"device_id", "dwelling", "evidence", "snapshot", "detail", "meta", "lat", "lon"}
    visible = {r[0] for r in reader.execute(
        "SELECT device_id FROM grafana.devices WHERE tenant_id = %s", (world.tenant,)).fetchall()}
    assert not visible & set(world.care_device_ids)
    open_list = _run(reader, QUERIES["territory_open_alert_list"].sql, world)
    assert "panic_button" not in {r[1] for r in open_list}


def test_tenant_reader_sees_its_tenant_only(db_url: str, world: World) -> None:
    """A tenant's reader role (`maillage dashboards reader`) gets rows of its tenant only, even
    when the dashboard's tenant variable names another; no platform-wide lag; and it cannot
    widen its scope by SET ROLE to the group role or by a session setting."""
    role, password = f"gr_{uuid.uuid4().hex[:10]}", uuid.uuid4().hex
    with psycopg.connect(db_url, autocommit=True) as conn:
        add_reader(conn=conn, role=role, tenant=world.tenant, password=password)
        with pytest.raises(ValueError, match="unknown tenant"):
            add_reader(conn=conn, role=role, tenant="nope-" + uuid.uuid4().hex[:6], password=password)
    with psycopg.connect(_as_role(db_url, role, password), autocommit=True) as conn:
        assert [r[0] for r in _run(conn, QUERIES["var_tenant"].sql, world)] == [world.tenant]
        assert _run(conn, QUERIES["territory_devices"].sql, world)[0][0] == 7
        assert _run(conn, QUERIES["territory_devices"].sql, world, tenant=world.other)[0] == (0, 0, 0)
        assert _run(conn, QUERIES["meters_anomalies"].sql, world, tenant=world.other) == []
        assert _run(conn, QUERIES["platform_lag"].sql, world) == []
        assert conn.execute("SELECT count(*) FROM grafana.readings r JOIN grafana.devices d "
                            "ON d.pk = r.device_pk WHERE d.tenant_id = %s",
                            (world.other,)).fetchone() == (0,)
        conn.execute("SET ROLE grafana_readers")
        assert conn.execute("SELECT count(*) FROM grafana.tenants").fetchone() == (0,)
        conn.execute("RESET ROLE")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT 1 FROM public.devices LIMIT 1")


def test_reader_cli(db_url: str, world: World) -> None:
    """`maillage dashboards reader`: an unknown tenant is a clear error (exit 1); a known one
    gets a role that logs in and reads that tenant only."""
    from typer.testing import CliRunner

    from maillage.cli.main import app

    role, password = f"gr_{uuid.uuid4().hex[:10]}", uuid.uuid4().hex
    env = {"MAILLAGE_DATABASE_URL": db_url, "MAILLAGE_GRAFANA_READER_PASSWORD": password}
    bad = CliRunner().invoke(app, ["dashboards", "reader", "--role", role, "--tenant", "nobody-x"], env=env)
    assert bad.exit_code == 1 and "unknown tenant" in bad.output
    ok = CliRunner().invoke(app, ["dashboards", "reader", "--role", role, "--tenant", world.other], env=env)
    assert ok.exit_code == 0, ok.output
    with psycopg.connect(_as_role(db_url, role, password), autocommit=True) as conn:
        assert [r[0] for r in _run(conn, QUERIES["var_tenant"].sql, world)] == [world.other]
