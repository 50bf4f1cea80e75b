"""Realism of the pure models: lighting follows the sun, heating follows the cold, residents sleep."""

from __future__ import annotations

import random
import statistics
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import orjson
from astral import Observer
from astral.sun import dawn, dusk

from maillage.simulators import weather
from maillage.simulators.care import HomeLife
from maillage.simulators.engine import Engine
from maillage.simulators.meters import MeterModel
from maillage.simulators.scenario import (
    Anomalies,
    Commune,
    Fleet,
    Intervals,
    LightingPolicy,
    Scenario,
)
from maillage.simulators.territory import MeterSite, build_territory

PARIS = ZoneInfo("Europe/Paris")
QUIET = Anomalies(enabled=False)


def _lighting_scenario() -> Scenario:
    return Scenario(
        communes=[
            Commune(name="Rennes", lat=48.1173, lon=-1.6778, weight=1.0,
                    lighting=LightingPolicy(mode="all_night")),
            Commune(name="Vitre", lat=48.1236, lon=-1.2089, weight=1.0,
                    lighting=LightingPolicy(mode="cutoff", night_from=time(23, 0),
                                            night_to=time(5, 30))),
            Commune(name="Fougeres", lat=48.3524, lon=-1.1989, weight=1.0,
                    lighting=LightingPolicy(mode="dimming", night_from=time(22, 30),
                                            night_to=time(5, 30), dim_level_pct=40)),
        ],
        fleet=Fleet(streetlights=36, lamps_per_cabinet=12, presence_share=0.0,
                    luminosity_per_commune=0),
        intervals=Intervals(streetlight_s=60, cabinet_s=300), anomalies=QUIET)


def _lamp_series(start: datetime, hours: float) -> tuple[Scenario, dict[str, list[tuple[datetime, dict]]]]:
    sc = _lighting_scenario()
    series: dict[str, list[tuple[datetime, dict]]] = {}
    for pub in Engine(sc, start=start).publications(start + timedelta(hours=hours)):
        if pub.device_id.startswith("sl-"):
            series.setdefault(pub.device_id, []).append((pub.at, orjson.loads(pub.payload)["values"]))
    return sc, series


def test_lamps_switch_at_astral_dusk_and_dawn() -> None:
    """Each lamp lights within 3 minutes of astral's dusk for its site, and goes off near dawn."""
    start = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    sc, series = _lamp_series(start, 24)
    territory = build_territory(sc)
    cabinets = {c.device_id: c for c in territory.cabinets}
    assert len(series) == 36
    for lamp in territory.lamps:
        cab = cabinets[lamp.cabinet]
        obs = Observer(latitude=cab.lat, longitude=cab.lon)
        depression = sc.communes[lamp.commune].lighting.depression_deg
        expected_on = dusk(obs, date(2026, 3, 10), depression=depression, tzinfo=UTC)
        expected_off = dawn(obs, date(2026, 3, 11), depression=depression, tzinfo=UTC)
        points = series[lamp.device_id]
        on = next(t for t, v in points if v["lamp_on"] == 1)
        # Cut-off communes switch on again at 05:30 local: the last lit reading precedes dawn.
        last_lit = max(t for t, v in points if v["lamp_on"] == 1)
        off = next(t for t, v in points if t > last_lit)
        assert abs((on - expected_on).total_seconds()) <= 180, (lamp.device_id, on, expected_on)
        assert abs((off - expected_off).total_seconds()) <= 180, (lamp.device_id, off, expected_off)


def test_night_policies_cutoff_and_dimming() -> None:
    """At 2 a.m. local: all-night lamps at 100 %, cut-off lamps off, dimmed lamps at 40 %."""
    start = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    sc, series = _lamp_series(start, 15)
    territory = build_territory(sc)
    at_2am = datetime(2026, 3, 11, 2, 0, tzinfo=PARIS).astimezone(UTC)
    at_10pm = datetime(2026, 3, 10, 22, 0, tzinfo=PARIS).astimezone(UTC)
    for lamp in territory.lamps:
        points = series[lamp.device_id]
        night = next(v for t, v in points if t >= at_2am)
        evening = next(v for t, v in points if t >= at_10pm)
        mode = sc.communes[lamp.commune].lighting.mode
        assert evening["lamp_on"] == 1 and evening["dimming_pct"] == 100
        expected = {"all_night": (1, 100), "cutoff": (0, 0), "dimming": (1, 40)}[mode]
        assert (night["lamp_on"], night["dimming_pct"]) == expected, (lamp.device_id, night)
        if lamp.tech == "LED" and mode == "dimming":
            assert night["lamp_power_w"] < 0.5 * evening["lamp_power_w"]


