"""A deterministic corpus of realistic and mutated MQTT messages, to check that the ingest hot path
decides and encodes exactly as the reference did (`test_hotpath_equivalence.py`,
`scripts/hotpath_diff.py`).

Realistic payloads come from `data/hotpath_seeds.json` (captured once from the bench's territory
mix, so that simulator changes do not move the corpus) and from hand-written ones below; each is
re-stamped or mutated by a seeded generator: TIC groups rewritten with correct (or wrong)
checksums, JSON and SenML documents edited field by field, raw bytes flipped, cut or inserted,
topics and receive times varied. Only the standard library and orjson build it.
"""

from __future__ import annotations

import copy
import hashlib
import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson

TENANT = "t1"
RECEIVED = datetime(2026, 1, 15, 20, 0, tzinfo=UTC)
T_RX = int(RECEIVED.timestamp())
FLOOR = datetime(2010, 1, 1, tzinfo=UTC)

DEVICES: dict[str, tuple[str, datetime]] = {
    "meter-1": ("meter", FLOOR),
    "meter-2": ("meter", datetime(2026, 1, 15, 19, 30, tzinfo=UTC)),
    "light-1": ("streetlight", FLOOR),
    "cab-1": ("lighting_cabinet", FLOOR),
    "hub-1": ("care_hub", FLOOR),
    "env-1": ("care_env", FLOOR),
    "door-1": ("care_door", datetime(2026, 1, 15, 19, 0, tzinfo=UTC)),
    "bed-1": ("care_bed", FLOOR),
    "motion-1": ("care_motion", FLOOR),
    "button-1": ("care_button", FLOOR),
    "lux-1": ("luminosity", FLOOR),
    "pres-1": ("presence", FLOOR),
}
"""Registered devices of tenant `t1`: id -> (type, earliest time allowed)."""

BY_TYPE: dict[str, list[str]] = {}
for _dev, (_type, _) in DEVICES.items():
    BY_TYPE.setdefault(_type, []).append(_dev)

Message = tuple[str, bytes, datetime]
"""(MQTT topic, payload, receive time)."""


# --- seeds -----------------------------------------------------------------------------------

def _std(label: str, data: str, horodate: str | None = None) -> str:
    body = f"{label}\t{horodate}\t{data}\t" if horodate is not None else f"{label}\t{data}\t"
    return f"\n{body}{_check(body)}\r"


def _hist(label: str, data: str) -> str:
    body = f"{label} {data}"
    return f"\n{body} {_check(body)}\r"


def _check(text: str) -> str:
    return chr((sum(text.encode("latin-1")) & 0x3F) + 0x20)


def _frame(groups: list[str]) -> str:
    return "\x02" + "".join(groups) + "\x03"


