"""One raw Linky/CBE TIC frame on `…/up/tic` -> one reading envelope (framing in `tic_frame`).

Choices:
- A frame is an atomic snapshot: one bad group (checksum, framing, label) rejects the whole
  frame, never a partial keep.
- Historique mode has no clock: the measurement time is the receive time. Standard mode uses
  the `DATE` horodate (`SAAMMJJhhmmss`, season E = UTC+2, H = UTC+1); a lower-case season (the
  meter's clock is degraded) or a blank one falls back to the receive time, with
  `attrs["tic_clock"] = "degraded"`.
- Indexes (Wh): `BASE`/`EAST` -> `energy_import_wh`; with HC/HP, EJP or Tempo registers and no
  `BASE`, `energy_import_wh` is their sum and each register is kept (`energy_import_hc_wh`...);
  `EASF01..10`/`EASD01..04` -> `energy_import_f01_wh`.../`energy_import_d01_wh`...;
  `EAIT` -> `energy_export_wh`.
- `PAPP`/`SINSTS` -> `apparent_power_va`, `SINSTI` -> `apparent_power_export_va`. Phase 1
  (`IINST`/`IINST1`/`IRMS1`, `URMS1`) gives `current_a`/`voltage_v`; a three-phase frame also
  gives `current_l1_a`.. `_l3_a`, `voltage_l1_v`.., `apparent_power_l1_va`...
- Subscribed power: `PREF` is in kVA (x1000). `ISOUSC` is in A and follows the Enedis
  convention of 1 kVA = 5 A per phase on single phase, so VA = ISOUSC x 200; on three-phase
  frames 1 kVA = 5/3 A per phase, so VA = ISOUSC x 600.
- Every other group (ADCO/ADSC, OPTARIF, PTEC, NGTF, LTARF, STGE, MOTDETAT, unknown labels...)
  is kept as `attrs[LABEL]` = its stripped text; a horodate on such a group goes to
  `attrs[LABEL + "_at"]`. `attrs["tic_mode"]` says which mode the frame was in.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from maillage.envelope import MICROSECOND, Envelope, SourceFormat, to_us
from maillage.errors import DlqReason, PayloadError
from maillage.ingest.formats import MessageContext, envelope
from maillage.ingest.formats.common import Scalar
from maillage.ingest.formats.tic_frame import (
    Mode,
    Parts,
    detect_mode,
    fast_groups,
    parse_group,
    split_groups,
)
from maillage.vocabulary import Metric

REGISTERS: dict[str, str] = {
    "HCHC": Metric.ENERGY_IMPORT_HC_WH.value, "HCHP": Metric.ENERGY_IMPORT_HP_WH.value,
    "EJPHN": Metric.ENERGY_IMPORT_EJP_HN_WH.value, "EJPHPM": Metric.ENERGY_IMPORT_EJP_HPM_WH.value,
    "BBRHCJB": Metric.ENERGY_IMPORT_HC_BLUE_WH.value, "BBRHPJB": Metric.ENERGY_IMPORT_HP_BLUE_WH.value,
    "BBRHCJW": Metric.ENERGY_IMPORT_HC_WHITE_WH.value,
    "BBRHPJW": Metric.ENERGY_IMPORT_HP_WHITE_WH.value,
    "BBRHCJR": Metric.ENERGY_IMPORT_HC_RED_WH.value, "BBRHPJR": Metric.ENERGY_IMPORT_HP_RED_WH.value,
}
"""Historique option registers, summed into `energy_import_wh` when there is no `BASE`."""

_IMPORT, _CURRENT, _VOLTAGE = "energy_import_wh", "current_a", "voltage_v"
_SUBSCRIBED = "subscribed_power_va"

# label -> (metric, scale); phase-1 labels are handled apart.
NUMERIC: dict[str, tuple[str, float]] = {
    "BASE": (_IMPORT, 1.0), "EAST": (_IMPORT, 1.0), "EAIT": ("energy_export_wh", 1.0),
    "PAPP": ("apparent_power_va", 1.0), "SINSTS": ("apparent_power_va", 1.0),
    "SINSTI": ("apparent_power_export_va", 1.0), "PREF": (_SUBSCRIBED, 1000.0),
    **{label: (metric, 1.0) for label, metric in REGISTERS.items()},
    **{f"EASF{i:02d}": (f"energy_import_f{i:02d}_wh", 1.0) for i in range(1, 11)},
    **{f"EASD{i:02d}": (f"energy_import_d{i:02d}_wh", 1.0) for i in range(1, 5)},
    **{f"SINSTS{i}": (f"apparent_power_l{i}_va", 1.0) for i in (1, 2, 3)},
}
PHASE_CURRENT = {"IINST1": 1, "IINST2": 2, "IINST3": 3, "IRMS1": 1, "IRMS2": 2, "IRMS3": 3}
PHASE_VOLTAGE = {"URMS1": 1, "URMS2": 2, "URMS3": 3}
_THREE_PHASE = frozenset({"IINST2", "IINST3", "IRMS2", "IRMS3", "URMS2", "URMS3"})
_PHASE_LABELS = frozenset({*PHASE_CURRENT, *PHASE_VOLTAGE})
_LATER = frozenset({"IINST", "ISOUSC", "DATE", *_PHASE_LABELS})
"""Labels read after the loop (once the number of phases is known), or not at all (DATE)."""
_LATER_ROLE = ("", 0.0)
_ROLE: dict[str, tuple[str, float]] = {**dict.fromkeys(_LATER, _LATER_ROLE), **NUMERIC}
"""Label -> its (metric, scale), or `_LATER_ROLE` for the labels read after the loop; the
others are texts."""
_UNCACHED = frozenset({*NUMERIC, *_LATER, "ADSC", "ADCO", "PRM"})
"""Groups whose data changes frame after frame (measures, time) or names the meter."""
_PHASED = ((PHASE_CURRENT, _CURRENT, "current_l{}_a"), (PHASE_VOLTAGE, _VOLTAGE, "voltage_l{}_v"))
_PHASE_SPEC = {label: (rank, total, phased, phase) for rank, (label, phase, total, phased) in
               enumerate((label, phase, total, phased) for table, total, phased in _PHASED
                         for label, phase in table.items())}
"""Phase label -> (its rank in the tables, its metric, its per-phase metric, its phase)."""
SEASON_OFFSET = {"E": timedelta(hours=2), "H": timedelta(hours=1)}
_TIC = SourceFormat.TIC
_SEASON_TZ = {season: timezone(offset) for season, offset in SEASON_OFFSET.items()}


def parse(payload: bytes, ctx: MessageContext) -> list[Envelope]:
    """Parse one TIC frame (historique or standard, auto-detected) into one envelope."""
    fast = fast_groups(payload, _UNCACHED)
    mode, groups = fast if fast is not None else _checked_groups(payload)
    values, attrs = _read(groups, mode)
    date = groups.get("DATE")
    if date is not None:
        meter_us = frame_time_us(date[1] if len(date) == 3 and date[1] else date[-1])
        if meter_us is not None:
            return [envelope(ctx, _TIC, None, values, attrs, ts_us=meter_us)]
        attrs["tic_clock"] = "degraded"
    return [envelope(ctx, _TIC, ctx.received_at, values, attrs,
                     ts_us=ctx.received_us)]


def _checked_groups(payload: bytes) -> tuple[Mode, dict[str, Parts]]:
    """Groups read one check at a time: raises the first defect `fast_groups` declined."""
    texts = split_groups(payload)
    mode = detect_mode(texts)
    groups: dict[str, Parts] = {}
    for index, text in enumerate(texts):
        group = parse_group(text, mode, index)
        if group.label in groups:
            raise PayloadError(DlqReason.INVALID_SCHEMA, f"label {group.label} appears twice")
        groups[group.label] = ([group.label, group.data] if group.horodate is None
                               else [group.label, group.horodate, group.data])
    return mode, groups


def _read(groups: dict[str, Parts], mode: Mode) -> tuple[dict[str, float], dict[str, Scalar]]:
    """Values and attributes of a frame's groups."""
    three_phase = not _THREE_PHASE.isdisjoint(groups)
    values: dict[str, float] = {}
    attrs: dict[str, Scalar] = {"tic_mode": mode}
    role = _ROLE.get
    for label, parts in groups.items():
        spec = role(label)
        if spec is None:  # a text, kept as an attribute
            attrs[label] = parts[-1].strip()
            if len(parts) == 3:
                attrs[f"{label}_at"] = _horodate_text(parts[1])
        elif spec is not _LATER_ROLE:
            data = parts[-1].strip()  # ASCII: isdigit() is [0-9]+; 15 digits are exact floats
            number = float(data) if data.isdigit() and len(data) < 16 else _integer(label, parts[-1])
            values[spec[0]] = number * spec[1]
    if "ISOUSC" in groups:
        values[_SUBSCRIBED] = _integer("ISOUSC", groups["ISOUSC"][-1]) * (
            600.0 if three_phase else 200.0)
    if "IINST" in groups:
        values[_CURRENT] = _integer("IINST", groups["IINST"][-1])
    phases = _PHASE_LABELS.intersection(groups)
    if phases:  # in table order: currents, then voltages
        for label in sorted(phases, key=_PHASE_SPEC.__getitem__):
            _, total, phased, phase = _PHASE_SPEC[label]
            value = _integer(label, groups[label][-1])
            if phase == 1:
                values[total] = value
            if three_phase:
                values[phased.format(phase)] = value
    if _IMPORT not in values:
        registers = [values[m] for m in REGISTERS.values() if m in values]
        if registers:
            values[_IMPORT] = sum(registers)
    return values, attrs


