"""Wire formats: Enedis TIC checksums, SenML units, canonical JSON, and the ingest parsers agree."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from maillage.simulators import payloads
from maillage.simulators.base import DeviceEvent, Sample

TS = datetime(2026, 1, 5, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(("group", "expected"), [
    # Examples of Enedis-NOI-CPT_54E: mode historique leaves the last separator out of the sum...
    (payloads.historique_group("MOTDETAT", "000000"), b"\nMOTDETAT 000000 B\r"),
    # ... mode standard includes it.
    (payloads.standard_group("VTIC", "02"), b"\nVTIC\t02\tJ\r"),
])
def test_tic_group_checksums(group: bytes, expected: bytes) -> None:
    """Groups carry the checksum the meter itself would send."""
    assert group == expected


def test_tic_frames_verify_in_both_modes() -> None:
    """Whole frames: STX/ETX, every checksum right, DATE in local time with the season letter."""
    hist = payloads.tic_historique(adco="021861348497", tariff="hphc", isousc_a=45,
                                   index_wh={"hc": 1234567, "hp": 7654321}, period="HC..",
                                   iinst_a=7, papp_va=1650)
    std = payloads.tic_standard(adsc="021861348497", ts=datetime(2026, 7, 1, 10, tzinfo=UTC),
                                tariff="base", index_wh={"base": 42}, export_wh=1000,
                                period="TH..", irms_a=3, urms_v=231, pref_kva=9, sinsts_va=700,
                                sinsti_va=0)
    for frame in (hist, std):
        assert frame.startswith(payloads.STX) and frame.endswith(payloads.ETX)
        assert payloads.verify_tic(frame)
    assert b"\nHCHC 001234567 " in hist
    assert b"\nDATE\tE260701120000\t\t" in std  # 10:00 UTC is 12:00 summer time in Paris
    assert b"\nEAIT\t000001000\t" in std
    broken = hist.replace(b"HCHC 001234567", b"HCHC 001234568")
    assert not payloads.verify_tic(broken)


def test_senml_pack_has_base_time_and_units() -> None:
    """RFC 8428: absolute base time on the first record, units from the metric vocabulary."""
    pack = orjson.loads(payloads.senml(Sample(TS, {"energy_import_wh": 10.0, "voltage_v": 231.0,
                                                   "lamp_on": 1.0})))
    assert pack[0]["bt"] == int(TS.timestamp()) and pack[0]["bt"] >= 2**28
    assert [(r["n"], r.get("u")) for r in pack] == [("energy_import_wh", "Wh"), ("voltage_v", "V"),
                                                     ("lamp_on", None)]


def test_canonical_json_and_event() -> None:
    """Canonical JSON and events carry the measurement time and the sequence number."""
    rec = orjson.loads(payloads.canonical_json([Sample(TS, {"active_power_w": 5.0},
                                                       {"status": "ok"})], seq=7))
    assert rec == {"ts": "2026-01-05T12:00:00Z", "seq": 7, "values": {"active_power_w": 5.0},
                   "attrs": {"status": "ok"}}
    ev = orjson.loads(payloads.event_json(DeviceEvent(TS, "battery_low",
                                                      values={"battery_pct": 8.0}), seq=3))
    assert ev == {"ts": "2026-01-05T12:00:00Z", "seq": 3, "event": "battery_low",
                  "values": {"battery_pct": 8.0}}


def test_ingest_parsers_accept_every_simulated_payload() -> None:
    """Whatever the simulator publishes (no faults injected) parses into readings or events."""
    from datetime import timedelta

    from maillage.ingest.formats import MessageContext, parse_message
    from maillage.simulators.engine import Engine
    from maillage.simulators.scenario import Anomalies, Fleet, Scenario, demo_scenario
    from maillage.simulators.territory import build_territory

    sc = Scenario(communes=demo_scenario().communes, anomalies=Anomalies(enabled=False),
                  fleet=Fleet(meters=25, streetlights=30, care_homes=2, presence_share=0.5,
                              pv_share=0.3))
    types = {s.device_id: s.type.value for s in build_territory(sc).specs()}
    start = datetime(2026, 6, 20, 5, 0, tzinfo=UTC)  # breakfast time: care events
    channels = set()
    for pub in Engine(sc, start=start).publications(start + timedelta(hours=1)):
        ctx = MessageContext(sc.tenant, pub.device_id, pub.channel, pub.at, types[pub.device_id])
        envelopes = parse_message(pub.payload, ctx)
        assert envelopes, pub
        channels.add(pub.channel)
    assert channels == {"up/json", "up/senml", "up/tic", "up/event"}
