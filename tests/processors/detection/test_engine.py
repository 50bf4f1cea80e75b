"""The detection engine on small rules: transitions, event time, group memory, determinism."""

from __future__ import annotations

from maillage.envelope import Envelope, SourceFormat
from maillage.processors.detection.engine import Engine, is_care, load_tables, rule_key
from maillage.processors.detection.model import DeviceInfo, Severity, Transition
from maillage.processors.detection.state import DeviceState, GroupState
from tests.processors.detection import rules_fixture as rf

T0 = 1_795_000_000_000_000  # 2026-11-19, epoch µs
MIN = 60_000_000
METER = DeviceInfo("t1", "m1", "meter")


def reading(dev: DeviceInfo, ts_us: int, **values: float) -> Envelope:
    return Envelope.trusted(dev.tenant, dev.device_id, "reading", ts_us, ts_us + 1000,
                            SourceFormat.JSON, dict(values), {})


def event(dev: DeviceInfo, ts_us: int, name: str) -> Envelope:
    return Envelope.trusted(dev.tenant, dev.device_id, "event", ts_us, ts_us + 1000,
                            SourceFormat.EVENT, {}, {}, event=name)


def engine(**kw: object) -> Engine:
    return Engine(rf.RULES, rf.GROUP_RULES, quality={"*": [rf.late_seen]}, online=False, **kw)  # type: ignore[arg-type]


def changes(ts: list[Transition]) -> list[tuple[str, str, str]]:
    return [(t.change, str(t.anomaly.kind), str(t.anomaly.severity)) for t in ts]


def run(eng: Engine, dev: DeviceInfo, powers: list[float], start: int = T0) -> list[Transition]:
    out: list[Transition] = []
    for i, p in enumerate(powers):
        out += eng.handle(dev, reading(dev, start + i * MIN, active_power_w=p))
    return out


def test_open_once_close_once() -> None:
    """A condition held for several records opens one anomaly; its end closes it, once."""
    out = run(engine(), METER, [100, 1500, 1500, 1500, 100, 100])
    assert changes(out) == [("open", "over_subscribed_power", "warning"),
                            ("close", "over_subscribed_power", "warning")]
    opened, closed = out
    assert opened.anomaly.start_us == T0 + MIN and opened.anomaly.end_us is None
    assert closed.anomaly.end_us == T0 + 4 * MIN
    assert closed.anomaly.id == opened.anomaly.id
    assert closed.anomaly.evidence["cleared"] == {"power_w": 100, "threshold_w": 1000.0}
    assert opened.event_id != closed.event_id


def test_update_on_severity_rise_and_rate_limited_score() -> None:
    """Severity rising updates at once; score moves are produced at most every 5 minutes."""
    # 1500 W opens (score .375), 2500 W raises to critical (.625), then 3900 W (.975) within
    # 5 minutes of that update: not produced; the same 10 minutes later: produced.
    out = run(engine(), METER, [1500, 2500, 3900, 3900, 3900, 3900, 3900, 3900, 3900, 3900])
    assert changes(out) == [("open", "over_subscribed_power", "warning"),
                            ("update", "over_subscribed_power", "critical"),
                            ("update", "over_subscribed_power", "critical")]
    assert out[2].anomaly.score == 0.975
    assert out[2].at_us - out[1].at_us >= 5 * MIN  # type: ignore[operator]
    assert len({t.event_id for t in out}) == 3  # each update has its own event id


def test_immediate_kinds_open_per_finding_and_never_stay_open() -> None:
    """Each fall is its own anomaly; a rule does not close it."""
    hub = DeviceInfo("t1", "h1", "care_hub", dwelling="d1")
    eng = engine()
    out = eng.handle(hub, event(hub, T0, "fall_detected"))
    out += eng.handle(hub, event(hub, T0 + MIN, "fall_detected"))
    assert changes(out) == [("open", "fall", "critical")] * 2
    assert out[0].anomaly.id != out[1].anomaly.id
    assert not eng.devices[("t1", "h1")].open
    assert is_care(out[0], None)  # a fall is health data whatever the device