def _daily_energy(site: MeterSite, first: date, days: int) -> list[tuple[float, float]]:
    """(daily mean outdoor temperature, kWh imported) for each day."""
    model = MeterModel(site, seed=7, tz=PARIS, interval_s=900, rng=random.Random(1))
    rng = random.Random(2)
    t = datetime(first.year, first.month, first.day, tzinfo=PARIS).astimezone(UTC)
    out: list[tuple[float, float]] = []
    model.next_reading(t, rng)
    for k in range(days):
        before = sum(model.registers.values())
        for _ in range(96):
            t += timedelta(minutes=15)
            model.next_reading(t, rng)
        kwh = (sum(model.registers.values()) - before) / 1000
        out.append((weather.daily_mean_c(7, 0, first + timedelta(days=k)), kwh))
    return out


def _site(electric: bool) -> MeterSite:
    return MeterSite(device_id="m", commune=0, district="centre", building="b", dwelling="b",
                     lat=48.11, lon=-1.68, housing="house", area_m2=110, occupants=3,
                     electric_heating=electric, tariff="hphc", subscribed_va=12000, pv_kwc=0.0,
                     fmt="json", adsc="000000000001")


def test_electric_heating_uses_more_energy_on_cold_days() -> None:
    """Over a winter, an electric-heated home's daily energy rises as the day gets colder."""
    days = _daily_energy(_site(True), date(2026, 1, 5), 70)
    temps, kwh = zip(*days, strict=True)
    assert statistics.correlation(temps, kwh) < -0.6
    ranked = sorted(days)
    cold = statistics.mean(k for _, k in ranked[:10])
    warm = statistics.mean(k for _, k in ranked[-10:])
    assert cold > 1.3 * warm, (cold, warm)
    # The same home heated with gas barely notices the weather.
    gas = _daily_energy(_site(False), date(2026, 1, 5), 70)
    assert statistics.mean(k for _, k in gas) < 0.6 * statistics.mean(kwh)
    assert 5 < statistics.mean(k for _, k in gas) < 20  # a household's 5-20 kWh a day


def test_resident_sleeps_at_night_and_follows_the_day() -> None:
    """In bed at 3 a.m. nearly always, rarely at 10:30; up within about an hour of habit."""
    sc = Scenario(communes=[Commune(name="Rennes", lat=48.11, lon=-1.68)],
                  fleet=Fleet(care_homes=12), anomalies=QUIET)
    territory = build_territory(sc)
    night, morning, total = 0, 0, 0
    for home in territory.care_homes:
        life = HomeLife(home, seed=sc.seed, tz=PARIS, injections=[])
        for k in range(10):
            day = date(2026, 2, 2) + timedelta(days=k)
            t3 = datetime(day.year, day.month, day.day, 3, 0, tzinfo=PARIS).astimezone(UTC)
            t1030 = datetime(day.year, day.month, day.day, 10, 30, tzinfo=PARIS).astimezone(UTC)
            night += life.plan_for(t3).place_at(t3) == "bed"
            morning += life.plan_for(t1030).place_at(t1030) == "bed"
            total += 1
            wake = life.wake(day)
            exits = life.events_between(home.bed, wake - timedelta(hours=1), wake + timedelta(hours=1))
            assert [e.event for e in exits][:1] == ["bed_exit"]
            local_wake = wake.astimezone(PARIS)
            assert abs(local_wake.hour + local_wake.minute / 60 - home.wake_h) < 1.6
            # Someone cooks: the kitchen sensor fires around lunch.
            noon = datetime(day.year, day.month, day.day, 11, 0, tzinfo=PARIS).astimezone(UTC)
            kitchen = life.events_between(home.motion("kitchen"), noon, noon + timedelta(hours=3))
            assert any(e.event == "motion" for e in kitchen)
    assert night / total >= 0.85
    assert morning / total <= 0.05


