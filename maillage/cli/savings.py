"""`maillage savings …`: metered savings projects, tariffs, emission factors, outdoor temperature
imports, and a one-shot run of the savings job (`maillage processor savings` runs it periodically)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated

import psycopg
import typer

from maillage.cli.common import DataDir, clean_errors, print_json, settings_for
from maillage.db import savings as db
from maillage.errors import MaillageError

savings_app = typer.Typer(help="Savings: metered projects, tariffs, factors, weather, compute.",
                          no_args_is_help=True)
projects_app = typer.Typer(help="Metered savings projects (baseline and reporting periods).",
                           no_args_is_help=True)
tariffs_app = typer.Typer(help="Energy tariffs (€/kWh) by validity date.", no_args_is_help=True)
factors_app = typer.Typer(help="Emission factors (kg CO2/kWh) by validity date.",
                          no_args_is_help=True)
weather_app = typer.Typer(help="Outdoor temperature series (CSV import).", no_args_is_help=True)
savings_app.add_typer(projects_app, name="projects")
savings_app.add_typer(tariffs_app, name="tariffs")
savings_app.add_typer(factors_app, name="factors")
savings_app.add_typer(weather_app, name="weather")

Tenant = Annotated[str, typer.Option(help="The tenant.")]
AnyTenant = Annotated[str | None, typer.Option("--tenant", help="Only this tenant.")]
Day = Annotated[str, typer.Option(help="A date, YYYY-MM-DD.")]


def _connect(data_dir: DataDir) -> psycopg.Connection:
    from maillage.stack.state import database_url

    return psycopg.connect(database_url(settings_for(data_dir)), autocommit=True)


def _date(name: str, text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise MaillageError(f"--{name}: {text!r} is not a date YYYY-MM-DD") from exc


def _need(name: str, text: str) -> date:
    value = _date(name, text)
    assert value is not None
    return value


def _tenant_known(conn: psycopg.Connection, tenant: str) -> None:
    try:
        db.tenant_timezone(conn=conn, tenant=tenant)
    except LookupError as exc:
        raise MaillageError(str(exc)) from exc


@projects_app.command("add")
@clean_errors
def projects_add(
    tenant: Tenant,
    name: Annotated[str, typer.Option(help="A name unique in the tenant.")],
    meter: Annotated[str, typer.Option(help="The meter's device id (energy index readings).")],
    baseline_start: Day, baseline_end: Day, reporting_start: Day,
    reporting_end: Annotated[str | None, typer.Option(
        help="End of the reporting period (exclusive); default: open, up to yesterday.")] = None,
    temperature_device: Annotated[str | None, typer.Option(
        help="A device of the tenant whose temperature_c readings are the outdoor temperature.")] = None,
    station: Annotated[str | None, typer.Option(
        help="An imported weather station (`maillage savings weather import`).")] = None,
    data_dir: DataDir = None,
) -> None:
    """Create a metered savings project; prints it."""
    with _connect(data_dir) as conn:
        _tenant_known(conn, tenant)
        try:
            project = db.add_project(
                conn=conn, tenant=tenant, name=name, meter=meter,
                baseline_start=_need("baseline-start", baseline_start),
                baseline_end=_need("baseline-end", baseline_end),
                reporting_start=_need("reporting-start", reporting_start),
                reporting_end=_date("reporting-end", reporting_end),
                temperature_device=temperature_device, temperature_station=station,
                created_by="cli")
        except (LookupError, ValueError) as exc:
            raise MaillageError(str(exc)) from exc
    print_json(project)


@projects_app.command("list")
@clean_errors
def projects_list(tenant: AnyTenant = None, data_dir: DataDir = None) -> None:
    """Projects with the status of their last computation, as JSON."""
    with _connect(data_dir) as conn:
        print_json({"items": db.list_projects(conn=conn, tenant=tenant)})


@tariffs_app.command("set")
@clean_errors
def tariffs_set(
    tenant: Tenant, valid_from: Day,
    base: Annotated[float | None, typer.Option(help="Base price, €/kWh.")] = None,
    peak: Annotated[float | None, typer.Option(help="Peak-hours price, €/kWh.")] = None,
    offpeak: Annotated[float | None, typer.Option(help="Off-peak price, €/kWh.")] = None,
    offpeak_hours: Annotated[str | None, typer.Option(
        help="Off-peak hours in local time, e.g. 22:00-06:00 or 01:00-07:00,12:30-14:30.")] = None,
    source: Annotated[str | None, typer.Option(help="Where the price comes from.")] = None,
    data_dir: DataDir = None,
) -> None:
    """Set the tariff in force from a date (until the next one); prints the tenant's tariffs."""
    from maillage.processors.savings.tariffs import Tariff

    day = _need("valid-from", valid_from)
    try:
        Tariff(None, day, base, peak, offpeak, offpeak_hours, source)
    except ValueError as exc:
        raise MaillageError(str(exc)) from exc
    with _connect(data_dir) as conn:
        _tenant_known(conn, tenant)
        db.set_tariff(conn=conn, tenant=tenant, valid_from=day, base_eur_kwh=base,
                      peak_eur_kwh=peak, offpeak_eur_kwh=offpeak, offpeak_hours=offpeak_hours,
                      source=source)
        print_json({"items": db.list_tariffs(conn=conn, tenant=tenant)})