def _integer(label: str, raw: str) -> float:
    """A group's data as a non-negative integer."""
    data = raw.strip()
    if len(data) < 16 and data.isascii() and data.isdigit():
        return float(data)  # exact: at most 15 digits
    if not (data.isascii() and data.isdigit()):
        raise PayloadError(DlqReason.BAD_VALUE, f"{label}={raw!r} is not a number")
    return float(int(data))


def frame_time(horodate: str) -> datetime | None:
    """The meter's time from a horodate; None when its clock is degraded or unset."""
    digits = horodate[1:]
    if len(horodate) != 13 or not (digits.isascii() and digits.isdigit()):
        raise PayloadError(DlqReason.BAD_TIMESTAMP, f"DATE {horodate!r} is not SAAMMJJhhmmss")
    season = horodate[0]
    if season in ("e", "h", " "):
        return None
    if season not in SEASON_OFFSET:
        raise PayloadError(DlqReason.BAD_TIMESTAMP, f"DATE {horodate!r}: unknown season {season!r}")
    year, rest = divmod(int(digits), 10**10)  # YYMMDDhhmmss as one number, cut in two digits
    month, rest = divmod(rest, 10**8)
    day, rest = divmod(rest, 10**6)
    hour, rest = divmod(rest, 10**4)
    minute, second = divmod(rest, 100)
    try:
        local = datetime(2000 + year, month, day, hour, minute, second, tzinfo=_SEASON_TZ[season])
    except ValueError as exc:
        raise PayloadError(DlqReason.BAD_TIMESTAMP, f"DATE {horodate!r}: {exc}") from exc
    return local.astimezone(UTC)


