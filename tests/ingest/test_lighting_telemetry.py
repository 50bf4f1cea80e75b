"""Public lighting telemetry through canonical JSON and SenML."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ingest_helpers import ctx

from maillage.envelope import Envelope
from maillage.errors import DlqReason, PayloadError
from maillage.ingest.formats import parse_message
from maillage.ingest.formats.lighting import LAMP_STATUSES

TS = "2026-11-23T17:05:00Z"


def json_record(doc: Any, device_type: str | None = "streetlight") -> list[Envelope]:
    return parse_message(orjson.dumps(doc), ctx("up/json", device_type))


def test_streetlight_record_with_status_in_attrs() -> None:
    """The documented streetlight record: lamp values, burning hours, status."""
    [env] = json_record({"ts": TS, "values": {"lamp_on": True, "dimming_pct": 40,
                                              "lamp_power_w": 38.2, "energy_import_wh": 12345,
                                              "burning_hours_h": 10234},
                         "attrs": {"status": "lampFailure"}})
    assert env.values == {"lamp_on": 1.0, "dimming_pct": 40.0, "lamp_power_w": 38.2,
                          "energy_import_wh": 12345.0, "burning_hours_h": 10234.0}
    assert env.attrs == {"status": "lampFailure"}
    assert env.unknown_metrics == ()


@pytest.mark.parametrize("status", sorted(LAMP_STATUSES))
def test_top_level_status(status: str) -> None:
    """A top-level status goes to attrs; with it, values may be left out."""
    [env] = json_record({"ts": TS, "status": status})
    assert env.attrs == {"status": status}
    assert env.values == {}


def test_status_without_device_type_is_accepted() -> None:
    """When the registry gave no type, a top-level status is still read (and checked)."""
    [env] = json_record({"ts": TS, "status": "supplyLoss", "values": {"lamp_on": 0}},
                        device_type=None)
    assert env.attrs == {"status": "supplyLoss"}


def test_cabinet_per_phase_values_are_canonical() -> None:
    """A lighting cabinet's per-phase measurements are known metrics."""
    values = {f"{m}_l{p}_{u}": 1.0 for m, u in (("voltage", "v"), ("current", "a"),
                                                 ("active_power", "w")) for p in (1, 2, 3)}
    [env] = json_record({"ts": TS, "values": {**values, "energy_import_wh": 5}},
                        device_type="lighting_cabinet")
    assert env.unknown_metrics == ()


def test_meter_records_are_unchanged() -> None:
    """Non-lighting records keep the canonical JSON behaviour (no range checks)."""
    [env] = json_record({"ts": TS, "values": {"dimming_pct": 140}}, device_type="meter")
    assert env.values == {"dimming_pct": 140.0}


def test_senml_streetlight() -> None:
    """The same telemetry as SenML, with the status as a string value."""
    [env] = parse_message(orjson.dumps([
        {"bn": "urn:dev:mac:0004a30b001c2a6f:", "n": "lamp_on", "vb": True},
        {"n": "dimming", "u": "%", "v": 40}, {"n": "lamp_power", "u": "W", "v": 38.2},
        {"n": "energy", "u": "kWh", "v": 12.345}, {"n": "burning_hours", "u": "h", "v": 10234},
        {"n": "status", "vs": "dimmingFailure"},
    ]), ctx("up/senml", "streetlight"))
    assert env.values == pytest.approx({"lamp_on": 1.0, "dimming_pct": 40.0,
                                        "lamp_power_w": 38.2, "energy_import_wh": 12345.0,
                                        "burning_hours_h": 10234.0})
    assert env.attrs == {"status": "dimmingFailure"}