def _hand_seeds() -> list[tuple[str, str, bytes]]:
    """(device type, channel, payload) written by hand: shapes the territory mix lacks."""
    t = T_RX - 120
    json = orjson.dumps
    tic = [
        _frame([_hist(*g) for g in (
            ("OPTARIF", "HC.."), ("ISOUSC", "45"), ("HCHC", "010956910"), ("HCHP", "016779643"),
            ("PTEC", "HP.. "), ("IINST", "021"), ("IMAX", "047"), ("PAPP", "04860"),
            ("HHPHC", "A"), ("MOTDETAT", "000000"))]),
        _frame([_hist(*g) for g in (
            ("ADCO", "031428097115"), ("OPTARIF", "BASE"), ("ISOUSC", "20"), ("BASE", "003459812"),
            ("PTEC", "TH.."), ("IINST1", "003"), ("IINST2", "004"), ("IINST3", "005"),
            ("IMAX1", "060"), ("PMAX", "03695"), ("PAPP", "02780"), ("PPOT", "00"))]),
        "".join(_hist(*g) for g in (
            ("ADCO", "022164996259"), ("OPTARIF", "BBR("), ("ISOUSC", "30"),
            ("BBRHCJB", "001234567"), ("BBRHPJB", "000234567"), ("BBRHCJW", "000034567"),
            ("BBRHPJW", "000004567"), ("BBRHCJR", "000000567"), ("BBRHPJR", "000000067"),
            ("PTEC", "HPJB"), ("DEMAIN", "----"), ("IINST", "002"), ("PAPP", "00430"))),
        _frame([_hist(*g) for g in (
            ("ADCO", "022164996260"), ("OPTARIF", "EJP."), ("ISOUSC", "30"),
            ("EJPHN", "001234567"), ("EJPHPM", "000234567"), ("PEJP", "30"),
            ("PTEC", "HN.."), ("IINST", "002"), ("PAPP", "00430"))]),
        _frame([_std("ADSC", "041876097467"), _std("VTIC", "02"),
                _std("DATE", "", "E200426181830"), _std("NGTF", "      TEMPO     "),
                _std("EAST", "006231973"), _std("EASF01", "000001000"),
                _std("EASF02", "000002000"), _std("EASF10", "000003000"),
                _std("EASD01", "000000010"), _std("EASD04", "000000040"),
                _std("EAIT", "000012345"), _std("IRMS1", "003"), _std("IRMS2", "004"),
                _std("IRMS3", "005"), _std("URMS1", "235"), _std("URMS2", "236"),
                _std("URMS3", "234"), _std("PREF", "12"), _std("SINSTS", "01163"),
                _std("SINSTS1", "00400"), _std("SINSTS2", "00400"), _std("SINSTS3", "00363"),
                _std("SINSTI", "00010"), _std("SMAXSN", "02100", "E200426132229"),
                _std("CCASN", "02120", "E200426180000"), _std("UMOY1", "234", "H200426181000"),
                _std("MSG1", "     PAS DE          MESSAGE    "), _std("STGE", "003A0001"),
                _std("PRM", "01332272002530"), _std("RELAIS", "000"), _std("NJOURF+1", "00"),
                _std("DPM1", "00", " 200426060000"), _std("FPM1", "00", "h200426220000")]),
        _frame([_std("ADSC", "041876097468"), _std("DATE", "", "e260115195900"),
                _std("EAST", "000000001"), _std("SINSTS", "00000")]),
    ]
    out = [("meter", "up/tic", f.encode("latin-1")) for f in tic]
    senml = [
        [{"bn": "urn:dev:ow:10e2073a01080063:", "n": "voltage", "u": "V", "v": 120.1},
         {"n": "current", "u": "A", "v": 1.2}],
        [{"bn": "urn:dev:ow:10e2073a0108006:", "bt": t, "bu": "A", "bver": 5, "n": "voltage",
          "u": "V", "v": 120.1}, *({"n": "current", "t": -k, "v": 1.7 - 0.1 * k} for k in (3, 2, 1))],
        [{"bt": t, "n": "power", "u": "kW", "v": 1.5}, {"n": "energy", "u": "kWh", "s": 1234.5},
         {"n": "temp", "u": "K", "v": 293.15}, {"n": "export", "u": "Wh", "v": 12.0},
         {"n": "voltage_l2", "u": "mV", "v": 230100}, {"n": "rssi", "u": "dBW", "v": -100}],
        [{"bn": "meter-1/", "bt": t, "bu": "W", "bs": 3600, "n": "power", "s": 7200},
         {"n": "power", "t": -60, "v": 10}, {"n": "custom_thing", "v": 3}],
        [{"bn": "hub-1/env-1/", "bt": t, "n": "temp", "u": "Cel", "v": 20.5},
         {"n": "humidity", "u": "%RH", "v": 40}, {"bn": "urn:dev:mac:door-1:", "n": "door", "vb": True},
         {"bn": "hub-1/bed-1/", "n": "bed", "vb": False, "t": -30}],
        [{"bt": t, "n": "lamp", "vb": True}, {"n": "dimming", "u": "%", "v": 80},
         {"n": "lamp_power", "u": "W", "v": 42.0}, {"n": "burning_hours", "u": "h", "v": 1200},
         {"n": "status", "vs": "ok"}, {"n": "note", "vd": "abc"}],
    ]
    out += [("meter", "up/senml", json(p)) for p in senml[:4]]
    out += [("care_hub", "up/senml", json(senml[4])), ("streetlight", "up/senml", json(senml[5]))]
    iso = "2026-01-15T19:58:00Z"
    out += [
        ("care_button", "up/event", json({"ts": iso, "event": "fall_detected", "seq": 7,
                                          "confidence": 0.93, "posture": "lying",
                                          "values": {"battery_pct": 81}})),
        ("care_hub", "up/event", json({"event": "door_open", "sensor": "door-1", "ts": t})),
        ("care_hub", "up/event", json({"event": "bed_exit", "device": "bed-1", "seq": 3})),
        ("care_motion", "up/event", json({"event": "stove_left_on", "minutes": 45, "ok": True,
                                          "note": None})),
        ("streetlight", "up/ack", json({"id": 42, "status": "done", "level": 50})),
        ("streetlight", "up/ack", json({"id": "cmd-7", "status": "failed", "error": "timeout",
                                        "ts": iso})),
        ("meter", "status", b"online"), ("meter", "status", b" Offline\n"),
        ("meter", "up/json", json([{"ts": iso, "seq": 1, "values": {"energy_import_wh": 1}},
                                   {"ts": t * 1000, "values": {"voltage_v": 230, "x_y": True}}])),
        ("streetlight", "up/json", json({"ts": iso, "status": "lampFailure"})),
        ("streetlight", "up/json", json({"ts": iso, "values": {"lamp_on": 0}, "attrs": {
            "status": "ok", "n": 3, "f": 1.5, "b": False, "z": None}})),
        ("lighting_cabinet", "up/json", json({"ts": iso, "values": {"voltage_l1_v": 231.5}})),
    ]
    return out


