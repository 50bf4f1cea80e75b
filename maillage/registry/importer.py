"""Reading a device list from CSV or GeoJSON (an asset-register export), all rows or none."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from maillage.errors import RegistryError
from maillage.registry.models import DeviceSpec

_FIELDS = set(DeviceSpec.model_fields)
MAX_REPORTED = 50


def _spec(raw: dict[str, Any], where: str, default_tenant: str | None,
          problems: list[str]) -> tuple[str, DeviceSpec] | None:
    """One row -> (tenant, spec); problems are collected with the row's location."""
    tenant = (raw.pop("tenant", None) or default_tenant or "").strip()
    if "id" in raw and "device_id" not in raw:
        raw["device_id"] = raw.pop("id")
    meta = dict(raw.pop("meta", None) or {})
    for key in [k for k in raw if k.startswith("meta.")]:
        value = raw.pop(key)
        if value not in (None, ""):
            meta[key[5:]] = value
    unknown = [k for k in raw if k not in _FIELDS]
    if unknown:
        problems.append(f"{where}: unknown column(s) {', '.join(sorted(unknown))} "
                        "(use meta.<name> for metadata)")
        return None
    if not tenant:
        problems.append(f"{where}: no tenant (add a tenant column or pass --tenant)")
        return None
    clean = {k: v for k, v in raw.items() if v not in (None, "")}
    try:
        return tenant, DeviceSpec(**clean, meta=meta)
    except ValidationError as exc:
        detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        problems.append(f"{where}: {detail}")
        return None


def load_devices(path: Path, *, default_tenant: str | None = None) -> list[tuple[str, DeviceSpec]]:
    """Parse a CSV (header row) or GeoJSON FeatureCollection; RegistryError lists every bad row."""
    text = path.read_text(encoding="utf-8-sig")
    problems: list[str] = []
    items: list[tuple[str, DeviceSpec]] = []
    if path.suffix.lower() in (".geojson", ".json"):
        rows = _geojson_rows(text, problems)
    else:
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames or "device_id" not in reader.fieldnames and "id" not in reader.fieldnames:
            raise RegistryError(f"{path}: the header must have a device_id column")
        # Line numbers count the header as line 1.
        rows = [(f"line {i}", dict(r)) for i, r in enumerate(reader, start=2)]
    seen: dict[tuple[str, str], str] = {}
    for where, raw in rows:
        got = _spec(raw, where, default_tenant, problems)
        if got is None:
            continue
        key = (got[0], got[1].device_id)
        if key in seen:
            problems.append(f"{where}: device {key[0]}/{key[1]} already at {seen[key]}")
            continue
        seen[key] = where
        items.append(got)
    if problems:
        shown = problems[:MAX_REPORTED]
        more = f"\n… and {len(problems) - MAX_REPORTED} more" if len(problems) > MAX_REPORTED else ""
        raise RegistryError(f"{path}: {len(problems)} bad row(s), nothing imported:\n"
                            + "\n".join(shown) + more)
    if not items:
        raise RegistryError(f"{path}: no devices")
    return items


def _geojson_rows(text: str, problems: list[str]) -> list[tuple[str, dict[str, Any]]]:
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise RegistryError(f"not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise RegistryError("GeoJSON: expected a FeatureCollection")
    rows: list[tuple[str, dict[str, Any]]] = []
    for i, feat in enumerate(doc.get("features") or []):
        where = f"feature {i}"
        props = dict((feat or {}).get("properties") or {})
        geom = (feat or {}).get("geometry")
        if geom:
            coords = geom.get("coordinates") if isinstance(geom, dict) else None
            if not (isinstance(geom, dict) and geom.get("type") == "Point" and isinstance(coords, list)
                    and len(coords) >= 2):
                problems.append(f"{where}: geometry must be a Point [lon, lat]")
                continue
            props["lon"], props["lat"] = coords[0], coords[1]
        rows.append((where, props))
    return rows
