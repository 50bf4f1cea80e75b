"""`/v1/savings`: lighting and metered savings per area and period (JSON or CSV), the metered
savings projects, and the printable monthly report of a commune (HTML).

Admins and energy managers of the tenant only (an all-tenants admin names `?tenant=`). The
numbers are those the savings job stored (`maillage processor savings`, or `maillage savings
compute`): this route sums them over the asked local days, it computes nothing itself.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Callable
from datetime import date, timedelta
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, select_autoescape
from pydantic import BaseModel, Field

from maillage.api.deps import PrincipalDep, one_tenant, require_roles, tenant_scope
from maillage.db import savings as db
from maillage.registry.models import Role

router = APIRouter(prefix="/v1/savings", tags=["savings"],
                   dependencies=[require_roles(Role.ADMIN, Role.ENERGY_MANAGER)])

_templates = Environment(loader=PackageLoader("maillage.api", "templates"),
                         autoescape=select_autoescape(["html", "j2"]))
R = TypeVar("R")
CSV_FIELDS = ("kind", "cause", "kwh", "eur", "kg_co2", "uncertainty_kwh")


class ProjectIn(BaseModel):
    """A metered savings project: one meter, baseline and reporting periods (local dates, end
    exclusive; the gap between them is the blackout), one outdoor temperature source."""

    name: str = Field(min_length=1, max_length=200)
    meter: str = Field(description="Device id of a meter of the tenant (energy index readings)")
    baseline_start: date
    baseline_end: date
    reporting_start: date
    reporting_end: date | None = Field(None, description="Default: open, up to yesterday")
    temperature_device: str | None = Field(
        None, description="A device of the tenant with temperature_c readings")
    temperature_station: str | None = Field(
        None, description="A station imported with `maillage savings weather import`")
    metric: str = "energy_import_wh"


async def _in_thread(request: Request, fn: Callable[..., R], **kwargs: Any) -> R:
    """A synchronous `db.savings` function on a pooled connection, in a worker thread; its
    errors as HTTP answers (unknown: 404, conflict: 409, invalid: 422)."""

    def call() -> R:
        with request.app.state.sync_pool.connection() as conn:
            return fn(conn=conn, **kwargs)

    try:
        return await asyncio.to_thread(call)
    except LookupError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except db.ProjectConflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc


def _sum(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def summarise(*, tenant: str, level: str | None, name: str | None, start: date | None,
              end: date | None, lighting: list[dict[str, Any]],
              metered: list[dict[str, Any]]) -> dict[str, Any]:
    """The savings document: lighting by cause, metered by project (with uncertainty), totals.
    Projects are independent: their uncertainties add in quadrature."""
    light = [{"cause": r["cause"], "kwh": r["kwh"], "eur": r.get("eur"),
              "kg_co2": r.get("kg_co2")} for r in lighting]
    projects = [{k: r[k] for k in ("id", "name", "meter", "status", "message", "method", "days",
                                   "first_day", "last_day", "observed_kwh", "predicted_kwh",
                                   "kwh", "eur", "priced_days", "kg_co2", "uncertainty_kwh",
                                   "confidence", "baseline_start", "baseline_end",
                                   "reporting_start", "reporting_end", "factor_sources")}
                for r in metered]
    uncs = [p["uncertainty_kwh"] for p in projects if p["uncertainty_kwh"] is not None]
    light_kwh = sum(r["kwh"] or 0.0 for r in light)
    light_eur, light_co2 = _sum([r["eur"] for r in light]), _sum([r["kg_co2"] for r in light])
    metered_kwh = sum(p["kwh"] for p in projects)
    metered_eur, metered_co2 = _sum([p["eur"] for p in projects]), sum(p["kg_co2"] for p in projects)
    lighting_doc = {"kwh": light_kwh, "eur": light_eur, "kg_co2": light_co2, "by_cause": light}
    metered_doc = {"kwh": metered_kwh, "eur": metered_eur, "kg_co2": metered_co2,
                   "uncertainty_kwh": sum(u * u for u in uncs) ** 0.5 if uncs else None,
                   "confidence": next((p["confidence"] for p in projects if p["confidence"]), None),
                   "projects": projects}
    by_cause = [{"kind": "lighting", "cause": r["cause"], "kwh": r["kwh"], "eur": r["eur"],
                 "kg_co2": r["kg_co2"], "uncertainty_kwh": None} for r in light]
    by_cause += [{"kind": "metered", "cause": f"metered:{p['name']}", "kwh": p["kwh"],
                  "eur": p["eur"], "kg_co2": p["kg_co2"], "uncertainty_kwh": p["uncertainty_kwh"]}
                 for p in projects]
    return {"tenant": tenant, "area": level, "name": name, "from": start, "to": end,
            "total": {"kwh": light_kwh + metered_kwh, "eur": _sum([light_eur, metered_eur]),
                      "kg_co2": (light_co2 or 0.0) + metered_co2},
            "lighting": lighting_doc, "metered": metered_doc, "by_cause": by_cause}


async def _document(request: Request, *, tenant: str, level: str | None, name: str | None,
                    start: date | None, end: date | None) -> dict[str, Any]:
    if start and end and end <= start:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "'to' must be after 'from'")
    if (level is None) != (name is None):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            "give both area and name, or neither (the whole tenant)")
    args: dict[str, Any] = {"tenant": tenant, "level": level, "name": name, "start": start,
                            "end": end}
    metered = await _in_thread(request, db.metered_summary, **args)
    lighting = await _in_thread(request, db.lighting_summary, **args)
    return summarise(lighting=lighting, metered=metered, **args)


@router.get("", responses={200: {"content": {"text/csv": {}}, "description": "JSON, or CSV"}})
async def savings(
    request: Request, p: PrincipalDep,
    area: Annotated[Literal["commune", "district", "site"] | None, Query(
        description="Level of the area (default: the whole tenant)")] = None,
    name: Annotated[str | None, Query(description="The commune, district or site")] = None,
    from_: Annotated[date | None, Query(alias="from", description="First local day")] = None,
    to: Annotated[date | None, Query(description="Day after the last (exclusive)")] = None,
    format: Annotated[Literal["json", "csv"], Query(description="csv: one row per cause")] = "json",  # noqa: A002
    tenant: Annotated[str | None, Query(description="For all-tenants admins")] = None,
) -> Any:
    """Savings of an area over local days [from, to): lighting by cause, metered by project
    with its uncertainty; kWh, €, kg CO2."""
    doc = await _document(request, tenant=one_tenant(p, tenant), level=area, name=name,
                          start=from_, end=to)
    if format == "json":
        return doc
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CSV_FIELDS)
    for row in doc["by_cause"]:
        writer.writerow(["" if row[f] is None else row[f] for f in CSV_FIELDS])
    return Response(buf.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="savings.csv"'})


@router.get("/projects")
async def list_projects(request: Request, p: PrincipalDep,
                        tenant: Annotated[str | None, Query(
                            description="For all-tenants admins")] = None) -> dict[str, Any]:
    """Metered savings projects with the status of their last computation."""
    scope = tenant_scope(p, tenant)
    return {"items": await _in_thread(request, db.list_projects, tenant=scope)}


@router.post("/projects", status_code=status.HTTP_201_CREATED)
async def create_project(request: Request, p: PrincipalDep, body: ProjectIn,
                         tenant: Annotated[str | None, Query(
                             description="For all-tenants admins")] = None) -> dict[str, Any]:
    """Create a metered savings project (the savings job computes it at its next pass)."""
    return await _in_thread(request, db.add_project, tenant=one_tenant(p, tenant),
                            created_by=p.actor, **body.model_dump())


def _month(text: str) -> tuple[date, date]:
    try:
        first = date.fromisoformat(f"{text}-01")
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"month: {text!r} is not YYYY-MM") from exc
    following = (first + timedelta(days=32)).replace(day=1)
    return first, following


@router.get("/report", response_class=HTMLResponse)
async def report(
    request: Request, p: PrincipalDep,
    commune: Annotated[str, Query(min_length=1, description="The commune")],
    month: Annotated[str, Query(pattern=r"^\d{4}-\d{2}$", description="YYYY-MM")],
    tenant: Annotated[str | None, Query(description="For all-tenants admins")] = None,
) -> HTMLResponse:
    """The monthly savings report of a commune, as printable HTML."""
    scope = one_tenant(p, tenant)
    first, following = _month(month)
    doc = await _document(request, tenant=scope, level="commune", name=commune, start=first,
                          end=following)
    tariffs = await _in_thread(request, db.list_tariffs, tenant=scope)
    factors = await _in_thread(request, db.list_factors, tenant=scope)
    html = _templates.get_template("savings_report.html.j2").render(
        doc=doc, commune=commune, month=month, first=first, following=following,
        last=following - timedelta(days=1), tariffs=tariffs, factors=factors, tenant=scope)
    return HTMLResponse(html)