def seeds() -> list[tuple[str, str, bytes]]:
    """Every seed: (device type, channel, payload)."""
    raw = orjson.loads((Path(__file__).parent / "data" / "hotpath_seeds.json").read_bytes())
    captured = [(s["device_type"], s["channel"], s["payload"].encode("latin-1")) for s in raw]
    return captured + _hand_seeds()


# --- pools of values -------------------------------------------------------------------------

TS_POOL: list[Any] = [
    "2026-01-15T19:59:00Z", "2026-01-15T19:59:00z", "2026-01-15T20:04:59Z",
    "2026-01-15T20:05:01Z", "2026-01-15T21:00:00+01:00", "2026-01-15T19:59:00",
    "2009-12-31T23:59:59Z", "2010-01-01T00:00:00Z", "1970-01-01T00:00:00Z",
    "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2026-01-15T19:59:00.123456+00:00",
    " 2026-01-15T19:59:00Z ", "2026-01-15 19:59:00+00:00", "2026-13-01T00:00:00Z", "garbage", "",
    T_RX - 60, (T_RX - 60) * 1000, T_RX - 60.5, T_RX + 301, T_RX + 299.999999, -1, 0, 1e20,
    "__BIG__", 99_999_999_999, 100_000_000_000, True, None, [T_RX], {"t": 1}, 1.7e308,
    "2026-01-15T19:30:00Z", "2026-01-15T19:29:59.999999Z", "2026-01-15T18:59:59Z",
]
NUMBERS: list[Any] = ["__BIG__", 0, 1, -1, 0.5, -0.0, 1.5, 100, 150, 2**53 + 1, 2**63, 2**64 - 1, -(2**63),
                      1e308, -1e308, 1.7976931348623157e308, 5e-324, True, False, None, "1", "x",
                      [1], {"a": 1}, 42.42]
METRIC_NAMES = ["energy_import_wh", "voltage_v", "lamp_on", "dimming_pct", "lamp_power_w",
                "burning_hours_h", "temperature_c", "foo_bar", "x", "a" * 64, "a" * 65, "Foo",
                "1abc", "", "é", "foo-bar", "_x", "active_power_l2_w", "motion"]
STRINGS = ["ok", "lampFailure", "dimmingFailure", "bogus", "", "a" * 256, "a" * 257, "é",
           "door-1", "ghost-1", "env-1", "hub-1", "bed-1", "Bad Id", "x" * 129, "a\x01"]
SCALARS: list[Any] = [*NUMBERS[:8], *STRINGS[:6], None, True, [], {"n": 1}]
LABELS = ["BASE", "HCHC", "HCHP", "EJPHN", "EJPHPM", "BBRHCJB", "BBRHPJR", "IINST", "IINST1",
          "IINST2", "IINST3", "IRMS1", "IRMS2", "IRMS3", "URMS1", "URMS2", "URMS3", "ISOUSC",
          "PREF", "PAPP", "SINSTS", "SINSTS1", "SINSTS3", "SINSTI", "EAST", "EAIT", "EASF01",
          "EASF10", "EASD04", "DATE", "adco", "A" * 16, "A" * 17, "X+Y-1", "", "OPTARIF", "ZZZ",
          "IMAX", "SMAXSN", "PTEC", "A B"]
