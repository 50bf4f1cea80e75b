"""Shaping of the open data exports: rows to JSON, CSV and GeoJSON (RFC 7946), each with its licence.

Everything published carries the Licence Ouverte 2.0 (Etalab): a `licence` member in JSON and
GeoJSON, a `licence` column in CSV. Rows come from `maillage.db.opendata`, which already keeps
out care devices, household-level data and residential groups under the threshold.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

LICENCE = {
    "name": "Licence Ouverte / Open Licence version 2.0 (Etalab)",
    "spdx": "etalab-2.0",
    "url": "https://www.etalab.gouv.fr/licence-ouverte-open-licence/",
}
LICENCE_CELL = f"{LICENCE['name']} {LICENCE['url']}"

DEFAULT_MIN_HOUSEHOLDS = 10
"""Fewest residential meters in a published aggregate: the rule French energy distributors apply
to their local open data (décret n° 2016-973: residential aggregates over at least 10 delivery
points; their per-address file leaves out buildings of fewer than 10 dwellings)."""
MIN_HOUSEHOLDS_FLOOR = 3
"""Below 3, one of the households could subtract its own consumption and read the other's."""

COORD_DECIMALS = 6  # about 10 cm: RFC 7946, section 11.2, says more is rarely meaningful


@dataclass(frozen=True)
class Dataset:
    """One published dataset: its name in the URL, title, and columns (CSV order)."""

    name: str
    title: str
    description: str
    columns: tuple[str, ...]
    geo: bool = False


MONTHLY_COLUMNS = ("commune", "month", "energy_kwh", "complete")
DATASETS = {d.name: d for d in (
    Dataset("lighting-consumption", "Consommation de l'éclairage public par commune et par mois",
            "kWh consumed by the public lighting (streetlights) of each commune, per local month.",
            (*MONTHLY_COLUMNS, "lamps")),
    Dataset("public-buildings-consumption",
            "Consommation des bâtiments publics par commune et par mois",
            "kWh consumed by the meters of public buildings of each commune, per local month.",
            (*MONTHLY_COLUMNS, "meters")),
    Dataset("residential-consumption", "Consommation résidentielle par commune et par mois",
            "kWh consumed by the residential meters of each commune, per local month; a month of a "
            "commune with fewer households than the statistical-secrecy threshold is not published.",
            (*MONTHLY_COLUMNS, "households")),
    Dataset("lighting-savings", "Économies d'énergie de l'éclairage public par commune et par mois",
            "kWh the public lighting of each commune would have used as first installed, used, "
            "and saved (LED retrofit, dimming, night switch-off, presence detection, other), in "
            "kWh, euros and kg CO2, per month of the nights.",
            ("commune", "month", "reference_kwh", "measured_kwh", "saved_kwh", "led_retrofit_kwh",
             "dimming_kwh", "switch_off_kwh", "presence_kwh", "other_kwh", "saved_eur",
             "saved_kg_co2", "complete", "lamps")),
    Dataset("streetlights", "Inventaire des points lumineux",
            "The streetlights: commune, street, technology, nominal power, cabinet, location.",
            ("id", "commune", "district", "street", "lamp_tech", "nominal_power_w", "cabinet",
             "installed_on", "status", "lon", "lat"), geo=True),
)}
COUNT_COLUMN = {"lighting-consumption": "lamps", "public-buildings-consumption": "meters",
                "residential-consumption": "households"}


def monthly_items(dataset: str, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of `db.opendata.monthly_consumption` as published items (kWh to the Wh)."""
    count = COUNT_COLUMN[dataset]
    return [{"commune": r["commune"], "month": r["month"],
             "energy_kwh": round(float(r["energy_kwh"]), 3), "complete": bool(r["complete"]),
             count: int(r["devices"])} for r in rows]


SAVINGS_KWH = ("reference_kwh", "measured_kwh", "saved_kwh", "led_retrofit_kwh", "dimming_kwh",
               "switch_off_kwh", "presence_kwh", "other_kwh")


def savings_items(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of `db.opendata.lighting_savings_monthly` as published items."""
    return [{"commune": r["commune"], "month": r["month"],
             **{k: round(float(r[k]), 3) for k in SAVINGS_KWH},
             "saved_eur": None if r["saved_eur"] is None else round(float(r["saved_eur"]), 2),
             "saved_kg_co2": round(float(r["saved_kg_co2"]), 3),
             "complete": bool(r["complete"]), "lamps": int(r["devices"])} for r in rows]


def inventory_items(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of `db.opendata.streetlights` as published items."""
    out = []
    for r in rows:
        installed: datetime | None = r["installed_at"]
        out.append({
            "id": r["device_id"], "commune": r["commune"], "district": r["district"],
            "street": r["street"], "lamp_tech": r["lamp_tech"],
            "nominal_power_w": r["nominal_power_w"], "cabinet": r["cabinet"],
            "installed_on": installed.date().isoformat() if installed else None,
            "status": r["status"],
            "lon": None if r["lon"] is None else round(float(r["lon"]), COORD_DECIMALS),
            "lat": None if r["lat"] is None else round(float(r["lat"]), COORD_DECIMALS),
        })
    return out


def as_json(dataset: Dataset, tenant: str, items: list[dict[str, Any]],
            **extra: Any) -> dict[str, Any]:
    """`{"dataset", "title", "description", "publisher", "licence", …extra, "items"}`."""
    return {"dataset": dataset.name, "title": dataset.title, "description": dataset.description,
            "publisher": tenant, "licence": LICENCE, **extra, "items": items}


def as_csv(dataset: Dataset, items: list[dict[str, Any]]) -> str:
    """CSV (comma, header row) of the dataset's columns plus a `licence` column on every row."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")  # RFC 4180 line breaks
    writer.writerow([*dataset.columns, "licence"])
    for item in items:
        writer.writerow([_cell(item.get(c)) for c in dataset.columns] + [LICENCE_CELL])
    return buf.getvalue()


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def as_geojson(dataset: Dataset, tenant: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    """An RFC 7946 FeatureCollection: WGS 84 [lon, lat] points (null geometry for a lamp without
    a location), no `crs` member; the licence and the publisher are foreign members."""
    features = []
    for item in items:
        props = {k: v for k, v in item.items() if k not in ("id", "lon", "lat")}
        located = item["lon"] is not None and item["lat"] is not None
        features.append({
            "type": "Feature", "id": item["id"],
            "geometry": {"type": "Point", "coordinates": [item["lon"], item["lat"]]}
            if located else None,
            "properties": props,
        })
    return {"type": "FeatureCollection", "name": dataset.name, "publisher": tenant,
            "licence": LICENCE, "features": features}
