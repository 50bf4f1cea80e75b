"""Canonical JSON on `…/up/json`: one record or a list of `{"ts", "seq"?, "values": {...}}`.

Lighting telemetry (see `lighting`): a record may carry a top-level `"status"` (streetlight
health), kept as `attrs["status"]`; with a status, `values` may be absent. Records of lighting
devices get their status and value ranges checked.
"""

from __future__ import annotations

import math
from itertools import repeat
from typing import Any

import orjson

from maillage.envelope import Envelope, SourceFormat
from maillage.errors import DlqReason, PayloadError
from maillage.ingest.formats import MessageContext, envelope, lighting
from maillage.ingest.formats.lighting import LIGHTING_TYPES
from maillage.ingest.formats.timestamps import parse_ts
from maillage.vocabulary import KNOWN, is_valid_name

MAX_RECORDS = 10_000


def parse(payload: bytes, ctx: MessageContext) -> list[Envelope]:
    """Parse canonical JSON into envelopes (unknown metric names kept and flagged)."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise PayloadError(DlqReason.MALFORMED, f"not JSON: {exc}") from exc
    records = doc if isinstance(doc, list) else [doc]
    if not records:
        raise PayloadError(DlqReason.INVALID_SCHEMA, "empty list")
    if len(records) > MAX_RECORDS:
        raise PayloadError(DlqReason.TOO_LARGE, f"{len(records)} records > {MAX_RECORDS}")
    if len(records) == 1:
        return [_record(records[0], 0, ctx)]
    return [_record(r, i, ctx) for i, r in enumerate(records)]


_FIELDS = frozenset({"ts", "seq", "values", "attrs", "status"})
_SCALARS = (str, int, float, bool, type(None))


def _record(rec: Any, index: int, ctx: MessageContext) -> Envelope:
    where = f"record {index}: " if index else ""
    if not isinstance(rec, dict):
        raise PayloadError(DlqReason.INVALID_SCHEMA, f"{where}expected an object")
    if not _FIELDS.issuperset(rec):
        extra = set(rec) - _FIELDS
        raise PayloadError(DlqReason.INVALID_SCHEMA, f"{where}unexpected fields {sorted(extra)}")
    if "ts" not in rec:
        raise PayloadError(DlqReason.INVALID_SCHEMA, f"{where}missing 'ts'")
    ts = parse_ts(rec["ts"])
    seq = rec.get("seq")
    if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int)):
        raise PayloadError(DlqReason.INVALID_SCHEMA, f"{where}'seq' must be an integer")
    raw = rec.get("values")
    if "status" in rec and raw is None:
        raw = {}  # a status-only report of a streetlight
    elif not isinstance(raw, dict) or not raw:
        raise PayloadError(DlqReason.INVALID_SCHEMA, f"{where}'values' must be a non-empty object")
    # Kept as parsed when made of canonical names and finite floats only, else read one by one.
    sound = (_known_superset(raw) and all(map(isinstance, raw.values(), _FLOATS))
             and _isfinite(sum(raw.values())))
    values = raw if sound else _values(raw, where)
    attrs = rec.get("attrs") or {}
    if not isinstance(attrs, dict) or (attrs and not all(isinstance(v, _SCALARS)
                                                         for v in attrs.values())):
        raise PayloadError(DlqReason.INVALID_SCHEMA, f"{where}'attrs' must map names to scalars")
    if "status" in rec:
        attrs = _with_status(rec["status"], attrs, where, ctx)
    if ctx.device_type in LIGHTING_TYPES:
        lighting.check_telemetry(values, attrs, where)
    if attrs and any(type(v) is int for v in attrs.values()):  # numbers as floats, as validated
        attrs = {k: float(v) if type(v) is int else v for k, v in attrs.items()}
    return envelope(ctx, _JSON, ts, values, attrs, seq=seq, canonical=sound)


_known_superset = KNOWN.issuperset
_isfinite = math.isfinite
_JSON = SourceFormat.JSON
_FLOATS = repeat(float)  # isinstance's second argument, as long as needed (orjson: exact floats)


def _values(raw: dict[str, Any], where: str) -> dict[str, float]:
    """The values checked one by one: raises on the first bad name or value."""
    values: dict[str, float] = {}
    for name, value in raw.items():
        if not is_valid_name(name):
            raise PayloadError(DlqReason.UNKNOWN_METRIC,
                               f"{where}metric name {name!r} is not valid")
        if isinstance(value, bool):
            value = 1.0 if value else 0.0
        if not isinstance(value, int | float) or not math.isfinite(value):
            raise PayloadError(DlqReason.BAD_VALUE,
                               f"{where}{name}={value!r} is not a finite number")
        values[name] = float(value)
    return values


def _with_status(status: Any, attrs: dict[str, Any], where: str,
                 ctx: MessageContext) -> dict[str, Any]:
    """Fold the top-level lighting `status` into the attributes."""
    if ctx.device_type is not None and not lighting.is_lighting(ctx.device_type):
        raise PayloadError(DlqReason.INVALID_SCHEMA,
                           f"{where}'status' is for lighting devices, not a {ctx.device_type}")
    lighting.check_status(status, where)
    if attrs.get("status", status) != status:
        raise PayloadError(DlqReason.INVALID_SCHEMA, f"{where}'status' and attrs.status differ")
    return {**attrs, "status": status}