BIG = b"100000000000000000000000000000"
"""A JSON integer beyond 64 bits (orjson does not write those): replaces `"__BIG__"`."""


def _dumps(doc: Any) -> bytes:
    return orjson.dumps(doc).replace(b'"__BIG__"', BIG)


TIC_DATA = ["", "0", "000", "007191269", "9" * 15, "9" * 16, "9" * 17, "9" * 20, "9" * 300,
            "9" * 320, "9" * 5000, "12a", " 123 ", "-5", "1.5", "HC..", "   ", "A\tB", "x y z",
            "\x7f", "1 2"]
HORODATES = ["H260115195900", "E260115195900", "h260115195900", "e260115195900",
             " 260115195900", "X260115195900", "H261315195900", "H260230120000", "H26011519590",
             "H2601151959000", "H26011519590a", "H990101000000", "H000101000000", "",
             "E260115230000", "H260115210500", "H260115210459"]
UNITS = ["W", "kW", "Wh", "kWh", "J", "VA", "kVA", "V", "mV", "A", "mA", "Cel", "K", "%RH", "%EL",
         "%", "/", "lx", "dBm", "dBW", "h", "min", "s", "1", "count", "furlong", "", 5, None]
SENML_NAMES = ["power", "energy", "temp", "voltage_l2", "current_l3", "active_power_l1_w",
               "foo_bar", "Foo-Bar.baz", "bad name", "", "x" * 200, "energy_export", "lamp",
               "dimming", "status", "hub-1/env-1/temp", "urn:dev:mac:door-1:door",
               "ghost-1/temp", "index", "export", "apparent_power", "rssi", "battery", 7,
               "-lead", "a:b/c", "/"]
BASE_NAMES = ["", "urn:dev:ow:1234:", "hub-1/env-1/", "hub-1/ghost-1/", "meter-1/", "::",
              "a/b/", "urn:dev:mac:bed-1:", 3]
BT_POOL: list[Any] = [T_RX - 60, T_RX - 60.25, T_RX + 301, 0, -60, 2**28 - 1, 2**28, 1e20, -1e20,
                      "x", True, None, 1e10, T_RX - 7200]
EVENTS = ["fall_detected", "door_open", "motion", "stove_left_on", "Fall", "", "a" * 64,
          "a" * 65, "x-y", 5, None]
TOPIC_CHANNELS = ["up/json", "up/senml", "up/tic", "up/event", "up/ack", "status", "up/foo",
                  "up/json/extra", "up"]


# --- mutations -------------------------------------------------------------------------------

def _split_frame(payload: bytes) -> tuple[list[list[str]], str] | None:
    """A seed frame's groups as [label, horodate|None, data] and its mode, or None."""
    text = payload.decode("latin-1").strip("\x02\x03")
    mode = "standard" if "\t" in text.split("\r", 1)[0] else "historique"
    groups = []
    for raw in text.split("\r"):
        if not raw:
            continue
        body = raw.lstrip("\n")[:-2]
        if mode == "standard":
            parts = body.split("\t")
            groups.append([parts[0], parts[1], parts[2]] if len(parts) == 3
                          else [parts[0], None, parts[-1]])
        else:
            label, _, data = body.partition(" ")
            groups.append([label, None, data])
    return groups, mode


def _join_frame(groups: list[list[Any]], mode: str, rng: random.Random) -> bytes:
    out = []
    for label, horodate, data in groups:
        sep = "\t" if mode == "standard" else " "
        if rng.random() < 0.02:
            sep = " " if sep == "\t" else "\t"
        if sep == "\t":
            body = f"{label}\t{horodate}\t{data}\t" if horodate is not None else f"{label}\t{data}\t"
            chk = _check(body)
            text = body + chk
        else:
            body = f"{label} {data}"
            chk = _check(body)
            text = f"{body} {chk}"
        if rng.random() < 0.015:
            text = text[:-1] + chr(ord(text[-1]) + 1)
        out.append(f"\n{text}\r")
    frame = "".join(out)
    r = rng.random()
    if r < 0.6:
        frame = "\x02" + frame + "\x03"
    elif r < 0.63:
        frame = "\x02" + frame
    elif r < 0.66:
        frame = frame + "\x03"
    return frame.encode("latin-1")