def test_watermark_late_records_feed_quality_rules_only() -> None:
    """A reading behind the device's latest (or repeating it) reaches only the quality rules."""
    eng = engine()
    run(eng, METER, [100, 100, 100])
    st = eng.devices[("t1", "m1")]
    n_profile = st.memory[rule_key(rf.high_power)]["n"]
    late = eng.handle(METER, reading(METER, T0, active_power_w=5000))  # old, and huge
    repeat = eng.handle(METER, reading(METER, T0 + 2 * MIN, active_power_w=5000))
    assert late == [] and repeat == []
    assert st.memory[rule_key(rf.high_power)]["n"] == n_profile
    assert st.memory[rule_key(rf.late_seen)]["n"] == 5
    assert eng.late == 2
    # An event stream has its own clock: an event older than the latest reading still counts.
    hub = DeviceInfo("t1", "h2", "care_hub")
    eng.handle(hub, reading(hub, T0 + 10 * MIN, temperature_c=20))
    assert changes(eng.handle(hub, event(hub, T0 + 9 * MIN, "fall_detected"))) == [
        ("open", "fall", "critical")]


def test_lateness_allows_slightly_out_of_order_readings() -> None:
    eng = engine(lateness_us=2 * MIN)
    run(eng, METER, [100, 100, 100])
    out = eng.handle(METER, reading(METER, T0 + MIN + 1, active_power_w=1500))
    assert changes(out) == [("open", "over_subscribed_power", "warning")]


def test_group_rule_shares_memory_and_names_the_cabinet() -> None:
    """Three dark lamps of one cabinet, seen one by one on different devices, make one anomaly."""
    eng = engine()
    lamps = [DeviceInfo("t1", f"l{i}", "streetlight", meta={"cabinet": "c9"}) for i in range(4)]
    out: list[Transition] = []
    for i, lamp in enumerate(lamps[:3]):
        out += eng.handle(lamp, reading(lamp, T0 + i * MIN, lamp_power_w=0))
    assert changes(out) == [("open", "lamp_failure", "warning")]
    a = out[0].anomaly
    assert (a.device_id, a.group) == ("c9", "cabinet:c9")
    assert not is_care(out[0], "lighting_cabinet")
    out = eng.handle(lamps[1], reading(lamps[1], T0 + 5 * MIN, lamp_power_w=40))
    assert changes(out) == [("close", "lamp_failure", "warning")]
    assert ("t1", "cabinet:c9") in eng.groups


def test_state_round_trip_resumes_identically() -> None:
    """Stopping after any record, saving and loading the state, gives the same transitions."""
    powers = [100, 1500, 2500, 2600, 3900, 3950, 100, 1200, 1300, 50] * 2
    whole = run(engine(), METER, powers)
    for cut in (1, 3, 7, 12):
        eng = engine()
        first = run(eng, METER, powers[:cut])
        devices, groups = eng.take_dirty()
        saved = {k: s.to_json() for k, s in devices.items()}
        eng2 = engine()
        for k, raw in saved.items():
            eng2.put_device(k, DeviceState.from_json(raw))
        rest = run(eng2, METER, powers[cut:], start=T0 + cut * MIN)
        assert [t.event_id for t in first + rest] == [t.event_id for t in whole]
        assert [t.to_kafka() for t in first + rest] == [t.to_kafka() for t in whole]


def test_same_records_twice_same_transitions() -> None:
    powers = [100, 1500, 2500, 100, 3000, 100]
    a, b = run(engine(), METER, powers), run(engine(), METER, powers)
    assert [t.to_kafka() for t in a] == [t.to_kafka() for t in b] and a


def test_group_state_round_trip() -> None:
    eng = engine()
    lamps = [DeviceInfo("t1", f"l{i}", "streetlight", meta={"cabinet": "c9"}) for i in range(3)]
    for i, lamp in enumerate(lamps):
        eng.handle(lamp, reading(lamp, T0 + i * MIN, lamp_power_w=0))
    _, groups = eng.take_dirty()
    g = GroupState.from_json(groups[("t1", "cabinet:c9")].to_json())
    assert g.memory[rule_key(rf.cabinet_sum)]["dark"] == ["l0", "l1", "l2"]
    assert g.open["c9/lamp_failure"].severity == Severity.WARNING
    assert eng.take_dirty() == ({}, {})