_SEASON_US = {season: offset // MICROSECOND for season, offset in SEASON_OFFSET.items()}
_DAYS: dict[str, int] = {}
"""`YYMMDD` of a valid date -> epoch µs of its midnight (as if UTC): frames carry few dates."""


def frame_time_us(horodate: str) -> int | None:
    """`frame_time` in epoch microseconds (same checks, same errors)."""
    offset = _SEASON_US.get(horodate[:1])
    day = _DAYS.get(horodate[1:7]) if offset is not None else None
    clock = horodate[7:]
    if day is not None and len(clock) == 6 and clock.isascii() and clock.isdigit():
        hour, rest = divmod(int(clock), 10_000)
        minute, second = divmod(rest, 100)
        if hour < 24 and minute < 60 and second < 60:
            return day + ((hour * 60 + minute) * 60 + second) * 1_000_000 - offset  # type: ignore[operator]  # offset set when day is
    ts = frame_time(horodate)
    if ts is None:
        return None
    if len(_DAYS) >= 4096:
        _DAYS.clear()
    digits = horodate[1:7]
    _DAYS[digits] = to_us(datetime(2000 + int(digits[:2]), int(digits[2:4]), int(digits[4:]),
                                   tzinfo=UTC))
    return to_us(ts)


def _horodate_text(horodate: str) -> str:
    """ISO 8601 text of a group's horodate, or the raw text when it cannot be read."""
    try:
        ts = frame_time(horodate)
    except PayloadError:
        return horodate
    return ts.isoformat() if ts is not None else horodate
