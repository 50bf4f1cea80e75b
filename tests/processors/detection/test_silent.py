"""Silent devices (pure): learned intervals, offline and back, group outages collapsed."""

from __future__ import annotations

import random

from maillage.envelope import Envelope, SourceFormat
from maillage.processors.detection.model import DeviceInfo, Kind
from maillage.processors.detection.silent import (
    FLOOR_S,
    Seen,
    SilentState,
    check,
    heard,
    learn,
    observe,
)

S = 1_000_000  # µs per second
T0 = 1_780_000_000 * S


def _learned(interval_s: float, n: int = 30, jitter: float = 0.0, seed: int = 1) -> dict:
    rng = random.Random(seed)
    memory: dict = {}
    t = T0
    for _ in range(n):
        t += int(interval_s * S * (1 + rng.uniform(-jitter, jitter)))
        learn(memory, t, t + 200_000)
    return memory


def _lamp(i: int, cabinet: str = "cab-1", tenant: str = "t1") -> DeviceInfo:
    return DeviceInfo(tenant=tenant, device_id=f"lamp-{i:03d}", type="streetlight",
                      meta={"cabinet": cabinet}, expected_interval_s=10)


def test_learn_regular_device() -> None:
    """A 10 s reporter is learned at 10 s; times are kept in µs."""
    m = _learned(10, jitter=0.05)
    assert abs(m["interval_s"] - 10) < 1.5
    assert m["last_rx"] == m["last_ts"] + 200_000


def test_learn_warmup_then_published() -> None:
    """No interval before three intervals were seen."""
    m: dict = {}
    for i in range(3):
        learn(m, T0 + i * 60 * S, T0 + i * 60 * S)
    assert "interval_s" not in m
    learn(m, T0 + 3 * 60 * S, T0 + 3 * 60 * S)
    assert m["interval_s"] == 60.0


def test_learn_ignores_duplicates_bursts_and_gaps() -> None:
    """Same-time records and out-of-order ones say nothing; one outage barely moves it."""
    m = _learned(60)
    before = m["interval_s"]
    last = m["last_ts"]
    learn(m, last, last)  # a second metric of the same message
    learn(m, last - 30 * S, last + S)  # late record: receive time moves, cadence does not
    assert m["interval_s"] == before and m["last_ts"] == last and m["last_rx"] == last + S
    learn(m, last + 6 * 3600 * S, last + 6 * 3600 * S)  # back after a six-hour outage
    assert m["interval_s"] < before * 1.5


def test_learn_tracks_longest_regular_gap_of_bursty_device() -> None:
    """Bursts between heartbeats do not shrink the interval to the burst rate."""
    rng = random.Random(3)
    m: dict = {}
    t = T0
    for i in range(300):
        t += 600 * S if i % 4 == 0 else int(rng.uniform(1, 5) * S)
        learn(m, t, t)
    assert m["interval_s"] > 100


def test_fifteen_minute_device_not_flagged_after_five_minutes_ten_second_one_is() -> None:
    """Silence is judged against each device's own learned interval."""
    slow, fast = _learned(900), _learned(10)
    devices = [Seen(DeviceInfo("t1", "meter-1", "electricity_meter"), slow["last_rx"],
                    slow["interval_s"]),
               Seen(DeviceInfo("t1", "sensor-1", "environment"), fast["last_rx"],
                    fast["interval_s"])]
    now = max(slow["last_rx"], fast["last_rx"]) + 5 * 60 * S
    out = check(SilentState(), now, devices)
    assert [(t.change, t.anomaly.device_id, t.anomaly.kind) for t in out] == [
        ("open", "sensor-1", Kind.DEVICE_OFFLINE)]
    # The slow meter goes offline only past 3 x 15 min.
    assert check(SilentState(), slow["last_rx"] + 44 * 60 * S, devices[:1]) == []
    assert len(check(SilentState(), slow["last_rx"] + 46 * 60 * S, devices[:1])) == 1


