"""SenML JSON packs on `…/up/senml` (RFC 8428, units of RFC 8428/8798).

Records are resolved as RFC 8428 says: base name, time and unit carry over to the following
records until replaced; times are seconds, `bt + t`, relative to the receive time when below
2**28; `bver` above 10 is `unsupported_format`, and so is any unknown field ending in `_`
(must-understand). Base value/sum are added to records that carry `v`/`s` (a record with no
value field at all takes the base value, or the base sum). A record with nothing but base fields
only sets bases.

Values: `v` -> a metric, converted to its unit (`kW`, `kWh` x1000...); `vb` -> 0/1; `vs`/`vd` ->
`attrs[short name]`. A sum `s` of power (`W`, W·s) becomes `energy_import_wh` (/3600); for an
energy unit (`Wh`, `kWh`, `J`) `s`, when present, is read as the index. How a record picks its
metric is in `senml_units`: a record whose name and unit both fail to map rejects the whole
pack with `unknown_metric` naming the record, rather than storing a value we cannot interpret.

Records at different times give one envelope per distinct time. A pack naming several devices
(several name prefixes), or any pack of a `care_hub`, gives one envelope per time and name
prefix, with `attrs["sensor"]` = the prefix's last segment (`urn:dev:mac:<id>:temp`,
`<hub>/<id>/temp`); the gateway re-keys those after checking the registry.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from maillage.envelope import EPOCH, Envelope, SourceFormat
from maillage.errors import DlqReason, PayloadError
from maillage.ingest.formats import MessageContext, envelope, lighting
from maillage.ingest.formats.common import MAX_TEXT, Scalar, load_json
from maillage.ingest.formats.senml_units import UNITS, pick_metric, split_name
from maillage.metrics import Metric

MAX_RECORDS = 10_000
SENML_VERSION = 10
RELATIVE_LIMIT = 2**28
NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-:./_")
_BASES = ("bn", "bt", "bu", "bv", "bs", "bver")
_KNOWN_FIELDS = frozenset(_BASES + ("n", "u", "v", "vs", "vb", "vd", "s", "t", "ut", "l"))
_VALUE_FIELDS = ("v", "vs", "vb", "vd")


@dataclass
class _Bases:
    """The base fields in effect while walking the pack."""

    name: str = ""
    time: float = 0.0
    unit: str | None = None
    value: float | None = None
    sum: float | None = None
    version: int | None = None


@dataclass(frozen=True, slots=True)
class _Record:
    """One record with the bases applied."""

    where: str
    ts: datetime
    prefix: str
    short: str
    unit: str | None
    value: float | None = None
    sum: float | None = None
    text: str | None = None


@dataclass
class _Group:
    """What goes into one envelope."""

    values: dict[str, float] = field(default_factory=dict)
    attrs: dict[str, Scalar] = field(default_factory=dict)


def parse(payload: bytes, ctx: MessageContext) -> list[Envelope]:
    """Parse a SenML pack into one envelope per measurement time (and relayed sensor)."""
    pack = load_json(payload)
    if not isinstance(pack, list) or not pack:
        raise PayloadError(DlqReason.INVALID_SCHEMA, "a SenML pack is a non-empty JSON array")
    if len(pack) > MAX_RECORDS:
        raise PayloadError(DlqReason.TOO_LARGE, f"{len(pack)} records > {MAX_RECORDS}")
    bases = _Bases()
    resolved: list[_Record] = []
    for index, rec in enumerate(pack):
        where = f"record {index}"
        if not isinstance(rec, dict):
            raise PayloadError(DlqReason.INVALID_SCHEMA, f"{where}: expected an object")
        _check_fields(rec, where)
        _update_bases(bases, rec, where)
        if set(rec) <= set(_BASES):
            continue  # a record that only sets bases
        name = bases.name + _text(rec, "n", where, "")
        if not name or name[0] not in NAME_CHARS - set("-:./_") or not set(name) <= NAME_CHARS:
            raise PayloadError(DlqReason.INVALID_SCHEMA, f"{where}: bad name {name[:80]!r}")
        ts = _time(bases.time + _number(rec, "t", where, 0.0), ctx.received_at, where)
        resolved.append(_resolve(rec, bases, where, ts, name))
    if not resolved:
        raise PayloadError(DlqReason.INVALID_SCHEMA, "the pack has no measurement")
    relayed = ctx.device_type == "care_hub" or len({r.prefix for r in resolved}) > 1
    groups: dict[tuple[datetime, str], _Group] = {}
    for rec in resolved:
        _add_record(groups.setdefault((rec.ts, rec.prefix if relayed else ""), _Group()), rec)
    return [_envelope(ts, prefix, group, ctx) for (ts, prefix), group in sorted(groups.items())]


def _check_fields(rec: dict[str, Any], where: str) -> None:
    """Reject must-understand extensions and records with several values."""
    for key in rec:
        if key.endswith("_") and key not in _KNOWN_FIELDS:
            raise PayloadError(DlqReason.UNSUPPORTED_FORMAT,
                               f"{where}: must-understand field {key[:40]!r} is not supported")
    if sum(k in rec for k in _VALUE_FIELDS) > 1:
        raise PayloadError(DlqReason.INVALID_SCHEMA, f"{where}: more than one value field")


def _update_bases(bases: _Bases, rec: dict[str, Any], where: str) -> None:
    """Apply the record's base fields to the running bases."""
    if "bver" in rec:
        version = rec["bver"]
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise PayloadError(DlqReason.INVALID_SCHEMA, f"{where}: bver must be a positive integer")
        if version > SENML_VERSION:
            raise PayloadError(DlqReason.UNSUPPORTED_FORMAT, f"{where}: SenML version {version}")
        if bases.version not in (None, version):
            raise PayloadError(DlqReason.INVALID_SCHEMA, f"{where}: records of different versions")
        bases.version = version
    if "bn" in rec:
        bases.name = _text(rec, "bn", where, "")
    if "bt" in rec:
        bases.time = _number(rec, "bt", where, 0.0, DlqReason.BAD_TIMESTAMP)
    if "bu" in rec:
        bases.unit = _text(rec, "bu", where, "") or None
    if "bv" in rec:
        bases.value = _number(rec, "bv", where, 0.0)
    if "bs" in rec:
        bases.sum = _number(rec, "bs", where, 0.0)


