"""Data-quality rules on synthetic streams: each kind opens with evidence and closes; sound streams
(with jitter, events sharing a time with readings) stay quiet; the memory survives JSON."""

from __future__ import annotations

import random
from collections.abc import Iterable

import orjson
import pytest

from maillage.envelope import Envelope, SourceFormat
from maillage.processors.detection import quality
from maillage.processors.detection.engine import Engine
from maillage.processors.detection.model import DeviceInfo, Kind, Severity, Transition

S = 1_000_000
MIN = 60 * S
T0 = 1_767_600_000 * S  # 2026-01-05 08:00 UTC
METER = DeviceInfo("t1", "m1", "meter", expected_interval_s=120)
SENSOR = DeviceInfo("t1", "door1", "care_door", expected_interval_s=900, dwelling="d1",
                    meta={"hub": "hub1"})


def rec(dev: DeviceInfo, ts: int, rx: int | None = None, *, seq: int | None = None,
        event: str | None = None, value: float = 1.0) -> Envelope:
    if event is not None:
        return Envelope.trusted(dev.tenant, dev.device_id, "event", ts, rx or ts + 300_000,
                                SourceFormat.EVENT, {}, {}, seq=seq, event=event)
    return Envelope.trusted(dev.tenant, dev.device_id, "reading", ts, rx or ts + 300_000,
                            SourceFormat.JSON, {"active_power_w": value}, {}, seq=seq)


def engine() -> Engine:
    return Engine({}, {}, quality=quality.RULES, on_rejected=[quality.on_rejected], online=False)


def feed(eng: Engine, dev: DeviceInfo, envs: Iterable[Envelope]) -> list[Transition]:
    out: list[Transition] = []
    for env in envs:
        out += eng.handle(dev, env)
    return out


def changes(ts: list[Transition]) -> list[tuple[str, str]]:
    return [(t.change, str(t.anomaly.kind)) for t in ts]


def steady(dev: DeviceInfo, start: int, n: int, step_s: int, *, seq0: int | None = None,
           jitter: random.Random | None = None, offset_s: float = 0.0) -> list[Envelope]:
    """n readings every step_s, received 0.3 s after (plus jitter, plus a clock offset)."""
    out = []
    for i in range(n):
        ts = start + i * step_s * S
        delay = 0.3 + (jitter.uniform(0, 3) if jitter else 0.0)
        out.append(rec(dev, ts - round(offset_s * S), ts + round(delay * S),
                       seq=None if seq0 is None else seq0 + i, value=100.0 + i))
    return out


def test_sound_week_is_quiet() -> None:
    """A week of readings with network jitter, events sharing times with readings: nothing."""
    rng = random.Random(4)
    envs = steady(METER, T0, 7 * 24 * 30, 120, seq0=1, jitter=rng)
    mixed = []
    for i, env in enumerate(envs):
        mixed.append(env)
        if i % 7 == 0:  # an event at the very time of a reading: not a duplicate
            mixed.append(rec(METER, env.ts_us, env.rx_us + 1, event="motion"))
    assert feed(engine(), METER, mixed) == []


def test_one_redelivery_is_not_an_anomaly() -> None:
    """A single duplicate (one QoS 1 redelivery) opens nothing: a habit does."""
    envs = steady(METER, T0, 100, 120)
    assert feed(engine(), METER, [*envs[:50], envs[49], *envs[50:]]) == []


def test_duplicates_open_then_close_after_quiet() -> None:
    """Every record received twice for an hour: one duplicate anomaly, closed once sound again."""
    envs = steady(METER, T0, 150, 120)
    stream = []
    for i, env in enumerate(envs):
        stream.append(env)
        if 40 <= i < 70:
            stream.append(env)
    out = feed(engine(), METER, stream)
    assert changes(out) == [("open", "duplicate"), ("close", "duplicate")]
    opened, closed = out
    assert opened.anomaly.start_us == envs[40].ts_us
    assert opened.anomaly.severity == Severity.INFO
    assert opened.anomaly.evidence["count"] == 2
    assert envs[70].ts_us <= closed.anomaly.end_us <= envs[100].ts_us


@pytest.mark.parametrize("numbered", [True, False], ids=["with_seq", "without_seq"])
def test_swapped_records_are_out_of_order(numbered: bool) -> None:
    """Pairs swapped on the way (the later sent first): out_of_order, with or without seq."""
    envs = steady(METER, T0, 120, 120, seq0=1 if numbered else None)
    stream = list(envs[:30])
    for i in range(30, 60, 2):  # the second of each pair is received first
        later, earlier = envs[i + 1], envs[i]
        stream.append(rec(METER, later.ts_us, later.rx_us, seq=later.seq, value=later.values["active_power_w"]))
        stream.append(rec(METER, earlier.ts_us, later.rx_us + 1, seq=earlier.seq,
                          value=earlier.values["active_power_w"]))
    stream += envs[60:]
    out = feed(engine(), METER, stream)
    assert changes(out) == [("open", "out_of_order"), ("close", "out_of_order")]
    assert out[0].anomaly.start_us == envs[30].ts_us
    assert out[0].anomaly.evidence["behind_s"] == 120