@tariffs_app.command("list")
@clean_errors
def tariffs_list(tenant: AnyTenant = None, data_dir: DataDir = None) -> None:
    """Tariffs as JSON."""
    with _connect(data_dir) as conn:
        print_json({"items": db.list_tariffs(conn=conn, tenant=tenant)})


@factors_app.command("set")
@clean_errors
def factors_set(
    tenant: Tenant, valid_from: Day,
    kg_co2_per_kwh: Annotated[float, typer.Option(help="kg CO2 (e) per kWh.")],
    source: Annotated[str, typer.Option(help="Where the factor comes from.")],
    data_dir: DataDir = None,
) -> None:
    """Set the emission factor in force from a date (the French mix default applies before)."""
    if not 0 <= kg_co2_per_kwh < 5:
        raise MaillageError("--kg-co2-per-kwh: between 0 and 5")
    day = _need("valid-from", valid_from)
    with _connect(data_dir) as conn:
        _tenant_known(conn, tenant)
        db.set_factor(conn=conn, tenant=tenant, valid_from=day, kg_co2_per_kwh=kg_co2_per_kwh,
                      source=source)
        print_json({"items": db.list_factors(conn=conn, tenant=tenant)})


@factors_app.command("list")
@clean_errors
def factors_list(tenant: AnyTenant = None, data_dir: DataDir = None) -> None:
    """Emission factors as JSON (and the default used without one)."""
    from maillage.processors.savings.tariffs import DEFAULT_FACTOR

    with _connect(data_dir) as conn:
        print_json({"items": db.list_factors(conn=conn, tenant=tenant),
                    "default": {"kg_co2_per_kwh": DEFAULT_FACTOR.kg_co2_per_kwh,
                                "source": DEFAULT_FACTOR.source}})


def read_weather_csv(text: str, *, unit: str = "C") -> list[tuple[datetime, float]]:
    """Rows `ts,temperature` (header first; ts ISO 8601 with a zone, or epoch seconds)."""
    if unit not in ("C", "F"):
        raise MaillageError("--unit: C or F")
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or len(header) < 2:
        raise MaillageError("the CSV needs a header: ts,temperature_c (or ts,temperature_f)")
    rows: list[tuple[datetime, float]] = []
    for line, rec in enumerate(reader, start=2):
        if not rec or not "".join(rec).strip():
            continue
        try:
            raw_ts, raw_v = rec[0].strip(), rec[1].strip()
            ts = (datetime.fromtimestamp(float(raw_ts), UTC) if raw_ts.replace(".", "").isdigit()
                  else datetime.fromisoformat(raw_ts))
            value = float(raw_v)
        except (ValueError, IndexError) as exc:
            raise MaillageError(f"line {line}: {rec!r} is not 'time,temperature'") from exc
        if ts.tzinfo is None:
            raise MaillageError(f"line {line}: {raw_ts!r} has no time zone (add Z or +01:00)")
        if value != value:  # NaN: a gap
            continue
        rows.append((ts, (value - 32) * 5 / 9 if unit == "F" else value))
    if not rows:
        raise MaillageError("no temperature in the file")
    return rows


@weather_app.command("import")
@clean_errors
def weather_import(
    file: Annotated[Path, typer.Argument(help="CSV: ts,temperature (a header line first).")],
    tenant: Tenant,
    station: Annotated[str, typer.Option(help="The station's name, used by projects (--station).")],
    unit: Annotated[str, typer.Option(help="C or F.")] = "C",
    data_dir: DataDir = None,
) -> None:
    """Import a station's outdoor temperatures; prints how many rows were stored."""
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise MaillageError(f"cannot read {file}: {exc}") from exc
    rows = read_weather_csv(text, unit=unit)
    with _connect(data_dir) as conn:
        _tenant_known(conn, tenant)
        try:
            stored = db.import_weather(conn=conn, tenant=tenant, station=station, rows=rows)
        except psycopg.errors.CheckViolation as exc:
            raise MaillageError(f"refused: {exc.diag.message_primary} (station name, or a "
                                "temperature outside -90..70 °C)") from exc
    print_json({"tenant": tenant, "station": station, "read": len(rows), "stored": stored})


@weather_app.command("list")
@clean_errors
def weather_list(tenant: AnyTenant = None, data_dir: DataDir = None) -> None:
    """Imported stations as JSON."""
    with _connect(data_dir) as conn:
        print_json({"items": db.list_stations(conn=conn, tenant=tenant)})


@savings_app.command("compute")
@clean_errors
def compute(tenant: AnyTenant = None,
            force: Annotated[bool, typer.Option(
                "--force", help="Recompute even projects whose data did not change.")] = False,
            data_dir: DataDir = None) -> None:
    """Run the savings job once (metered projects whose data changed, then lighting)."""
    from maillage.processors.savings.job import run_once

    with _connect(data_dir) as conn:
        if tenant is not None:
            _tenant_known(conn, tenant)
        report = run_once(conn, tenant=tenant, force=force)
    print_json(report.as_dict())
