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

from maillage.envelope import Envelope, SourceFormat
from maillage.errors import DlqReason, PayloadError
from maillage.ingest.formats import MessageContext
from maillage.ingest.formats.common import Scalar
from maillage.ingest.formats.tic_frame import Group, Mode, detect_mode, parse_group, split_groups
from maillage.metrics import KNOWN, Metric

REGISTERS: dict[str, Metric] = {
    "HCHC": Metric.ENERGY_IMPORT_HC_WH, "HCHP": Metric.ENERGY_IMPORT_HP_WH,
    "EJPHN": Metric.ENERGY_IMPORT_EJP_HN_WH, "EJPHPM": Metric.ENERGY_IMPORT_EJP_HPM_WH,
    "BBRHCJB": Metric.ENERGY_IMPORT_HC_BLUE_WH, "BBRHPJB": Metric.ENERGY_IMPORT_HP_BLUE_WH,
    "BBRHCJW": Metric.ENERGY_IMPORT_HC_WHITE_WH, "BBRHPJW": Metric.ENERGY_IMPORT_HP_WHITE_WH,
    "BBRHCJR": Metric.ENERGY_IMPORT_HC_RED_WH, "BBRHPJR": Metric.ENERGY_IMPORT_HP_RED_WH,
}
"""Historique option registers, summed into `energy_import_wh` when there is no `BASE`."""

# label -> (metric, scale); phase-1 labels are handled apart.
NUMERIC: dict[str, tuple[str, float]] = {
    "BASE": (Metric.ENERGY_IMPORT_WH, 1.0), "EAST": (Metric.ENERGY_IMPORT_WH, 1.0),
    "EAIT": (Metric.ENERGY_EXPORT_WH, 1.0),
    "PAPP": (Metric.APPARENT_POWER_VA, 1.0), "SINSTS": (Metric.APPARENT_POWER_VA, 1.0),
    "SINSTI": (Metric.APPARENT_POWER_EXPORT_VA, 1.0),
    "PREF": (Metric.SUBSCRIBED_POWER_VA, 1000.0),
    **{label: (metric, 1.0) for label, metric in REGISTERS.items()},
    **{f"EASF{i:02d}": (f"energy_import_f{i:02d}_wh", 1.0) for i in range(1, 11)},
    **{f"EASD{i:02d}": (f"energy_import_d{i:02d}_wh", 1.0) for i in range(1, 5)},
    **{f"SINSTS{i}": (f"apparent_power_l{i}_va", 1.0) for i in (1, 2, 3)},
}
PHASE_CURRENT = {"IINST1": 1, "IINST2": 2, "IINST3": 3, "IRMS1": 1, "IRMS2": 2, "IRMS3": 3}
PHASE_VOLTAGE = {"URMS1": 1, "URMS2": 2, "URMS3": 3}
_THREE_PHASE = frozenset({"IINST2", "IINST3", "IRMS2", "IRMS3", "URMS2", "URMS3"})
SEASON_OFFSET = {"E": timedelta(hours=2), "H": timedelta(hours=1)}


def parse(payload: bytes, ctx: MessageContext) -> list[Envelope]:
    """Parse one TIC frame (historique or standard, auto-detected) into one envelope."""
    texts = split_groups(payload)
    mode = detect_mode(texts)
    groups: dict[str, Group] = {}
    for index, text in enumerate(texts):
        group = parse_group(text, mode, index)
        if group.label in groups:
            raise PayloadError(DlqReason.INVALID_SCHEMA, f"label {group.label} appears twice")
        groups[group.label] = group
    values, attrs = _read(groups, mode)
    ts = ctx.received_at
    if "DATE" in groups:
        meter_ts = frame_time(groups["DATE"].horodate or groups["DATE"].data)
        if meter_ts is None:
            attrs["tic_clock"] = "degraded"
        else:
            ts = meter_ts
    return [Envelope(
        tenant=ctx.tenant,
        device_id=ctx.device_id,
        ts=ts,
        received_at=ctx.received_at,
        source_format=SourceFormat.TIC,
        values=values,
        attrs=attrs,
        unknown_metrics=tuple(sorted(n for n in values if n not in KNOWN)),
    )]


def _read(groups: dict[str, Group], mode: Mode) -> tuple[dict[str, float], dict[str, Scalar]]:
    """Values and attributes of a frame's groups."""
    three_phase = not _THREE_PHASE.isdisjoint(groups)
    values: dict[str, float] = {}
    attrs: dict[str, Scalar] = {"tic_mode": mode}
    for label, group in groups.items():
        if label in NUMERIC:
            metric, scale = NUMERIC[label]
            values[metric] = _integer(group) * scale
        elif label in ("IINST", "ISOUSC") or label in PHASE_CURRENT or label in PHASE_VOLTAGE:
            continue  # below, once the number of phases is known
        elif label != "DATE":
            attrs[label] = group.data.strip()
            if group.horodate is not None:
                attrs[f"{label}_at"] = _horodate_text(group.horodate)
    if "ISOUSC" in groups:
        values[Metric.SUBSCRIBED_POWER_VA] = _integer(groups["ISOUSC"]) * (
            600.0 if three_phase else 200.0)
    if "IINST" in groups:
        values[Metric.CURRENT_A] = _integer(groups["IINST"])
    for table, total, phased in ((PHASE_CURRENT, Metric.CURRENT_A, "current_l{}_a"),
                                 (PHASE_VOLTAGE, Metric.VOLTAGE_V, "voltage_l{}_v")):
        for label, phase in table.items():
            if label in groups:
                value = _integer(groups[label])
                if phase == 1:
                    values[total] = value
                if three_phase:
                    values[phased.format(phase)] = value
    if Metric.ENERGY_IMPORT_WH not in values:
        registers = [values[m] for m in REGISTERS.values() if m in values]
        if registers:
            values[Metric.ENERGY_IMPORT_WH] = sum(registers)
    return values, attrs


def _integer(group: Group) -> float:
    """The group's data as a non-negative integer."""
    data = group.data.strip()
    if not (data.isascii() and data.isdigit()):
        raise PayloadError(DlqReason.BAD_VALUE, f"{group.label}={group.data!r} is not a number")
    return float(int(data))


def frame_time(horodate: str) -> datetime | None:
    """The meter's time from a horodate; None when its clock is degraded or unset."""
    if len(horodate) != 13 or not (horodate[1:].isascii() and horodate[1:].isdigit()):
        raise PayloadError(DlqReason.BAD_TIMESTAMP, f"DATE {horodate!r} is not SAAMMJJhhmmss")
    season = horodate[0]
    if season in ("e", "h", " "):
        return None
    if season not in SEASON_OFFSET:
        raise PayloadError(DlqReason.BAD_TIMESTAMP, f"DATE {horodate!r}: unknown season {season!r}")
    d = horodate[1:]
    try:
        local = datetime(2000 + int(d[0:2]), int(d[2:4]), int(d[4:6]), int(d[6:8]), int(d[8:10]),
                         int(d[10:12]), tzinfo=timezone(SEASON_OFFSET[season]))
    except ValueError as exc:
        raise PayloadError(DlqReason.BAD_TIMESTAMP, f"DATE {horodate!r}: {exc}") from exc
    return local.astimezone(UTC)


def _horodate_text(horodate: str) -> str:
    """ISO 8601 text of a group's horodate, or the raw text when it cannot be read."""
    try:
        ts = frame_time(horodate)
    except PayloadError:
        return horodate
    return ts.isoformat() if ts is not None else horodate
