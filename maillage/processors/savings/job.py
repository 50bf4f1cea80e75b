"""The periodic savings job: metered savings of every project whose data changed, then lighting.

For each metered project the job digests what its result depends on (definition, the meter's
and the temperature's stored rows, tariffs and factors); when that changed since the stored
result (or `force`), it reads the daily consumption (daily rollups of the meter's index) and the
outdoor temperatures, runs `metered.metered_savings`, prices each reporting day with the tariff
and factor in force that day, and replaces the stored result. Then it calls the lighting
savings (`lighting.compute`). `maillage processor savings` runs it every `every_s` seconds;
`maillage savings compute` once.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from maillage.db import savings as db
from maillage.processors.savings import tariffs
from maillage.processors.savings.metered import InsufficientData, MeteredResult, metered_savings

log = logging.getLogger(__name__)

EVERY_S = 900.0


@dataclass
class JobReport:
    """What one pass did."""

    computed: list[int] = field(default_factory=list)
    unchanged: list[int] = field(default_factory=list)
    busy: list[int] = field(default_factory=list)
    insufficient: dict[int, str] = field(default_factory=dict)
    lighting_rows: int | None = None
    lighting_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"computed": self.computed, "unchanged": self.unchanged, "busy": self.busy,
                "insufficient": {str(k): v for k, v in self.insufficient.items()},
                "lighting_rows": self.lighting_rows, "lighting_error": self.lighting_error}


def run_once(conn: psycopg.Connection, *, tenant: str | None = None, force: bool = False,
             today: date | None = None) -> JobReport:
    """One pass over the projects of `tenant` (every tenant when None), then lighting."""
    report = JobReport()
    for project in db.projects_for_job(conn=conn, tenant=tenant):
        with db.project_lock(conn=conn, project_id=int(project["id"])) as mine:
            if mine:  # else another savings process is computing it now
                _metered_project(conn, project, force=force, today=today, report=report)
            else:
                report.busy.append(int(project["id"]))
    _lighting(conn, tenant=tenant, report=report)
    return report


def _metered_project(conn: psycopg.Connection, project: dict[str, Any], *, force: bool,
                     today: date | None, report: JobReport) -> None:
    pid = int(project["id"])
    local_today = today or datetime.now(UTC).astimezone(ZoneInfo(project["tz"])).date()
    end = project["reporting_end"] or local_today
    end = min(end, local_today)
    digest = db.fingerprint(conn=conn, project=project, end=end)
    if digest == project["fingerprint"] and not force:
        report.unchanged.append(pid)
        return
    method = "CalTRACK daily (opendsm)"
    try:
        if end <= project["reporting_start"]:
            raise InsufficientData("the reporting period has not started")
        daily = db.daily_energy_kwh(conn=conn, device_pk=project["device_pk"],
                                    metric=project["metric"], tz=project["tz"],
                                    start=project["baseline_start"], end=end)
        temps = db.temperatures_c(conn=conn, project=project, start=project["baseline_start"],
                                  end=end)
        result = metered_savings(daily_kwh=daily, temperatures_c=temps, tz=project["tz"],
                                 baseline=(project["baseline_start"], project["baseline_end"]),
                                 reporting=(project["reporting_start"], end))
    except InsufficientData as exc:
        log.info("savings project %d (tenant %s): %s", pid, project["tenant"], exc)
        db.store_result(conn=conn, project_id=pid, fingerprint=digest, status="insufficient",
                        method=method, message=str(exc))
        report.insufficient[pid] = str(exc)
        return
    except (ArithmeticError, KeyError, IndexError, TypeError, RuntimeError) as exc:
        # A model that fails in an unforeseen way must not stop the other projects' savings.
        log.exception("savings project %d (tenant %s) failed", pid, project["tenant"])
        db.store_result(conn=conn, project_id=pid, fingerprint=digest, status="failed",
                        method=method, message=f"{type(exc).__name__}: {exc}")
        report.insufficient[pid] = f"failed: {exc}"
        return
    days = _priced_days(conn, project["tenant"], result)
    db.store_result(conn=conn, project_id=pid, fingerprint=digest, status="ok",
                    method=result.method, stats=_stats(result), days=days)
    log.info("savings project %d (tenant %s): %.1f kWh avoided over %d days (± %.1f)", pid,
             project["tenant"], result.avoided_kwh, len(result.days), result.uncertainty_kwh)
    report.computed.append(pid)


def _stats(result: MeteredResult) -> dict[str, Any]:
    unc = result.uncertainty_kwh
    return {"baseline_days": result.baseline_days, "n": result.n, "n_prime": result.n_prime,
            "cvrmse_adj": result.cvrmse_adj, "t_stat": result.t_stat,
            "confidence": result.confidence, "reporting_days": len(result.days),
            "observed_kwh": result.observed_kwh, "predicted_kwh": result.predicted_kwh,
            "avoided_kwh": result.avoided_kwh,
            "uncertainty_kwh": unc if math.isfinite(unc) else None, "model": result.model}


def _priced_days(conn: psycopg.Connection, tenant: str,
                 result: MeteredResult) -> list[tuple[Any, ...]]:
    """Each day's avoided kWh priced with the tariff and factor in force that day."""
    tariff_rows, factor_rows = db.tenant_prices(conn=conn, tenant=tenant)
    tariff_list = [tariffs.Tariff(id=r["id"], valid_from=r["valid_from"],
                                  base_eur_kwh=r["base_eur_kwh"], peak_eur_kwh=r["peak_eur_kwh"],
                                  offpeak_eur_kwh=r["offpeak_eur_kwh"],
                                  offpeak_hours=r["offpeak_hours"], source=r["source"])
                   for r in tariff_rows]
    factor_list = [tariffs.Factor(id=r["id"], valid_from=r["valid_from"],
                                  kg_co2_per_kwh=r["kg_co2_per_kwh"], source=r["source"])
                   for r in factor_rows]
    out: list[tuple[Any, ...]] = []
    for d in result.days:
        price, tariff_id = tariffs.day_price(tariff_list, d.day)
        factor = tariffs.factor_on(factor_list, d.day)
        avoided = d.avoided_kwh
        out.append((d.day, d.observed_kwh, d.predicted_kwh, avoided,
                    None if price is None else avoided * price, avoided * factor.kg_co2_per_kwh,
                    tariff_id, factor.id, factor.source))
    return out


def _lighting(conn: psycopg.Connection, *, tenant: str | None, report: JobReport) -> None:
    """The lighting savings of the same pass (their own module decides what is new)."""
    from maillage.processors.savings import lighting

    try:
        report.lighting_rows = lighting.compute(conn, tenant_id=tenant)
    except NotImplementedError as exc:  # the lighting computation is built alongside
        report.lighting_error = str(exc)
        log.debug("lighting savings not available: %s", exc)


class SavingsJob:
    """`run_once` every `every_s` seconds on one connection, until stopped."""

    def __init__(self, database_url: str, *, every_s: float = EVERY_S) -> None:
        self.database_url = database_url
        self.every_s = every_s

    def _pass(self) -> JobReport:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            return run_once(conn)

    async def run(self, stop: asyncio.Event) -> None:
        """Pass, wait, repeat; database errors are logged and the next pass retries."""
        while not stop.is_set():
            try:
                report = await asyncio.to_thread(self._pass)
                if report.computed or report.insufficient:
                    log.info("savings pass: %s", report.as_dict())
            except psycopg.Error as exc:
                log.warning("savings pass failed, retrying: %s", exc)
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.every_s)
            except TimeoutError:
                pass
