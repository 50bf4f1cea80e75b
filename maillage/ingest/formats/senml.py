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
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from maillage.envelope import EPOCH, Envelope, SourceFormat
from maillage.errors import DlqReason, PayloadError
from maillage.ingest.formats import MessageContext, envelope, lighting
from maillage.ingest.formats.common import MAX_TEXT, Scalar, load_json
from maillage.ingest.formats.senml_units import UNITS, Unit, pick_metric, split_name
from maillage.vocabulary import Metric

MAX_RECORDS = 10_000
SENML_VERSION = 10
RELATIVE_LIMIT = 2**28
NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-:./_")
_NAME_FIRST = NAME_CHARS - set("-:./_")
_BASES = ("bn", "bt", "bu", "bv", "bs", "bver")
_BASE_SET = frozenset(_BASES)
_KNOWN_FIELDS = frozenset(_BASES + ("n", "u", "v", "vs", "vb", "vd", "s", "t", "ut", "l"))
_VALUE_FIELDS = ("v", "vs", "vb", "vd")
_CACHE_SIZE = 4096


@dataclass(slots=True)
class _Bases:
    """The base fields in effect while walking the pack."""

    name: str = ""
    time: float = 0.0
    unit: str | None = None
    value: float | None = None
    sum: float | None = None
    version: int | None = None


_Record = tuple[int, datetime, str, str, "str | None", "float | None", "float | None", "str | None"]
"""One record with the bases applied: (index, time, name prefix, short name, unit, value, sum,
text)."""
_Group = tuple[dict[str, float], dict[str, Scalar]]
"""What goes into one envelope: its values and attributes."""


def parse(payload: bytes, ctx: MessageContext) -> list[Envelope]:
    """Parse a SenML pack into one envelope per measurement time (and relayed sensor)."""
    pack = load_json(payload)
    if not isinstance(pack, list) or not pack:
        raise PayloadError(DlqReason.INVALID_SCHEMA, "a SenML pack is a non-empty JSON array")
    if len(pack) > MAX_RECORDS:
        raise PayloadError(DlqReason.TOO_LARGE, f"{len(pack)} records > {MAX_RECORDS}")
    simple = _simple_pack(pack, ctx)
    if simple is not None:
        return simple
    bases = _Bases()
    resolved: list[_Record] = []
    times: dict[float, datetime] = {}  # a pack's records mostly share one time
    for index, rec in enumerate(pack):
        if not isinstance(rec, dict):
            raise PayloadError(DlqReason.INVALID_SCHEMA, f"{_at(index)}: expected an object")
        _check_fields(rec, index)
        if not _BASE_SET.isdisjoint(rec):
            _update_bases(bases, rec, index)
            if _BASE_SET.issuperset(rec):
                continue  # a record that only sets bases
        elif not rec:
            continue
        prefix, short = _name(bases.name + _text(rec, "n", index), index)
        seconds = bases.time + (_number(rec, "t", index) if "t" in rec else 0.0)
        ts = times.get(seconds)
        if ts is None:
            ts = times[seconds] = _time(seconds, ctx.received_at, index)
        resolved.append(_resolve(rec, bases, index, ts, prefix, short))
    if not resolved:
        raise PayloadError(DlqReason.INVALID_SCHEMA, "the pack has no measurement")
    relayed = ctx.device_type == "care_hub" or len({r[2] for r in resolved}) > 1
    groups: dict[tuple[datetime, str], _Group] = {}
    for rec in resolved:
        key = (rec[1], rec[2] if relayed else "")
        group = groups.get(key)
        if group is None:
            group = groups[key] = ({}, {})
        _add_record(group, rec)
    return _envelopes(groups, ctx)


def _envelopes(groups: dict[tuple[datetime, str], _Group], ctx: MessageContext) -> list[Envelope]:
    """One envelope per group, by time then name prefix."""
    if len(groups) == 1:
        return [_envelope(ts, prefix, group, ctx) for (ts, prefix), group in groups.items()]
    return [_envelope(ts, prefix, group, ctx) for (ts, prefix), group in sorted(groups.items())]


_SIMPLE_FIELDS = frozenset({"bn", "bt", "bu", "n", "u", "v", "t"})


