"""The parsers' fast paths agree with the step-by-step paths they shortcut.

TIC frames are read whole (`fast_groups`, with its memory of sound groups) or group by group
(`split_groups`/`parse_group`); SenML packs of plain numeric records in one loop or by the
general walk. Whenever the fast path answers, the envelopes must be the ones the slow path makes;
whenever it declines, the slow path decides alone.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ingest_helpers import ctx, frame, hist_group, std_group

from maillage.envelope import Envelope
from maillage.errors import PayloadError
from maillage.ingest.formats import parse_message, senml, tic, tic_frame


def outcome(payload: bytes, channel: str, device_type: str = "meter") -> Any:
    """The envelopes' Kafka records, or the rejection."""
    try:
        envelopes = parse_message(payload, ctx(channel, device_type))
    except PayloadError as exc:
        return ("rejected", exc.reason, exc.detail)
    except Exception as exc:  # noqa: BLE001 - a parser failure is an outcome too
        return ("failed", type(exc).__name__, str(exc))
    return [(e.key, e.to_kafka()) for e in envelopes]


def slow(monkeypatch: pytest.MonkeyPatch, payload: bytes, channel: str,
         device_type: str = "meter") -> Any:
    """The outcome with the fast paths turned off."""
    with monkeypatch.context() as m:
        m.setattr(tic, "fast_groups", lambda payload, uncached=frozenset(): None)
        m.setattr(senml, "_simple_pack", lambda pack, ctx: None)
        return outcome(payload, channel, device_type)


LABELS = ["BASE", "HCHC", "HCHP", "IINST", "IINST2", "IRMS1", "URMS1", "URMS3", "ISOUSC", "PAPP",
          "PREF", "SINSTS", "EAST", "EASF01", "EAIT", "DATE", "OPTARIF", "PTEC", "ADSC", "MSG1",
          "X+1", "bad"]
DATA = st.one_of(st.sampled_from(["000", "012345678", "HC..", " BASE ", "", "9" * 16,
                                  "9" * 400, "H260115200000", "E2601151959"]),
                 st.text(alphabet="0123456789 ABCHE.+-", max_size=14))


@st.composite
def tic_frames(draw: st.DrawFn) -> bytes:
    """Frames of either mode, mostly sound, some with a wrong checksum or a stray byte."""
    standard = draw(st.booleans())
    groups = []
    for label in draw(st.lists(st.sampled_from(LABELS), min_size=1, max_size=12)):
        data = draw(DATA)
        if standard:
            horodate = draw(st.one_of(st.none(), st.sampled_from(["H260115195900",
                                                                  "e260115195900", "X1"])))
            group = std_group(label, data, horodate if label != "DATE" else
                              draw(st.sampled_from(["H260115195900", "E260115235959",
                                                    "h260115195900", "H261315195900"])))
        else:
            group = hist_group(label, data)
        if draw(st.integers(0, 30)) == 0:
            group = group[:-2] + bytes([group[-2] ^ 1]) + group[-1:]
        groups.append(group)
    payload = frame(groups, stx=draw(st.booleans()))
    if draw(st.integers(0, 20)) == 0:
        at = draw(st.integers(0, len(payload)))
        payload = payload[:at] + draw(st.sampled_from([b"\r", b"\n", b"\x01", b"\xc3"])) + payload[at:]
    return payload


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tic_frames())
def test_tic_fast_and_slow_paths_agree(monkeypatch: pytest.MonkeyPatch, payload: bytes) -> None:
    """Cold, warm (its groups remembered) and step by step, a frame gives the same outcome."""
    cold = outcome(payload, "up/tic")
    warm = outcome(payload, "up/tic")
    assert warm == cold
    assert slow(monkeypatch, payload, "up/tic") == cold


def test_remembered_groups_are_bounded() -> None:
    """The memory of sound groups starts over when full."""
    for i in range(tic_frame.SOUND_GROUPS + 10):
        parse_message(frame([hist_group("ADCO", "1"), hist_group("OPTARIF", f"{i:04d}"),
                             hist_group("BASE", "1")]), ctx("up/tic", "meter"))
    assert 0 < len(tic_frame._SOUND[False]) <= tic_frame.SOUND_GROUPS