def test_single_silent_lamp_then_back() -> None:
    """One silent lamp among 200: a device anomaly; its next message closes it."""
    state = SilentState()
    last = {i: T0 - (i % 10) * S for i in range(200)}
    now = T0 + 30 * S
    seen = [Seen(_lamp(i), last[i], 10.0) for i in range(200)]
    assert check(state, now, seen) == []
    later = T0 + 5 * 60 * S
    seen = [Seen(_lamp(i), later - (i % 10) * S if i else last[0], 10.0) for i in range(200)]
    out = check(state, later, seen)
    assert [(t.change, t.anomaly.device_id, t.anomaly.kind) for t in out] == [
        ("open", "lamp-000", Kind.DEVICE_OFFLINE)]
    a = out[0].anomaly
    assert a.start_us == last[0] and a.group is None
    assert a.evidence["threshold_s"] == FLOOR_S and a.evidence["interval_s"] == 10.0
    assert check(state, later + 5 * S, seen) == []  # not re-raised
    back = later + 7 * S
    seen[0] = Seen(_lamp(0), back, 10.0)
    out = check(state, back + S, seen)
    assert [(t.change, t.anomaly.id, t.anomaly.end_us) for t in out] == [("close", a.id, back)]
    assert state.devices == {}


def test_two_hundred_lamps_of_one_cabinet_one_anomaly() -> None:
    """Acceptance 4: a cabinet's 200 lamps silent together give one anomaly, on the cabinet."""
    rng = random.Random(7)
    cut = T0  # power lost: every lamp's last message lies within its last 10 s interval
    seen = [Seen(_lamp(i), cut - int(rng.uniform(0, 10) * S), 10.0) for i in range(200)]
    seen.append(Seen(DeviceInfo("t1", "cab-1", "lighting_cabinet", expected_interval_s=60),
                     cut - 20 * S, 60.0))
    state = SilentState()
    out: list = []
    for step in range(0, 40 * 60, 5):  # the job every 5 s for 40 minutes
        now = cut + step * S  # the rest of the territory goes on reporting
        alive = [Seen(DeviceInfo("t1", f"meter-{i}", "meter"), now - i * S, 60.0)
                 for i in range(50)]
        out += check(state, now, seen + alive)
    opens = [t for t in out if t.change == "open"]
    assert len(opens) == 1, [(t.change, t.anomaly.device_id) for t in out]
    a = opens[0].anomaly
    assert (a.kind, a.device_id, a.group) == (Kind.GROUP_OFFLINE, "cab-1", "cabinet:cab-1")
    assert a.evidence["silent"] == 200 and a.evidence["members"] == 201  # lamps first
    assert len(a.evidence["devices"]) == 50 and "lamp-000" in a.evidence["devices"]
    updates = [t.anomaly for t in out if t.change == "update"]
    assert [u.evidence["silent"] for u in updates] == [201]  # then the cabinet, same anomaly
    assert updates[0].id == a.id
    assert not [t for t in out if t.anomaly.kind == Kind.DEVICE_OFFLINE]
    # Power back: the group closes, at the first lamp heard from again.
    back = cut + 41 * 60 * S
    seen = [Seen(s.device, back + i * 1000, s.interval_s) for i, s in enumerate(seen)]
    alive = [Seen(DeviceInfo("t1", f"meter-{i}", "meter"), back, 60.0) for i in range(50)]
    out = check(state, back + 10 * S, seen + alive)
    assert [(t.change, t.anomaly.id) for t in out] == [("close", a.id)]
    assert out[0].anomaly.end_us == back + 200 * 1000 and state.groups == {}


def test_partial_outage_below_fraction_gives_device_anomalies() -> None:
    """Half a cabinet silent is not a cabinet outage: each silent lamp is its own anomaly."""
    seen = [Seen(_lamp(i), T0 if i < 5 else T0 + 10 * 60 * S, 10.0) for i in range(10)]
    out = check(SilentState(), T0 + 10 * 60 * S, seen)
    assert sorted(t.anomaly.device_id for t in out) == [f"lamp-{i:03d}" for i in range(5)]
    assert {t.anomaly.kind for t in out} == {Kind.DEVICE_OFFLINE}