def test_bed_sensor_reports_occupied_at_night() -> None:
    """Published bed heartbeats: occupied between 1 and 5 a.m., empty in the afternoon."""
    sc = Scenario(communes=[Commune(name="Rennes", lat=48.11, lon=-1.68)],
                  fleet=Fleet(care_homes=6), intervals=Intervals(care_heartbeat_s=600),
                  anomalies=QUIET)
    start = datetime(2026, 2, 2, 12, 0, tzinfo=UTC)
    at_night, in_afternoon = [], []
    for pub in Engine(sc, start=start).publications(start + timedelta(days=2)):
        if not pub.device_id.endswith("-bed") or pub.channel != "up/json":
            continue
        hour = pub.at.astimezone(PARIS).hour
        occupied = orjson.loads(pub.payload)["values"]["bed_occupied"]
        if 1 <= hour < 5:
            at_night.append(occupied)
        elif 15 <= hour < 17:
            in_afternoon.append(occupied)
    assert statistics.mean(at_night) >= 0.85
    assert statistics.mean(in_afternoon) <= 0.3  # some residents nap


def test_indoor_temperature_follows_heating_and_weather() -> None:
    """Heated to the set-point in winter; a poorly insulated home warms up in a summer heat."""
    sc = Scenario(communes=[Commune(name="Rennes", lat=48.11, lon=-1.68)],
                  fleet=Fleet(care_homes=8), anomalies=QUIET)
    for home in build_territory(sc).care_homes:
        life = HomeLife(home, seed=sc.seed, tz=PARIS, injections=[])
        winter = life.indoor_c(datetime(2026, 1, 15, 15, tzinfo=UTC))
        assert abs(winter - home.heating_setpoint_c) < 0.01
        assert 17 < life.indoor_c(datetime(2026, 7, 20, 15, tzinfo=UTC)) < 30


def test_lamps_obey_commands_and_acknowledge() -> None:
    """`dim` sets the level of a lit lamp (or a whole cabinet's), `auto` resumes the schedule."""
    sc = _lighting_scenario()
    start = datetime(2026, 3, 10, 20, 0, tzinfo=UTC)  # dark everywhere
    engine = Engine(sc, start=start)
    territory = engine.territory
    lamp = territory.lamps[0]
    cab = next(c for c in territory.cabinets if c.device_id != lamp.cabinet)

    def level(device: str, t: datetime) -> float:
        return engine.by_id[device].model.state(t)[0]  # type: ignore[attr-defined,no-any-return]

    [ack] = engine.command(lamp.device_id, b'{"id": "c1", "cmd": "dim", "level": 30}', start)
    assert ack.channel == "up/ack"
    assert orjson.loads(ack.payload) == {"id": "c1", "ts": "2026-03-10T20:00:00Z",
                                         "status": "done", "level": 30.0}
    assert level(lamp.device_id, start) == 30
    engine.command(cab.device_id, b'{"id": 2, "cmd": "dim", "level": 60, "duration_s": 600}', start)
    assert {level(d, start) for d in cab.lamps} == {60}
    assert {level(d, start + timedelta(minutes=11)) for d in cab.lamps} == {100}
    engine.command(lamp.device_id, b'{"id": "c3", "cmd": "auto"}', start)
    assert level(lamp.device_id, start) == 100
    for bad in (b'{"id": "c4", "cmd": "explode"}', b"not json", b'{"id": 5, "cmd": "dim"}'):
        [nack] = engine.command(lamp.device_id, bad, start)
        assert orjson.loads(nack.payload)["status"] == "failed"
    [nack] = engine.command("nope", b'{"id": 6, "cmd": "dim", "level": 5}', start)
    assert orjson.loads(nack.payload)["status"] == "failed"  # not a lamp: no commands


def test_day_plans_hold_across_daylight_saving_changes() -> None:
    """Plans stay ordered and gap-free over the March and October clock changes."""
    sc = Scenario(communes=[Commune(name="Rennes", lat=48.11, lon=-1.68)],
                  fleet=Fleet(care_homes=4), anomalies=QUIET)
    for home in build_territory(sc).care_homes:
        life = HomeLife(home, seed=sc.seed, tz=PARIS, injections=[])
        for day in (date(2026, 3, 28), date(2026, 3, 29), date(2026, 10, 24), date(2026, 10, 25)):
            segs = life.plan(day).segments
            assert segs[0].start == life.wake(day)
            assert segs[-1].end == life.wake(day + timedelta(days=1))
            assert all(a.end == b.start and a.start < a.end for a, b in zip(segs, segs[1:],
                                                                            strict=False))