def mutate_tic(payload: bytes, rng: random.Random) -> bytes:
    """Rewrite a frame's groups (labels, data, horodates, order), checksums made to match."""
    split = _split_frame(payload)
    assert split is not None
    groups, mode = split
    for _ in range(rng.choice((0, 1, 1, 1, 2, 3))):
        i = rng.randrange(len(groups))
        op = rng.randrange(10)
        if op == 0:
            groups[i][2] = rng.choice(TIC_DATA)
        elif op == 1:
            groups[i][0] = rng.choice(LABELS)
        elif op == 2 and len(groups) > 1:
            del groups[i]
        elif op == 3:
            groups.insert(i, list(groups[i]))
        elif op == 4:
            j = rng.randrange(len(groups))
            groups[i], groups[j] = groups[j], groups[i]
        elif op == 5:
            groups[i][1] = rng.choice(HORODATES) if mode == "standard" else None
        elif op == 6:
            dates = [g for g in groups if g[0] == "DATE"]
            (dates[0] if dates else groups[i])[1] = rng.choice(HORODATES)
        elif op == 7:
            groups.insert(i, [rng.choice(LABELS), None, rng.choice(TIC_DATA)])
        elif op == 8:
            groups[i][2] = "".join(rng.choice("0123456789") for _ in range(rng.choice((1, 3, 9))))
        else:
            groups[i] = [rng.choice(LABELS[:30]), None,
                         "".join(rng.choice("0123456789") for _ in range(rng.randrange(1, 12)))]
    return _join_frame(groups, mode, rng)


def _fresh(value: Any) -> Any:
    """A pool value, copied when mutable (edits must not change the pools)."""
    return copy.deepcopy(value) if isinstance(value, dict | list) else value


def _edit_record(rec: dict[str, Any], rng: random.Random) -> None:
    """One edit of a canonical JSON record or an event/ack document."""
    op = rng.randrange(12)
    if op == 0:
        rec["ts"] = _fresh(rng.choice(TS_POOL))
    elif op == 1:
        rec.pop("ts", None)
    elif op == 2:
        rec["seq"] = _fresh(rng.choice(NUMBERS))
    elif op == 3:
        values = rec.get("values")
        if isinstance(values, dict):
            values[rng.choice(METRIC_NAMES)] = _fresh(rng.choice(NUMBERS))
        else:
            rec["values"] = {rng.choice(METRIC_NAMES): _fresh(rng.choice(NUMBERS))}
    elif op == 4:
        rec["values"] = _fresh(rng.choice([{}, [], "x", None, {"lamp_on": 1}]))
    elif op == 5:
        values = rec.get("values")
        if isinstance(values, dict) and values:
            values[rng.choice(list(values))] = _fresh(rng.choice(NUMBERS))
    elif op == 6:
        attrs = rec.setdefault("attrs", {})
        if isinstance(attrs, dict):
            attrs[rng.choice(["k", "status", "n", "", "x" * 65])] = _fresh(rng.choice(SCALARS))
    elif op == 7:
        rec["status"] = rng.choice(["ok", "lampFailure", "bogus", 1, None])
    elif op == 8:
        rec[rng.choice(["foo", "event", "sensor", "device", "id", "attrs", "note_"])] = _fresh(
            rng.choice([*STRINGS, *EVENTS, *SCALARS]))
    elif op == 9:
        rec.pop(rng.choice(list(rec) or ["x"]), None)
    elif op == 10:
        rec["event"] = rng.choice(EVENTS)
    else:
        rec[rng.choice(["sensor", "device", "id", "status"])] = rng.choice(
            [*STRINGS, 42, True, None, "done", "failed"])


def mutate_json(payload: bytes, rng: random.Random) -> bytes:
    """Edit a JSON document (a record, a list of records, an event, an ack)."""
    doc = orjson.loads(payload)
    r = rng.random()
    if r < 0.04:
        return _dumps(rng.choice([[], "x", 1, None, [1], [doc, 2]]))
    if isinstance(doc, dict) and r < 0.12:
        doc = [doc, dict(doc, ts=rng.choice(TS_POOL[:6]))]
    records = doc if isinstance(doc, list) else [doc]
    for _ in range(rng.choice((1, 1, 2, 3))):
        rec = rng.choice(records) if records else None
        if isinstance(rec, dict):
            _edit_record(rec, rng)
    return _dumps(doc)