def _simple_pack(pack: list[Any], ctx: MessageContext) -> list[Envelope] | None:
    """The envelopes of a pack made only of numeric records (`n`, `u`, `v`, `t` and base name,
    time and unit) whose names and units resolved before and whose values are finite, as the
    general walk below would make them; None for any other pack, or at the first doubt."""
    base_name, base_time, base_unit = "", 0.0, None
    times: dict[float, datetime] = {}
    groups: dict[tuple[datetime, str], _Group] = {}
    for rec in pack:
        if type(rec) is not dict or "v" not in rec or not _SIMPLE_FIELDS.issuperset(rec):
            return None
        if "bn" in rec:
            base_name = rec["bn"]
            if type(base_name) is not str:
                return None
        if "bt" in rec:
            bt = _plain_number(rec["bt"])
            if bt is None:
                return None
            base_time = bt
        if "bu" in rec:
            unit = rec["bu"]
            if type(unit) is not str:
                return None
            base_unit = unit or None
        name = rec.get("n", "")
        found = _NAMES.get(base_name + name) if type(name) is str else None
        offset = _plain_number(rec["t"]) if "t" in rec else 0.0
        unit = rec.get("u", "")
        value = _plain_number(rec["v"])
        if found is None or offset is None or type(unit) is not str or value is None:
            return None
        picked = _PICKED.get((found[1], unit or base_unit))
        seconds = base_time + offset
        ts = times.get(seconds)
        if ts is None:
            try:
                ts = times[seconds] = _time(seconds, ctx.received_at, 0)
            except PayloadError:  # out of range: the general walk says where
                return None
        if picked is None:
            return None
        metric, conversion, _ = picked
        value = 0.0 + value  # as the general walk adds the (absent) base value
        if conversion is not None:
            value = conversion.convert(value)
            if not math.isfinite(value):
                return None
        key = (ts, found[0])
        group = groups.get(key)
        if group is None:
            group = groups[key] = ({}, {})
        if metric in group[0]:
            return None
        group[0][metric] = value
    if ctx.device_type != "care_hub" and len({prefix for _, prefix in groups}) == 1:
        groups = {(ts, ""): group for (ts, _), group in groups.items()}
    return _envelopes(groups, ctx)


def _plain_number(value: object) -> float | None:
    """A finite number as a float; None for anything else (booleans included)."""
    if type(value) is float:
        return value if math.isfinite(value) else None
    if type(value) is int:
        try:
            return float(value)
        except OverflowError:
            return None
    return None


def _at(index: int) -> str:
    return f"record {index}"


def _check_fields(rec: dict[str, Any], index: int) -> None:
    """Reject must-understand extensions and records with several values."""
    if not _KNOWN_FIELDS.issuperset(rec):
        for key in rec:
            if key.endswith("_") and key not in _KNOWN_FIELDS:
                raise PayloadError(DlqReason.UNSUPPORTED_FORMAT,
                                   f"{_at(index)}: must-understand field {key[:40]!r} is not supported")
    if ("v" in rec) + ("vs" in rec) + ("vb" in rec) + ("vd" in rec) > 1:
        raise PayloadError(DlqReason.INVALID_SCHEMA, f"{_at(index)}: more than one value field")


def _update_bases(bases: _Bases, rec: dict[str, Any], index: int) -> None:
    """Apply the record's base fields to the running bases."""
    if "bver" in rec:
        version = rec["bver"]
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise PayloadError(DlqReason.INVALID_SCHEMA,
                               f"{_at(index)}: bver must be a positive integer")
        if version > SENML_VERSION:
            raise PayloadError(DlqReason.UNSUPPORTED_FORMAT,
                               f"{_at(index)}: SenML version {version}")
        if bases.version not in (None, version):
            raise PayloadError(DlqReason.INVALID_SCHEMA,
                               f"{_at(index)}: records of different versions")
        bases.version = version
    if "bn" in rec:
        bases.name = _text(rec, "bn", index)
    if "bt" in rec:
        bases.time = _number(rec, "bt", index, DlqReason.BAD_TIMESTAMP)
    if "bu" in rec:
        bases.unit = _text(rec, "bu", index) or None
    if "bv" in rec:
        bases.value = _number(rec, "bv", index)
    if "bs" in rec:
        bases.sum = _number(rec, "bs", index)


_NAMES: dict[str, tuple[str, str]] = {}


def _name(name: str, index: int) -> tuple[str, str]:
    """A checked resolved name as (prefix without its trailing separators, short name)."""
    found = _NAMES.get(name)
    if found is None:
        if not name or name[0] not in _NAME_FIRST or not NAME_CHARS.issuperset(name):
            raise PayloadError(DlqReason.INVALID_SCHEMA, f"{_at(index)}: bad name {name[:80]!r}")
        prefix, short = split_name(name)
        found = (prefix.rstrip(":/._-"), short)
        if len(_NAMES) >= _CACHE_SIZE:
            _NAMES.clear()
        _NAMES[name] = found
    return found