def test_faulty_rule_is_counted_not_raised() -> None:
    def broken(device: DeviceInfo, memory: dict, env: Envelope) -> list:  # type: ignore[type-arg]
        raise ZeroDivisionError

    eng = Engine({"meter": [broken, rf.high_power]}, {}, online=False)
    out = eng.handle(METER, reading(METER, T0, active_power_w=1500))
    assert eng.rule_errors == 1 and changes(out) == [("open", "over_subscribed_power", "warning")]


def test_seen_slot_feeds_plain_columns() -> None:
    eng = engine()
    run(eng, METER, [100] * 6)
    last_ts, last_rx, interval = eng.devices[("t1", "m1")].plain_columns()
    assert last_ts == T0 + 5 * MIN and last_rx == T0 + 5 * MIN + 1000
    assert interval == 60.0


def test_load_tables_from_a_module_path() -> None:
    t = load_tables(["tests.processors.detection.rules_fixture", "no_such_rules"])
    assert t.rules["meter"] == [rf.high_power] and t.group_rules["streetlight"] == [rf.cabinet_sum]


class _Mean:
    """A stand-in statistical detector: the score is how far the mean is above 1000."""

    def __init__(self) -> None:
        self.n = 0

    def update(self, ts_s: float, value: float) -> float:
        self.n += 1
        return 1.0 if value > 1000 else 0.0

    def to_state(self) -> dict:  # type: ignore[type-arg]
        return {"n": self.n}

    @classmethod
    def from_state(cls, d: dict) -> _Mean:  # type: ignore[type-arg]
        m = cls()
        m.n = d["n"]
        return m


def test_online_detector_scores_interval_means() -> None:
    """Quarter-hour means are scored; a high one opens unusual_value, four calm ones close it."""
    from maillage.processors.detection import online_series

    eng = Engine({}, {}, online=True)
    eng.online = online_series.Online(_Mean)
    q = 15 * MIN
    # 4 readings per quarter hour; the second quarter's mean is high, only its mean is scored.
    quarters = [10, 2000, 10, 10, 10, 10, 10]
    out: list[Transition] = []
    for k, p in enumerate(quarters):
        for j in range(4):
            out += eng.handle(METER, reading(METER, T0 - T0 % q + k * q + j * q // 4, active_power_w=p))
    assert changes(out) == [("open", "unusual_value", "info"), ("close", "unusual_value", "info")]
    assert out[0].anomaly.start_us == T0 - T0 % q + 2 * q  # the end of the high quarter
    assert out[1].anomaly.end_us == T0 - T0 % q + 6 * q  # after four calm quarters
    st = eng.devices[("t1", "m1")]
    assert st.series_json() == {"online:active_power_w": b'{"n":6}'}
    assert st.series_json() == {}  # only what changed since


def test_online_detector_real_module_round_trips() -> None:
    """With the real detector, a state checkpointed anywhere resumes exactly (same transitions,
    same detector state at the end)."""
    from maillage.processors.detection import online_series

    q = 15 * MIN
    powers = [300 + 200 * ((k // 8) % 2) + (k % 5) for k in range(300)] + [9000] * 3 + [300] * 40

    def run_from(cut: int) -> tuple[list[str], dict[str, bytes]]:
        eng = Engine({}, {}, online=True)
        out: list[Transition] = []
        for k, p in enumerate(powers):
            if k == cut:
                saved = {key: (s.to_json(), s.series_json()) for key, s in eng.take_dirty()[0].items()}
                eng = Engine({}, {}, online=True)
                for key, (raw, series) in saved.items():
                    eng.put_device(key, DeviceState.from_json(raw, series))
            out += eng.handle(METER, reading(METER, T0 - T0 % q + k * q, active_power_w=p))
        assert isinstance(eng.online, online_series.Online) and eng.online.cls is not None
        return [t.event_id for t in out], eng.devices[("t1", "m1")].series_json(everything=True)

    whole = run_from(-1)
    assert whole[1]  # the detector ran and has a state
    assert whole == run_from(150) == run_from(301)