def _edit_senml(pack: list[Any], rng: random.Random) -> None:
    """One edit of a SenML pack."""
    if not pack:
        return
    i = rng.randrange(len(pack))
    rec = pack[i]
    if not isinstance(rec, dict):
        return
    op = rng.randrange(14)
    if op == 0:
        rec["bt"] = rng.choice(BT_POOL)
    elif op == 1:
        rec["t"] = rng.choice([0, -60, 1.5, 301, -1e10, "x", None, True, 2**28, "__BIG__"])
    elif op == 2:
        rec["u"] = rng.choice(UNITS)
    elif op == 3:
        rec["n"] = rng.choice(SENML_NAMES)
    elif op == 4:
        rec["bn"] = rng.choice(BASE_NAMES)
    elif op == 5:
        rec.pop("v", None)
        key = rng.choice(["vb", "vs", "vd", "s", "v"])
        rec[key] = rng.choice([True, False, "ok", "lampFailure", "x" * 257, 3600, 1e308, None])
    elif op == 6:
        rec[rng.choice(["vb", "vs", "s", "v"])] = rng.choice([1, True, "ok"])
    elif op == 7:
        rec["v"] = _fresh(rng.choice(NUMBERS))
    elif op == 8:
        rec[rng.choice(["bv", "bs", "bu", "bver"])] = rng.choice(
            [1, 10, 11, 0, True, "10", "W", "kWh", 2.5, None])
    elif op == 9:
        rec[rng.choice(["foo_", "foo", "bt_", "l"])] = 1
    elif op == 10:
        pack.insert(i, dict(rec))
    elif op == 11:
        pack.insert(i, _fresh(rng.choice([{"bt": T_RX - 30}, {"bu": "kW"}, {"bn": "hub-1/door-1/"},
                                          5, {}, {"bver": 10}])))
    elif op == 12 and len(pack) > 1:
        del pack[i]
    else:
        rec.pop(rng.choice(list(rec) or ["x"]), None)


def mutate_senml(payload: bytes, rng: random.Random) -> bytes:
    """Edit a SenML pack record by record."""
    pack = orjson.loads(payload)
    if rng.random() < 0.03:
        return orjson.dumps(rng.choice([[], {}, "x", [1], pack[0] if pack else None]))
    for _ in range(rng.choice((1, 1, 2, 3))):
        _edit_senml(pack, rng)
    return _dumps(pack)


def mutate_bytes(payload: bytes, rng: random.Random) -> bytes:
    """Raw damage: a byte changed, removed or inserted, a cut, junk, a repeated slice."""
    b = bytearray(payload)
    op = rng.randrange(7)
    i = rng.randrange(len(b) + 1)
    byte = rng.choice([0x00, 0x02, 0x03, 0x04, 0x09, 0x0A, 0x0D, 0x20, 0x22, 0x2C, 0x30, 0x39,
                       0x41, 0x5C, 0x7B, 0x7D, 0x7F, 0x80, 0xC3, 0xFF, rng.randrange(256)])
    if op == 0 and b:
        b[min(i, len(b) - 1)] = byte
    elif op == 1 and b:
        del b[min(i, len(b) - 1)]
    elif op == 2:
        b.insert(i, byte)
    elif op == 3:
        del b[i:]
    elif op == 4:
        b[i:i] = bytes(rng.choice([b"\r\n", b"\n\r", b"\x03\x02", b'"', b"},{", b"\t\t", b"  "]))
    elif op == 5:
        j = rng.randrange(i, len(b) + 1)
        b[j:j] = b[i:j]
    else:
        return rng.choice([b"", b" ", b"null", b"\x02\x03", b"\x02\n\r\x03", b"[]", b"{}"])
    return bytes(b)