NAMES = ["energy_import_wh", "active_power_w", "power", "temp", "voltage_l2", "lamp", "dimming",
         "foo_bar", "hub-1/env-1/temp", "urn:dev:mac:door-1:door", "Bad Name", ""]
UNITS = ["W", "kW", "Wh", "kWh", "V", "mV", "Cel", "K", "%", "/", "furlong", ""]
FITTING = [("energy_import_wh", "Wh"), ("active_power_w", "W"), ("power", "kW"), ("temp", "Cel"),
           ("temp", "K"), ("voltage_l2", "mV"), ("dimming", "%"), ("foo_bar", None),
           ("hub-1/env-1/temp", "Cel"), ("urn:dev:mac:door-1:door", None), ("lamp", None),
           ("energy", "kWh"), ("x_y", "1")]
NUMBERS = st.one_of(st.integers(-10**6, 10**6), st.floats(-1e6, 1e6), st.floats(-1e6, 1e6),
                    st.floats(-1e6, 1e6), st.floats(allow_nan=False, allow_infinity=False),
                    st.sampled_from([0, -0.0, 1e308, -1e308, True, "1", None]))


@st.composite
def senml_packs(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Packs of numeric records, with base fields now and then."""
    pack = []
    for i in range(draw(st.integers(1, 5))):
        rec: dict[str, Any] = {}
        if draw(st.integers(0, 9)) == 0:
            pack.append(draw(st.sampled_from([{"bver": 10}, {"bn": "x/"}, {"vs": "ok", "n": "status"},
                                              {"n": "a", "v": 1, "foo_": 1}])))
        if i == 0 or draw(st.integers(0, 4)) == 0:
            for key, values in (("bn", st.sampled_from(["", "", "hub-1/bed-1/", "urn:dev:ow:1:", 5])),
                                ("bt", st.one_of(st.integers(0, 2**31), st.sampled_from(
                                    [-60, 1.5e9, 1e20, True]))),
                                ("bu", st.sampled_from(UNITS))):
                if draw(st.integers(0, 3 if key == "bu" else 1)) == 0:
                    rec[key] = draw(values)
        if draw(st.integers(0, 3)):
            name, unit = draw(st.sampled_from(FITTING))
            rec["n"] = name
            if unit is not None:
                rec["u"] = unit
        else:
            rec["n"] = draw(st.sampled_from(NAMES))
            if draw(st.booleans()):
                rec["u"] = draw(st.sampled_from(UNITS))
        if draw(st.integers(0, 3)) == 0:
            rec["t"] = draw(st.one_of(st.integers(-100, 100), st.sampled_from([0.5, 1e30, None])))
        rec[draw(st.sampled_from(["v"] * 12 + ["vb", "s"]))] = draw(NUMBERS)
        pack.append(rec)
    return pack


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(senml_packs(), st.sampled_from(["meter", "care_hub", "streetlight"]))
def test_senml_fast_and_slow_paths_agree(monkeypatch: pytest.MonkeyPatch,
                                         pack: list[dict[str, Any]], device_type: str) -> None:
    """A pack gives the same outcome by the one-loop path (caches cold or warm) and the walk."""
    payload = orjson.dumps(pack)
    reference = slow(monkeypatch, payload, "up/senml", device_type)
    assert outcome(payload, "up/senml", device_type) == reference
    assert outcome(payload, "up/senml", device_type) == reference


def test_validated_constructor_still_refuses_naive_times() -> None:
    """`Envelope(...)` keeps the old validation (here: a time without a zone)."""
    from datetime import datetime

    from pydantic import ValidationError

    from maillage.envelope import SourceFormat

    now = datetime(2026, 1, 1)
    with pytest.raises(ValidationError, match="timestamp must carry a time zone"):
        Envelope(tenant="t", device_id="d", ts=now, received_at=now,
                 source_format=SourceFormat.JSON)