def test_small_group_not_collapsed() -> None:
    """Four lamps of a cabinet silent together stay four device anomalies (minimum 5)."""
    seen = [Seen(_lamp(i), T0, 10.0) for i in range(4)]
    out = check(SilentState(), T0 + 120 * S, seen)
    assert len(out) == 4 and {t.anomaly.kind for t in out} == {Kind.DEVICE_OFFLINE}


def test_district_outage_covers_its_cabinets_and_dwelling() -> None:
    """A whole district silent is one district anomaly, even across cabinets and homes."""
    seen = [Seen(DeviceInfo("t1", f"lamp-{c}-{i}", "streetlight", district="Nord",
                            meta={"cabinet": f"cab-{c}"}), T0 - i * S, 10.0)
            for c in range(3) for i in range(8)]
    seen += [Seen(DeviceInfo("t1", f"care-{i}", "care_motion" if i else "care_hub",
                             district="Nord", dwelling="d1"), T0, 10.0) for i in range(4)]
    out = check(SilentState(), T0 + 90 * S, seen)
    assert [(t.change, t.anomaly.device_id, t.anomaly.group) for t in out] == [
        ("open", "district:Nord", "district:Nord"), ("open", "care-0", "dwelling:d1")]
    # Care devices are told per dwelling (care data), never listed in the district's anomaly.
    assert out[0].anomaly.evidence["silent"] == 24
    assert not [d for d in out[0].anomaly.evidence["devices"] if d.startswith("care")]


def test_everything_silent_and_nothing_heard_is_a_stall_not_an_outage() -> None:
    """Every device silent at once with nothing received for a minute: no anomaly at all."""
    seen = [Seen(DeviceInfo("t1", f"m-{i}", "meter"), T0 - i * S, 10.0) for i in range(60)]
    assert check(SilentState(), T0 + 10 * 60 * S, seen) == []
    # One device still reporting: the others' silence is real.
    seen.append(Seen(DeviceInfo("t1", "alive", "meter"), T0 + 10 * 60 * S, 10.0))
    out = check(SilentState(), T0 + 10 * 60 * S, seen)
    assert len(out) == 60 and {t.anomaly.kind for t in out} == {Kind.DEVICE_OFFLINE}


def test_dwelling_outage_on_its_hub() -> None:
    """A home's sensors silent together: one anomaly on the hub naming the dwelling."""
    seen = [Seen(DeviceInfo("t1", f"d1-{n}", t, dwelling="d1"), T0, 600.0)
            for n, t in [("motion", "care_motion"), ("hub", "care_hub"), ("door", "care_door")]]
    out = check(SilentState(), T0 + 31 * 60 * S, seen)
    assert [(t.anomaly.kind, t.anomaly.device_id, t.anomaly.group) for t in out] == [
        (Kind.GROUP_OFFLINE, "d1-hub", "dwelling:d1")]


def test_never_seen_and_unknown_interval_not_offline() -> None:
    """A device that never sent anything, or whose interval is unknown, is never offline."""
    seen = [Seen(DeviceInfo("t1", "new", "streetlight", expected_interval_s=10), None, None),
            Seen(DeviceInfo("t1", "quiet", "streetlight"), T0, None)]
    assert check(SilentState(), T0 + 86_400 * S, seen) == []


def test_registry_interval_before_learning_and_larger_wins() -> None:
    """Before learning, the registry interval; after, the larger of registry and learned."""
    dev = DeviceInfo("t1", "hb", "care_door", expected_interval_s=600)
    assert check(SilentState(), T0 + 29 * 60 * S, [Seen(dev, T0, None)]) == []
    assert len(check(SilentState(), T0 + 31 * 60 * S, [Seen(dev, T0, None)])) == 1
    # Events every few seconds between heartbeats do not shorten the heartbeat's allowance.
    assert check(SilentState(), T0 + 29 * 60 * S, [Seen(dev, T0, 5.0)]) == []


