"""Injected anomalies: each one is labelled with its device, kind and window, and shows in the data."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from maillage.registry.models import DeviceType
from maillage.simulators.anomalies import KINDS, LabelWriter
from maillage.simulators.engine import Engine, Publication
from maillage.simulators.payloads import verify_tic
from maillage.simulators.scenario import (
    Anomalies,
    Commune,
    Fleet,
    Intervals,
    LightingPolicy,
    Scenario,
)
from maillage.simulators.streetlights import Schedule
from maillage.simulators.territory import build_territory

START = datetime(2026, 1, 12, 9, 0, tzinfo=UTC)
SPAN = timedelta(days=2)
PARIS = ZoneInfo("Europe/Paris")

ROLE_TYPES = {
    "meter": {DeviceType.METER}, "meter_with_voltage": {DeviceType.METER}, "lamp": {DeviceType.STREETLIGHT},
    "dimmed_lamp": {DeviceType.STREETLIGHT}, "cabinet": {DeviceType.LIGHTING_CABINET},
    "care_button": {DeviceType.CARE_BUTTON}, "care_hub": {DeviceType.CARE_HUB},
    "care_env": {DeviceType.CARE_ENV},
    "care_sensor": {t for t in DeviceType if t.is_care},
    "care_battery": {t for t in DeviceType if t.is_care} - {DeviceType.CARE_HUB},
    "any_timed": set(DeviceType),
}


@dataclass
class Msg:
    """A publication decoded back: measurement time, values, attrs, event name."""

    at: datetime
    ts: datetime | None
    values: dict[str, float]
    attrs: dict[str, Any]
    event: str | None
    raw: bytes
    valid: bool


def _tic(payload: bytes) -> dict[str, str]:
    groups = {}
    for raw in payload.strip(b"\x02\x03").split(b"\n")[1:]:
        parts = raw.rstrip(b"\r").decode().split("\t" if b"\t" in raw else " ")
        groups[parts[0]] = parts[-3] if len(parts) > 3 else parts[1]
        if parts[0] == "DATE":
            groups["DATE"] = parts[1]
    return groups


def decode(pub: Publication) -> Msg:
    """Read back what a device said, whatever its format; `valid=False` for a broken payload."""
    try:
        if pub.channel == "up/tic":
            if not verify_tic(pub.payload) or not pub.payload.endswith(b"\x03"):
                raise ValueError("bad frame")
            g = _tic(pub.payload)
            ts = None
            if "DATE" in g:
                ts = datetime.strptime(g["DATE"][1:], "%y%m%d%H%M%S").replace(tzinfo=PARIS)
            index = sum(int(g[k]) for k in ("BASE", "HCHC", "HCHP", "EAST") if k in g)
            values = {"energy_import_wh": float(index),
                      "apparent_power_va": float(g.get("SINSTS") or g.get("PAPP") or 0),
                      "active_power_w": float(g.get("SINSTS") or g.get("PAPP") or 0)}
            if "URMS1" in g:
                values["voltage_v"] = float(g["URMS1"])
            return Msg(pub.at, ts.astimezone(UTC) if ts else None, values, {}, None,
                       pub.payload, True)
        doc = orjson.loads(pub.payload)
        if pub.channel == "up/senml":
            ts = datetime.fromtimestamp(doc[0]["bt"], UTC)
            return Msg(pub.at, ts, {r["n"]: r["v"] for r in doc}, {}, None, pub.payload, True)
        ts = datetime.fromisoformat(doc["ts"].replace("Z", "+00:00"))
        return Msg(pub.at, ts, doc.get("values", {}), doc.get("attrs", {}), doc.get("event"),
                   pub.payload, True)
    except (ValueError, KeyError, IndexError, orjson.JSONDecodeError):
        return Msg(pub.at, None, {}, {}, None, pub.payload, False)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Scenario, Engine, list[dict[str, Any]],
                                                          dict[str, list[Msg]]]:
    """Two simulated days of a small territory with many anomalies, and its labels file."""
    sc = Scenario(
        seed=11,
        communes=[Commune(name="Rennes", lat=48.1173, lon=-1.6778,
                          lighting=LightingPolicy(mode="dimming", dim_level_pct=50)),
                  Commune(name="Vitre", lat=48.1236, lon=-1.2089)],
        fleet=Fleet(meters=30, streetlights=24, care_homes=5, lamps_per_cabinet=12,
                    presence_share=0.0),
        intervals=Intervals(meter_s=180, streetlight_s=180, cabinet_s=300, care_env_s=300,
                            care_heartbeat_s=600, luminosity_s=600),
        anomalies=Anomalies(per_device_day=0.3, first_after_s=300, first_wave=12))
    path = tmp_path_factory.mktemp("labels") / "labels.jsonl"
    labels = LabelWriter(path, "t")
    engine = Engine(sc, start=START, labels=labels)
    msgs: dict[str, list[Msg]] = defaultdict(list)
    for pub in engine.publications(START + SPAN):
        msgs[pub.device_id].append(decode(pub))
    labels.close()
    return sc, engine, [orjson.loads(line) for line in path.read_bytes().splitlines()], msgs


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_every_injected_anomaly_is_labelled(run) -> None:  # type: ignore[no-untyped-def]
    """Labels = the anomalies that began during the run: same device, kind, start and end."""
    sc, engine, labels, _ = run
    begun = [i for i in engine.injected if i.start < START + SPAN]
    assert {(i.device_id, i.kind, _iso(i.start), _iso(i.end)) for i in begun} == {
        (lb["device_id"], lb["kind"], lb["start"], lb["end"]) for lb in labels}
    assert len(labels) == len(begun)
    types = {s.device_id: s.type for s in build_territory(sc).specs()}
    for lb in labels:
        assert lb["tenant"] == "t"
        assert types[lb["device_id"]] in ROLE_TYPES[KINDS[lb["kind"]][0]], lb
        assert lb["start"] < lb["end"]
    assert len({lb["kind"] for lb in labels}) >= 18  # nearly every kind in two days


def _window(msgs: list[Msg], lb: dict[str, Any]) -> list[Msg]:
    start = datetime.fromisoformat(lb["start"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(lb["end"].replace("Z", "+00:00"))
    return [m for m in msgs if start <= m.at < end]


def test_anomalies_show_in_the_published_data(run) -> None:  # type: ignore[no-untyped-def]
    """Each kind leaves the trace a detector would look for, inside its labelled window."""
    sc, engine, labels, msgs = run
    territory = engine.territory
    homes = {d: h for h in territory.care_homes for d in [h.hub, h.button, h.env]
             + [s for s, _ in h.sensors()]}
    rennes = sc.communes[0]
    sched = Schedule(rennes.lat, rennes.lon, rennes.lighting, PARIS, 0)
    margin = timedelta(minutes=5)  # cabinets' clocks and positions differ a little

    def dark(t: datetime) -> bool:
        return sched.is_dark(t - margin) and sched.is_dark(t + margin)

    def light(t: datetime) -> bool:
        return not sched.is_dark(t - margin) and not sched.is_dark(t + margin)
    checked: set[str] = set()
    for lb in labels:
        kind, device = lb["kind"], lb["device_id"]
        win = _window(msgs[device], lb)
        data = [m for m in win if m.valid and m.values]
        start = datetime.fromisoformat(lb["start"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(lb["end"].replace("Z", "+00:00"))
        if kind == "sensor_offline":
            assert win == [], lb
        elif kind == "malformed_payload":
            assert win and not any(m.valid for m in win), lb
        elif kind == "duplicate":
            assert any(a.raw == b.raw for a, b in zip(win, win[1:], strict=False)), lb
        elif kind == "clock_skew":
            assert data and all(m.ts is not None and (m.ts - m.at).total_seconds()
                                == lb["params"]["skew_s"] for m in data), lb
        elif kind == "late_reading":
            after = [m for m in msgs[device] if m.at >= end and m.ts and m.ts < end]
            assert after and all(m.at - m.ts > timedelta(minutes=1) for m in after), lb
        elif kind == "out_of_order":
            seq = [m.ts for m in msgs[device] if m.ts and start <= m.at <= end + timedelta(hours=1)]
            assert any(b < a for a, b in zip(seq, seq[1:], strict=False)), lb
        elif kind == "spike":
            assert any(m.values["active_power_w"] >= 0.9 * lb["params"]["power_w"] for m in data), lb
        elif kind == "zero_consumption":
            assert data and all(m.values["active_power_w"] == 0 for m in data), lb
        elif kind == "voltage_out_of_range":
            assert data and all(not 207 <= m.values["voltage_v"] <= 253 for m in data), lb
        elif kind == "over_subscribed_power":
            site = next(s for s in territory.meters if s.device_id == device)
            assert data and all(m.values["apparent_power_va"] > site.subscribed_va for m in data), lb
        elif kind == "meter_stuck":
            assert len({m.values["energy_import_wh"] for m in data}) == 1, lb
        elif kind == "night_overconsumption":
            assert data and min(m.values["active_power_w"] for m in data) > 1000, lb
        elif kind == "lamp_failure":
            lit = [m for m in data if dark(m.at)]
            assert all(m.values["lamp_power_w"] == 0 and m.attrs["status"] == "lampFailure"
                       for m in lit), lb
        elif kind == "day_burner":
            day = [m for m in data if light(m.at)]
            assert day and all(m.values["lamp_on"] == 1 for m in day), lb
        elif kind == "dimming_not_applied":
            dimmed = [m for m in data if dark(m.at) and sched.in_night_window(m.at)]
            assert dimmed and all(m.values["dimming_pct"] == 100 for m in dimmed), lb
        elif kind == "cabinet_overconsumption":
            cab = next(c for c in territory.cabinets if c.device_id == device)
            ratio = lb["params"]["ratio"]
            for m in data:
                lamps = [next(x for x in reversed(msgs[lamp]) if x.at <= m.at and x.values)
                         for lamp in cab.lamps]
                lamp_w = sum(x.values["lamp_power_w"] for x in lamps)
                assert m.values["active_power_w"] >= min(lamp_w * ratio, lamp_w + 1) * 0.95 - 1, lb
        elif kind in ("fall", "panic_button"):
            name = "fall_detected" if kind == "fall" else "panic_button"
            assert [m.ts for m in win if m.event == name] == [start], lb
        elif kind == "battery_low":
            assert any(m.event == "battery_low" for m in win), lb
            assert all(m.values["battery_pct"] < 10 for m in data if "battery_pct" in m.values), lb
        elif kind in ("long_inactivity", "night_wandering"):
            home = homes[device]
            motion = [m for room in ("living", "kitchen", "bathroom")
                      for m in _window(msgs[home.motion(room)], lb) if m.event == "motion"]
            assert (not motion) if kind == "long_inactivity" else motion, lb
        elif kind in ("indoor_heat", "indoor_cold"):
            temps = [m.values["temperature_c"] for m in data
                     if m.at >= start + timedelta(hours=3)]
            if temps:
                assert (max(temps) > 28) if kind == "indoor_heat" else (min(temps) < 16), lb
        checked.add(kind)
    assert len(checked) >= 18


def test_labels_file_is_jsonl(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """One JSON object per line with tenant, device, kind, start, end and parameters."""
    _, _, labels, _ = run
    assert labels and set(labels[0]) == {"tenant", "device_id", "kind", "start", "end", "params"}