def _resolve(rec: dict[str, Any], bases: _Bases, where: str, ts: datetime, name: str) -> _Record:
    """The record's unit, value, sum or text with the bases applied."""
    prefix, short = split_name(name)
    unit = _text(rec, "u", where, "") or bases.unit
    has_value = any(k in rec for k in _VALUE_FIELDS)
    value = total = text = None
    if "v" in rec or (not has_value and "s" not in rec and bases.value is not None):
        value = (bases.value or 0.0) + _number(rec, "v", where, 0.0)
    if "s" in rec or (not has_value and value is None and bases.sum is not None):
        total = (bases.sum or 0.0) + _number(rec, "s", where, 0.0)
    if "vb" in rec:
        if not isinstance(rec["vb"], bool):
            raise PayloadError(DlqReason.INVALID_SCHEMA, f"{where}: vb must be a boolean")
        value, unit = (1.0 if rec["vb"] else 0.0), None  # a boolean has no unit to convert
    for key in ("vs", "vd"):
        if key in rec:
            text = _text(rec, key, where, "")
            if len(text) > MAX_TEXT:
                raise PayloadError(DlqReason.INVALID_SCHEMA, f"{where}: text longer than {MAX_TEXT}")
    if value is None and total is None and text is None:
        raise PayloadError(DlqReason.INVALID_SCHEMA, f"{where}: no value and no sum")
    return _Record(where, ts, prefix.rstrip(":/._-"), short, unit, value, total, text)


def _add_record(group: _Group, rec: _Record) -> None:
    """Put one resolved record's value, sum or text into its envelope."""
    if rec.text is not None:
        _put(group.attrs, rec.short or "value", rec.text, rec.where)
        return
    unit = UNITS.get(rec.unit or "")
    total = rec.sum
    if total is not None and unit is not None and unit.base == "W":  # integral of power: W·s
        energy = Metric.ENERGY_EXPORT_WH if "export" in rec.short else Metric.ENERGY_IMPORT_WH
        _put(group.values, energy, unit.convert(total) / 3600.0, rec.where)
        if rec.value is None:
            return
        total = None
    if total is not None and (unit is None or unit.base != "Wh"):
        raise PayloadError(DlqReason.UNKNOWN_METRIC,
                           f"{rec.where}: a sum in {rec.unit!r} has no canonical metric")
    metric, conversion = pick_metric(rec.short, rec.unit, rec.where)
    raw = total if total is not None else rec.value  # an energy index may come as a sum
    assert raw is not None  # _resolve guarantees a value, a sum or a text
    _put(group.values, metric, conversion.convert(raw) if conversion else raw, rec.where)


def _put(target: dict[str, Any], key: str, value: Any, where: str) -> None:
    if key in target:
        raise PayloadError(DlqReason.INVALID_SCHEMA,
                           f"{where}: a second value for {key!r} at the same time")
    if isinstance(value, float) and not math.isfinite(value):
        raise PayloadError(DlqReason.BAD_VALUE, f"{where}: {key} is not a finite number")
    target[str(key)] = value  # a Metric as its plain name (details above show its repr)


def _envelope(ts: datetime, prefix: str, group: _Group, ctx: MessageContext) -> Envelope:
    attrs = dict(group.attrs)
    if prefix:  # the relayed sensor: the last segment of its name prefix (a MAC, an id)
        attrs["sensor"] = re.split("[:/]", prefix)[-1] or prefix

    if lighting.is_lighting(ctx.device_type):
        lighting.check_telemetry(group.values, attrs)
    return envelope(ctx, SourceFormat.SENML, ts, group.values, attrs)


def _time(seconds: float, now: datetime, where: str) -> datetime:
    """RFC 8428 time: absolute epoch seconds from 2**28 on, else relative to now."""
    try:
        if seconds < RELATIVE_LIMIT:
            return now + timedelta(seconds=seconds)
        return EPOCH + timedelta(seconds=seconds)
    except OverflowError as exc:
        raise PayloadError(DlqReason.BAD_TIMESTAMP, f"{where}: time {seconds} out of range") from exc


def _number(rec: dict[str, Any], key: str, where: str, default: float,
            reason: DlqReason = DlqReason.INVALID_SCHEMA) -> float:
    value = rec.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        if key == "t":
            reason = DlqReason.BAD_TIMESTAMP
        raise PayloadError(reason, f"{where}: {key} must be a finite number")
    return float(value)


def _text(rec: dict[str, Any], key: str, where: str, default: str) -> str:
    value = rec.get(key, default)
    if not isinstance(value, str):
        raise PayloadError(DlqReason.INVALID_SCHEMA, f"{where}: {key} must be a string")
    return value