def test_state_json_round_trip_and_deleted_device_closes() -> None:
    """The open anomalies survive a JSON round trip; a device gone from the registry closes."""
    state = SilentState()
    seen = [Seen(_lamp(i), T0, 10.0) for i in range(6)] + [
        Seen(DeviceInfo("t1", "m", "electricity_meter"), T0, 10.0)]
    out = check(state, T0 + 90 * S, seen)
    assert sorted(t.anomaly.kind for t in out) == [Kind.DEVICE_OFFLINE, Kind.GROUP_OFFLINE]
    again = SilentState.from_json(state.to_json())
    assert again == state
    assert check(again, T0 + 95 * S, seen) == []
    out = check(again, T0 + 100 * S, seen[:-1])
    assert [(t.change, t.anomaly.device_id) for t in out] == [("close", "m")]


def test_rejected_messages_keep_a_device_from_being_offline() -> None:
    """A device sending malformed messages is heard: not offline, its interval untouched."""
    m = _learned(10)
    interval, last_ts, before = m["interval_s"], m["last_ts"], m["last_rx"]
    for k in range(1, 31):  # five minutes of rejected messages
        heard(m, before + k * 10 * S)
    assert m["interval_s"] == interval and m["last_ts"] == last_ts
    now = m["last_rx"] + 5 * S
    dev = DeviceInfo("t1", "garbled", "meter")
    assert check(SilentState(), now, [Seen(dev, m["last_rx"], interval)]) == []
    assert len(check(SilentState(), now, [Seen(dev, before, interval)])) == 1  # without them


def test_cabinet_outage_then_its_district_keeps_the_cabinet_open() -> None:
    """A cabinet down first, then its whole district: the cabinet's anomaly is not closed."""
    lamps = [Seen(DeviceInfo("t1", f"lamp-{i}", "streetlight", district="Sud",
                             meta={"cabinet": "cab-9"}), T0, 10.0) for i in range(10)]
    meters = [Seen(DeviceInfo("t1", f"meter-{i}", "meter", district="Sud"), T0 + 10 * 60 * S,
                   60.0) for i in range(40)]
    state = SilentState()
    out = check(state, T0 + 65 * S, lamps + meters)
    assert [(t.change, t.anomaly.group) for t in out] == [("open", "cabinet:cab-9")]
    meters = [Seen(m.device, T0 + 5 * 60 * S, 60.0) for m in meters]  # the district goes down
    elsewhere = [Seen(DeviceInfo("t1", f"far-{i}", "meter"), T0 + 9 * 60 * S, 60.0)
                 for i in range(10)]
    out = check(state, T0 + 9 * 60 * S, lamps + meters + elsewhere)
    assert [(t.change, t.anomaly.group) for t in out] == [("open", "district:Sud")]
    assert out[0].anomaly.evidence["silent"] == 50
    assert check(state, T0 + 9 * 60 * S + 5 * S, lamps + meters + elsewhere) == []
    assert set(state.groups) == {("t1", "cabinet:cab-9"), ("t1", "district:Sud")}


def test_observe_skips_status_messages() -> None:
    """A will or a retained status replayed to a gateway does not make a device heard from."""
    m = _learned(10)
    before = dict(m)
    later = m["last_rx"] + 3600 * S
    observe(m, Envelope.trusted("t1", "d", "status", later, later, SourceFormat.STATUS, {}, {},
                                event="offline"))
    assert m == before
    observe(m, Envelope.trusted("t1", "d", "reading", later, later + 5, SourceFormat.JSON,
                                {"active_power_w": 1.0}, {}))
    assert m["last_rx"] == later + 5 and m["last_ts"] == later