@pytest.mark.parametrize(("doc", "device_type", "reason", "detail"), [
    pytest.param({"ts": TS, "status": "broken"}, "streetlight", DlqReason.INVALID_SCHEMA,
                 "broken", id="unknown-status"),
    pytest.param({"ts": TS, "status": "LAMPFAILURE"}, "streetlight", DlqReason.INVALID_SCHEMA,
                 "LAMPFAILURE", id="wrong-case"),
    pytest.param({"ts": TS, "status": 3}, "streetlight", DlqReason.INVALID_SCHEMA, "status",
                 id="numeric-status"),
    pytest.param({"ts": TS, "values": {"lamp_on": 1}, "attrs": {"status": "fine"}},
                 "streetlight", DlqReason.INVALID_SCHEMA, "fine", id="unknown-attrs-status"),
    pytest.param({"ts": TS, "status": "ok", "attrs": {"status": "lampFailure"}}, "streetlight",
                 DlqReason.INVALID_SCHEMA, "differ", id="two-statuses"),
    pytest.param({"ts": TS, "status": "ok"}, "meter", DlqReason.INVALID_SCHEMA, "lighting",
                 id="status-on-a-meter"),
    pytest.param({"ts": TS, "values": {"dimming_pct": 140}}, "streetlight", DlqReason.BAD_VALUE,
                 "dimming_pct", id="dimming-above-100"),
    pytest.param({"ts": TS, "values": {"lamp_on": 2}}, "streetlight", DlqReason.BAD_VALUE,
                 "lamp_on", id="lamp-on-2"),
    pytest.param({"ts": TS, "values": {"lamp_power_w": -3}}, "streetlight", DlqReason.BAD_VALUE,
                 "lamp_power_w", id="negative-power"),
    pytest.param({"ts": TS, "values": {"burning_hours_h": -1}}, "lighting_cabinet",
                 DlqReason.BAD_VALUE, "burning_hours_h", id="negative-hours"),
    pytest.param({"ts": TS}, "streetlight", DlqReason.INVALID_SCHEMA, "values",
                 id="neither-values-nor-status"),
    pytest.param({"ts": TS, "status": "ok", "values": []}, "streetlight",
                 DlqReason.INVALID_SCHEMA, "values", id="values-not-an-object"),
])
def test_rejected_lighting_records(doc: dict[str, Any], device_type: str, reason: DlqReason,
                                   detail: str) -> None:
    """Unknown statuses and impossible values are rejected with a reason."""
    with pytest.raises(PayloadError) as err:
        json_record(doc, device_type)
    assert err.value.reason is reason
    assert detail in err.value.detail


def test_senml_unknown_status_is_rejected() -> None:
    """The status vocabulary applies to SenML too."""
    with pytest.raises(PayloadError) as err:
        parse_message(orjson.dumps([{"n": "status", "vs": "on fire"}]),
                      ctx("up/senml", "streetlight"))
    assert err.value.reason is DlqReason.INVALID_SCHEMA


@st.composite
def streetlight_records(draw: st.DrawFn) -> dict[str, Any]:
    """A valid streetlight record, with or without status."""
    values = draw(st.fixed_dictionaries({}, optional={
        "lamp_on": st.booleans(), "dimming_pct": st.integers(0, 100),
        "lamp_power_w": st.floats(0, 250), "energy_import_wh": st.integers(0, 10**9),
        "burning_hours_h": st.integers(0, 100_000)}))
    doc: dict[str, Any] = {"ts": draw(st.integers(1_700_000_000_000, 1_900_000_000_000))}
    status = draw(st.none() | st.sampled_from(sorted(LAMP_STATUSES)))
    if status is not None:
        doc["status"] = status
    if values or status is None:
        doc["values"] = values or {"lamp_on": False}
    return doc


@settings(max_examples=200, deadline=None)
@given(st.lists(streetlight_records(), min_size=1, max_size=5))
def test_valid_streetlight_records_always_parse(records: list[dict[str, Any]]) -> None:
    """Valid records in range, with any known status, always parse."""
    envelopes = json_record(records)
    assert [e.attrs.get("status") for e in envelopes] == [r.get("status") for r in records]


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["ts", "values", "attrs", "status", "seq"]),
                       st.none() | st.booleans() | st.integers(-10, 200) | st.text(max_size=15)
                       | st.dictionaries(st.sampled_from(["lamp_on", "dimming_pct", "status"]),
                                         st.integers(-5, 200) | st.text(max_size=12)),
                       max_size=5))
def test_random_lighting_records_raise_only_payload_errors(doc: dict[str, Any]) -> None:
    """Odd lighting records (times kept ordinary) never crash the parser."""
    if isinstance(doc.get("ts"), str):
        doc["ts"] = TS
    try:
        json_record(doc)
    except PayloadError:
        pass
