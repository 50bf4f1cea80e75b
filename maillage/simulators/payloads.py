"""Wire formats devices really use: canonical JSON, SenML (RFC 8428), Linky TIC, events.

Every encoder is a pure function of its input: the same sample always gives the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import orjson

from maillage.simulators.base import DeviceEvent, Sample
from maillage.vocabulary import METRIC_UNITS

PARIS = ZoneInfo("Europe/Paris")
STX, ETX, LF, CR, SP, HT = b"\x02", b"\x03", b"\n", b"\r", b" ", b"\t"
_UNITS = {m.value: u for m, u in METRIC_UNITS.items() if u != "1"}


def iso(ts: datetime) -> str:
    """`2026-11-23T17:05:00Z` (milliseconds only when the time has them)."""
    if ts.tzinfo is not UTC:
        ts = ts.astimezone(UTC)
    # Formatted by hand: strftime is the slowest step of encoding a reading.
    text = (f"{ts.year:04d}-{ts.month:02d}-{ts.day:02d}T"
            f"{ts.hour:02d}:{ts.minute:02d}:{ts.second:02d}")
    if ts.microsecond:
        text += f".{ts.microsecond // 1000:03d}"
    return text + "Z"


def canonical_json(samples: Sequence[Sample], seq: int | None = None) -> bytes:
    """One record (or a list for several samples) of the canonical JSON format."""
    records: list[dict[str, object]] = []
    for i, s in enumerate(samples):
        rec: dict[str, object] = {"ts": iso(s.ts)}
        if seq is not None:
            rec["seq"] = seq + i
        rec["values"] = s.values
        if s.attrs:
            rec["attrs"] = s.attrs
        records.append(rec)
    return orjson.dumps(records[0] if len(records) == 1 else records)


def senml(sample: Sample) -> bytes:
    """A SenML pack: base time in epoch seconds, one record per metric, with its unit."""
    pack: list[dict[str, object]] = []
    for i, (name, value) in enumerate(sample.values.items()):
        rec: dict[str, object] = {"n": name}
        if i == 0:
            bt = sample.ts.timestamp()
            rec = {"bt": int(bt) if bt.is_integer() else bt, **rec}
        if (unit := _UNITS.get(name)) is not None:
            rec["u"] = unit
        rec["v"] = value
        pack.append(rec)
    return orjson.dumps(pack)


def event_json(ev: DeviceEvent, seq: int | None = None) -> bytes:
    """An `up/event` message: `{"ts", "seq", "event", ...details}`."""
    doc: dict[str, object] = {"ts": iso(ev.ts)}
    if seq is not None:
        doc["seq"] = seq
    doc["event"] = ev.event
    if ev.values:
        doc["values"] = ev.values
    doc.update(ev.details)
    return orjson.dumps(doc)


# --- Linky TIC (Enedis-NOI-CPT_54E) ---------------------------------------------------------

def tic_checksum(data: bytes) -> bytes:
    """The TIC check character: (sum of the bytes) & 0x3F + 0x20."""
    return bytes([(sum(data) & 0x3F) + 0x20])


def historique_group(label: str, value: str) -> bytes:
    """`LF label SP value SP checksum CR`; the sum covers label, SP and value (mode historique)."""
    body = label.encode() + SP + value.encode()
    return LF + body + SP + tic_checksum(body) + CR


def standard_group(label: str, value: str, horodate: str | None = None) -> bytes:
    """`LF label HT [horodate HT] value HT checksum CR`; the sum includes the last HT (standard)."""
    body = label.encode() + HT
    if horodate is not None:
        body += horodate.encode() + HT
    body += value.encode() + HT
    return LF + body + tic_checksum(body) + CR


def horodate(ts: datetime) -> str:
    """TIC time stamp: season (`H` winter, `E` summer time) then local YYMMDDhhmmss."""
    t = ts.astimezone(PARIS)
    season = "E" if t.dst() else "H"
    return (f"{season}{t.year % 100:02d}{t.month:02d}{t.day:02d}"
            f"{t.hour:02d}{t.minute:02d}{t.second:02d}")


def tic_historique(*, adco: str, tariff: str, isousc_a: int, index_wh: dict[str, int],
                   period: str, iinst_a: int, papp_va: int) -> bytes:
    """A single-phase frame in mode historique (no time stamp: the receiver stamps it)."""
    opt = "BASE" if tariff == "base" else "HC.."
    groups = [historique_group("ADCO", adco), historique_group("OPTARIF", opt),
              historique_group("ISOUSC", f"{isousc_a:02d}")]
    if tariff == "base":
        groups.append(historique_group("BASE", f"{index_wh['base']:09d}"))
    else:
        groups.append(historique_group("HCHC", f"{index_wh['hc']:09d}"))
        groups.append(historique_group("HCHP", f"{index_wh['hp']:09d}"))
    groups += [historique_group("PTEC", "TH.." if tariff == "base" else period),
               historique_group("IINST", f"{iinst_a:03d}"), historique_group("IMAX", "090"),
               historique_group("PAPP", f"{papp_va:05d}"),
               historique_group("HHPHC", "A"), historique_group("MOTDETAT", "000000")]
    return STX + b"".join(groups) + ETX


def tic_standard(*, adsc: str, ts: datetime, tariff: str, index_wh: dict[str, int],
                 export_wh: int | None, period: str, irms_a: int, urms_v: int, pref_kva: int,
                 sinsts_va: int, sinsti_va: int | None) -> bytes:
    """A single-phase frame in mode standard, with its DATE group (local time and season)."""
    stamp = horodate(ts)
    if tariff == "base":
        ngtf, ltarf, ntarf = "     BASE       ", "      BASE      ", 1
        registers = [index_wh["base"]]
    else:
        ngtf, ltarf = " H PLEINE/CREUSE", "  HEURE  CREUSE " if period == "HC.." else "  HEURE  PLEINE "
        ntarf = 1 if period == "HC.." else 2
        registers = [index_wh["hc"], index_wh["hp"]]
    total = sum(registers)
    groups = [standard_group("ADSC", adsc), standard_group("VTIC", "02"),
              standard_group("DATE", "", stamp), standard_group("NGTF", ngtf),
              standard_group("LTARF", ltarf), standard_group("EAST", f"{total:09d}")]
    for i, reg in enumerate(registers, start=1):
        groups.append(standard_group(f"EASF{i:02d}", f"{reg:09d}"))
    if export_wh is not None:
        groups.append(standard_group("EAIT", f"{export_wh:09d}"))
    groups += [standard_group("IRMS1", f"{irms_a:03d}"), standard_group("URMS1", f"{urms_v:03d}"),
               standard_group("PREF", f"{pref_kva:02d}"), standard_group("PCOUP", f"{pref_kva:02d}"),
               standard_group("SINSTS", f"{sinsts_va:05d}")]
    if sinsti_va is not None:
        groups.append(standard_group("SINSTI", f"{sinsti_va:05d}"))
    groups += [standard_group("STGE", "003A4001"), standard_group("NTARF", f"{ntarf:02d}"),
               standard_group("RELAIS", "000")]
    return STX + b"".join(groups) + ETX


def verify_tic(frame: bytes) -> bool:
    """True when every group of a frame (either mode) carries a correct checksum."""
    body = frame.strip(STX + ETX)
    for raw in body.split(LF)[1:]:
        group = raw.rstrip(CR)
        if len(group) < 3:
            return False
        if HT in group:  # standard: the sum includes the separator before the checksum
            ok = tic_checksum(group[:-1]) == group[-1:]
        else:  # historique: the separator before the checksum is left out
            ok = tic_checksum(group[:-2]) == group[-1:]
        if not ok:
            return False
    return True