def test_clock_set_back_is_skew_not_reordering() -> None:
    """A clock that jumps 20 min back and stays there: clock_skew, neither out_of_order nor late."""
    before = steady(METER, T0, 60, 120)
    skewed = steady(METER, T0 + 60 * 120 * S, 60, 120, offset_s=1200)
    after = steady(METER, T0 + 120 * 120 * S, 60, 120)
    out = feed(engine(), METER, [*before, *skewed, *after])
    assert changes(out) == [("open", "clock_skew"), ("close", "clock_skew")]
    opened = out[0].anomaly
    assert opened.evidence["offset_s"] == -1200  # the device clock is behind
    assert opened.start_us == skewed[0].rx_us  # when it began, on the receive clock
    assert out[1].anomaly.end_us >= after[0].ts_us


def test_clock_ahead_within_the_gateway_limit_is_skew() -> None:
    """A clock 4 minutes ahead (the gateway accepts up to 5): clock_skew with a positive offset."""
    envs = [*steady(METER, T0, 30, 120), *steady(METER, T0 + 30 * 120 * S, 30, 120, offset_s=-240)]
    out = feed(engine(), METER, envs)
    assert changes(out) == [("open", "clock_skew")]
    assert out[0].anomaly.evidence["offset_s"] == 240


def test_clock_ahead_beyond_the_limit_shows_in_rejects() -> None:
    """Rejected as future_timestamp again and again: clock_skew; closed by sound records later."""
    eng = engine()
    out = feed(eng, METER, steady(METER, T0, 30, 120))
    t = T0 + 30 * 120 * S
    for i in range(10):
        out += eng.handle_rejected(METER, "future_timestamp", t + i * 120 * S)
    out += feed(eng, METER, steady(METER, t + 10 * 120 * S, 30, 120))
    assert changes(out) == [("open", "clock_skew"), ("close", "clock_skew")]
    assert out[0].anomaly.start_us == t
    assert out[0].anomaly.evidence["reason"] == "future_timestamp"


def test_backlog_released_at_once_is_late() -> None:
    """Three hours held by the device and released in one burst: late_reading from the first held."""
    envs = steady(METER, T0, 300, 120)
    release = envs[150].ts_us
    stream = list(envs[:60])
    stream += [rec(METER, e.ts_us, release + k * 1000, value=e.values["active_power_w"])
               for k, e in enumerate(envs[60:150])]
    stream += envs[150:]
    out = feed(engine(), METER, stream)
    assert changes(out) == [("open", "late_reading"), ("close", "late_reading")]
    opened = out[0].anomaly
    assert opened.start_us == envs[60].ts_us
    assert opened.evidence["delay_s"] == pytest.approx(90 * 120, abs=1)
    assert opened.evidence["threshold_s"] == 300
    assert out[1].anomaly.end_us >= release


def test_one_message_held_on_a_sparse_device_is_late() -> None:
    """A door sensor (15 min heartbeat) whose one message arrived 2 h late: late_reading."""
    envs = steady(SENSOR, T0, 40, 900)
    held = envs[20]
    stream = [*envs[:20], rec(SENSOR, held.ts_us, held.ts_us + 2 * 3600 * S), *envs[21:]]
    out = feed(engine(), SENSOR, stream)
    assert changes(out)[0] == ("open", "late_reading")
    assert out[0].anomaly.start_us == held.ts_us


@pytest.mark.parametrize(("device", "rejects", "opens"), [
    (METER, 1, False),  # one reject of a device reporting every 2 minutes: a glitch
    (METER, 3, True),
    (SENSOR, 1, True),  # one message of a 15-minute sensor is a quarter hour of its data
])
def test_rejects_open_malformed_payload(device: DeviceInfo, rejects: int, opens: bool) -> None:
    """Repeated rejects open malformed_payload; sound records after a quiet period close it."""
    step = device.expected_interval_s or 120
    eng = engine()
    out = feed(eng, device, steady(device, T0, 20, step))
    t = T0 + 20 * step * S
    for i in range(rejects):
        out += eng.handle_rejected(device, "malformed", t + i * step * S)
    out += feed(eng, device, steady(device, t + rejects * step * S, 20, step))
    if opens:
        assert changes(out) == [("open", "malformed_payload"), ("close", "malformed_payload")]
        assert out[0].anomaly.start_us == t
        n = min(rejects, 2)  # evidence as it was when the anomaly opened
        assert out[0].anomaly.evidence["rejects_by_reason"] == {"malformed": n}
        assert out[0].anomaly.evidence["count"] == n
    else:
        assert out == []


def test_memory_round_trips_through_json() -> None:
    """The memory is plain JSON: a rule continuing on the reloaded memory decides the same."""
    envs = steady(METER, T0, 200, 120, seq0=1, jitter=random.Random(2))
    stream = [*envs[:100], envs[99], envs[99], *envs[100:110],
              *steady(METER, envs[110].ts_us, 90, 120, offset_s=900)]
    a: dict[str, object] = {}
    for env in stream[:105]:
        list(quality.check(METER, a, env))
    b = orjson.loads(orjson.dumps(a))
    assert b == a
    rest_a = [f for env in stream[105:] for f in quality.check(METER, a, env)]
    rest_b = [f for env in stream[105:] for f in quality.check(METER, b, env)]
    assert rest_a == rest_b
    assert {f.kind for f in rest_a} >= {Kind.CLOCK_SKEW}
