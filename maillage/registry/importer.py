"""Reading a device list from CSV or GeoJSON (an asset-register export), all rows or none.

CSV: a header row naming `DeviceSpec` fields (`device_id` or `id`, `type`, `lat`, `lon`, `site`,
`commune`, …), an optional `tenant` column, and `meta.<name>` columns for metadata (kept as text).
Commas, semicolons (French spreadsheet exports) or tabs separate fields; with semicolons a decimal
comma is read in `lat`/`lon`. The file must be UTF-8. Bad rows are reported with their line number
in the file (a quoted field may span lines), every one of them, and nothing is returned.

GeoJSON: a FeatureCollection of Point features, the properties as the CSV columns; bad features
are reported by position (`feature 0` is the first) and id.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from maillage.errors import RegistryError
from maillage.registry.models import DeviceSpec

_FIELDS = set(DeviceSpec.model_fields)
MAX_REPORTED = 50
_DECIMAL_COMMA = re.compile(r"-?\d+,\d+")


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
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RegistryError(f"{path}: not UTF-8 text (byte {exc.start}); export the file as "
                            "CSV UTF-8 or GeoJSON") from exc
    problems: list[str] = []
    items: list[tuple[str, DeviceSpec]] = []
    if path.suffix.lower() in (".geojson", ".json"):
        rows = _geojson_rows(text, problems)
    else:
        rows = _csv_rows(text, path, problems)
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


def _csv_rows(text: str, path: Path, problems: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """(`line N`, row) for each record; N is the file line where the record starts."""
    header = text.split("\n", 1)[0]
    delimiter = max((",", ";", "\t"), key=header.count)
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    names = [n.strip() for n in reader.fieldnames or []]
    if "device_id" not in names and "id" not in names:
        raise RegistryError(f"{path}: the header must have a device_id column")
    reader.fieldnames = names
    lines = text.split("\n")  # as StringIO splits them, so that line numbers agree
    rows: list[tuple[str, dict[str, Any]]] = []
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise RegistryError(f"{path}: line {start}: {exc}") from exc
        # A record may span lines (quoted newlines) and blank lines are skipped: report the line
        # where it starts.
        while start < reader.line_num and not lines[start - 1].strip():
            start += 1
        if None in row:
            problems.append(f"line {start}: {len(row[None])} more field(s) than the header has")
            continue
        clean = {k: v.strip() if isinstance(v, str) else v for k, v in row.items()}
        if delimiter == ";":
            for key in ("lat", "lon"):
                value = clean.get(key)
                if isinstance(value, str) and _DECIMAL_COMMA.fullmatch(value):
                    clean[key] = value.replace(",", ".")
        rows.append((f"line {start}", clean))
    return rows


def _geojson_rows(text: str, problems: list[str]) -> list[tuple[str, dict[str, Any]]]:
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise RegistryError(f"not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise RegistryError("GeoJSON: expected a FeatureCollection")
    features = doc.get("features") or []
    if not isinstance(features, list):
        raise RegistryError("GeoJSON: 'features' must be a list")
    rows: list[tuple[str, dict[str, Any]]] = []
    for i, feat in enumerate(features):
        where = f"feature {i}"
        if not isinstance(feat, dict) or not isinstance(feat.get("properties") or {}, dict):
            problems.append(f"{where}: expected a Feature object with properties")
            continue
        props = dict(feat.get("properties") or {})
        ident = props.get("device_id", props.get("id"))
        if ident is not None:
            where += f" ({str(ident)[:40]})"
        geom = feat.get("geometry")
        if geom:
            coords = geom.get("coordinates") if isinstance(geom, dict) else None
            if not (isinstance(geom, dict) and geom.get("type") == "Point" and isinstance(coords, list)
                    and len(coords) >= 2):
                problems.append(f"{where}: geometry must be a Point [lon, lat]")
                continue
            props["lon"], props["lat"] = coords[0], coords[1]
        rows.append((where, props))
    return rows