def _resolve(rec: dict[str, Any], bases: _Bases, index: int, ts: datetime, prefix: str,
             short: str) -> _Record:
    """The record's unit, value, sum or text with the bases applied."""
    unit = (_text(rec, "u", index) if "u" in rec else "") or bases.unit
    has_value = "v" in rec or "vs" in rec or "vb" in rec or "vd" in rec
    value = total = text = None
    if "v" in rec or (not has_value and "s" not in rec and bases.value is not None):
        value = (bases.value or 0.0) + (_number(rec, "v", index) if "v" in rec else 0.0)
    if "s" in rec or (not has_value and value is None and bases.sum is not None):
        total = (bases.sum or 0.0) + (_number(rec, "s", index) if "s" in rec else 0.0)
    if has_value and "v" not in rec:
        if "vb" in rec:
            if not isinstance(rec["vb"], bool):
                raise PayloadError(DlqReason.INVALID_SCHEMA, f"{_at(index)}: vb must be a boolean")
            value, unit = (1.0 if rec["vb"] else 0.0), None  # a boolean has no unit to convert
        for key in ("vs", "vd"):
            if key in rec:
                text = _text(rec, key, index)
                if len(text) > MAX_TEXT:
                    raise PayloadError(DlqReason.INVALID_SCHEMA,
                                       f"{_at(index)}: text longer than {MAX_TEXT}")
    if value is None and total is None and text is None:
        raise PayloadError(DlqReason.INVALID_SCHEMA, f"{_at(index)}: no value and no sum")
    return (index, ts, prefix, short, unit, value, total, text)


_Picked = tuple[str, "Unit | None", object]
"""A record's metric as a plain name, the unit to convert with, and the metric as `pick_metric`
named it (a `Metric` or a str: rejection details show its repr)."""
_PICKED: dict[tuple[str, str | None], _Picked] = {}
_ENERGY: dict[bool, _Picked] = {key: (str(m), None, m) for key, m in ((True, Metric.ENERGY_EXPORT_WH),
                                                   (False, Metric.ENERGY_IMPORT_WH))}


def _add_record(group: _Group, rec: _Record) -> None:
    """Put one resolved record's value, sum or text into its envelope."""
    index, _, _, short, unit_text, value, total, text = rec
    if text is not None:
        _put(group[1], short or "value", text, index)
        return
    unit = UNITS.get(unit_text or "")
    if total is not None and unit is not None and unit.base == "W":  # integral of power: W·s
        energy, _, energy_shown = _ENERGY["export" in short]
        _put(group[0], energy, unit.convert(total) / 3600.0, index, energy_shown)
        if value is None:
            return
        total = None
    if total is not None and (unit is None or unit.base != "Wh"):
        raise PayloadError(DlqReason.UNKNOWN_METRIC,
                           f"{_at(index)}: a sum in {unit_text!r} has no canonical metric")
    picked = _PICKED.get((short, unit_text))
    if picked is None:
        metric, conversion = pick_metric(short, unit_text, _at(index))
        picked = (str(metric), conversion, metric)
        if len(_PICKED) >= _CACHE_SIZE:
            _PICKED.clear()
        _PICKED[(short, unit_text)] = picked
    name, conversion, shown = picked
    raw = total if total is not None else value  # an energy index may come as a sum
    assert raw is not None  # _resolve guarantees a value, a sum or a text
    _put(group[0], name, conversion.convert(raw) if conversion else raw, index, shown)


def _put(target: dict[str, Any], key: str, value: Any, index: int, shown: object = None) -> None:
    """`target[key] = value`, unless the key is taken or the number not finite (`shown`: the
    key as rejection details name it)."""
    if key in target:
        raise PayloadError(DlqReason.INVALID_SCHEMA, f"{_at(index)}: a second value for "
                           f"{key if shown is None else shown!r} at the same time")
    if isinstance(value, float) and not math.isfinite(value):
        raise PayloadError(DlqReason.BAD_VALUE, f"{_at(index)}: {key} is not a finite number")
    target[key] = value


def _envelope(ts: datetime, prefix: str, group: _Group, ctx: MessageContext) -> Envelope:
    values, attrs = group
    if prefix:  # the relayed sensor: the last segment of its name prefix (a MAC, an id)
        attrs["sensor"] = re.split("[:/]", prefix)[-1] or prefix
    if ctx.device_type in lighting.LIGHTING_TYPES:
        lighting.check_telemetry(values, attrs)
    return envelope(ctx, _SENML, ts, values, attrs)


_SENML = SourceFormat.SENML


def _time(seconds: float, now: datetime, index: int) -> datetime:
    """RFC 8428 time: absolute epoch seconds from 2**28 on, else relative to now."""
    try:
        if seconds < RELATIVE_LIMIT:
            return now + timedelta(seconds=seconds)
        return EPOCH + timedelta(seconds=seconds)
    except OverflowError as exc:
        raise PayloadError(DlqReason.BAD_TIMESTAMP,
                           f"{_at(index)}: time {seconds} out of range") from exc


def _number(rec: dict[str, Any], key: str, index: int,
            reason: DlqReason = DlqReason.INVALID_SCHEMA) -> float:
    """A present field as a finite number."""
    value = rec[key]
    if type(value) is float and math.isfinite(value):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        if key == "t":
            reason = DlqReason.BAD_TIMESTAMP
        raise PayloadError(reason, f"{_at(index)}: {key} must be a finite number")
    return float(value)


def _text(rec: dict[str, Any], key: str, index: int) -> str:
    """A field as a string ("" when absent)."""
    value = rec.get(key, "")
    if not isinstance(value, str):
        raise PayloadError(DlqReason.INVALID_SCHEMA, f"{_at(index)}: {key} must be a string")
    return value