def restamp(channel: str, payload: bytes, rng: random.Random) -> bytes:
    """A seed with a fresh measurement time (as the bench re-stamps), kept valid."""
    offset = rng.randrange(10, 3000)
    if channel in ("up/json", "up/event") and payload.startswith(b"{"):
        doc = orjson.loads(payload)
        if "ts" in doc:
            doc["ts"] = datetime.fromtimestamp(T_RX - offset, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if "seq" in doc:
            doc["seq"] = rng.randrange(1, 10**6)
        return orjson.dumps(doc)
    if channel == "up/senml" and payload.startswith(b'[{"bt":'):
        pack = orjson.loads(payload)
        pack[0]["bt"] = T_RX - offset
        return orjson.dumps(pack)
    if channel == "up/tic" and b"\nDATE\t" in payload:
        split = _split_frame(payload)
        assert split is not None
        groups, _ = split
        local = datetime.fromtimestamp(T_RX - offset, UTC) + timedelta(hours=1)
        for g in groups:
            if g[0] == "DATE":
                g[1] = "H" + local.strftime("%y%m%d%H%M%S")
        frame = "".join(_std(label, data, horo) for label, horo, data in groups)
        return ("\x02" + frame + "\x03").encode("latin-1") if payload[:1] == b"\x02" else frame.encode()
    return payload


MUTATORS: dict[str, Callable[[bytes, random.Random], bytes]] = {
    "up/tic": mutate_tic, "up/json": mutate_json, "up/event": mutate_json,
    "up/ack": mutate_json, "up/senml": mutate_senml,
}
_AWARE_PLUS2 = timezone(timedelta(hours=2))


def _received(rng: random.Random) -> datetime:
    r = rng.random()
    if r < 0.88:
        return RECEIVED
    if r < 0.93:
        return RECEIVED.astimezone(_AWARE_PLUS2)
    if r < 0.97:
        return RECEIVED + timedelta(microseconds=rng.randrange(1, 10**6))
    if r < 0.985:
        return RECEIVED.replace(tzinfo=None)
    return rng.choice([datetime(2009, 6, 1, tzinfo=UTC), datetime(2026, 1, 15, 19, 40, tzinfo=UTC)])


def _topic(device_type: str, channel: str, rng: random.Random) -> str:
    r = rng.random()
    device = rng.choice(BY_TYPE.get(device_type, ["meter-1"]))
    if r < 0.06:
        device = rng.choice(list(DEVICES))
    elif r < 0.075:
        channel = rng.choice(TOPIC_CHANNELS)
    elif r < 0.085:
        return rng.choice(["foo/bar", "maillage//x/up/json", "maillage/t1/meter-1",
                           "maillage/t2/meter-1/up/json", f"maillage/{TENANT}/ghost-1/{channel}",
                           f"maillage/{TENANT}/{'d' * 129}/{channel}", f"maillage/{'t' * 65}/m/up/tic"])
    return f"maillage/{TENANT}/{device}/{channel}"


def messages(n: int, seed: int = 1) -> Iterator[Message]:
    """`n` messages: a third re-stamped seeds (accepted), the rest mutated in various ways."""
    rng = random.Random(seed)
    pool = seeds()
    for _ in range(n):
        device_type, channel, payload = rng.choice(pool)
        payload = restamp(channel, payload, rng)
        r = rng.random()
        if r >= 0.35:
            mutate = MUTATORS.get(channel)
            if mutate is not None and r < 0.85:
                payload = mutate(payload, rng)
            else:
                payload = mutate_bytes(payload, rng)
        yield _topic(device_type, channel, rng), payload, _received(rng)


# --- outcomes --------------------------------------------------------------------------------

def registry() -> Any:
    """The in-memory registry of `DEVICES` (and an unrelated tenant)."""
    from maillage.ingest.registry_cache import KnownDevice, RegistryCache

    # The care sensors are registered under the corpus's hub, the lamp under its cabinet: the
    # relays' messages keep the reference outcomes (relay_not_parent is tested apart).
    parents = {"streetlight": "cab-1"}
    known = {(TENANT, d): KnownDevice(i, t, since, parents.get(t, "hub-1" if t.startswith("care_") else None))
             for i, (d, (t, since)) in enumerate(DEVICES.items())}
    known[("t2", "meter-1")] = KnownDevice(999, "meter", FLOOR)
    return RegistryCache.in_memory(known)


def outcome_entry(outcome: Any) -> list[Any]:
    """What the gateway takes from an outcome, as JSON: the rejection, or each record."""
    rej = outcome.rejection
    if rej is not None:
        return ["rejected", outcome.channel, str(rej.reason), rej.detail, rej.tenant,
                rej.device_id, type(rej.error).__name__ if rej.error is not None else None]
    return ["accepted", outcome.channel,
            [[env.kind, env.key.decode(), env.to_kafka().decode(), len(env.values)]
             for env in outcome.envelopes]]


def digest(entry: list[Any]) -> str:
    """A short digest of an outcome entry."""
    return hashlib.sha256(orjson.dumps(entry)).hexdigest()[:16]
