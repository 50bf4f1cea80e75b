"""The bench's message mix: real territory payloads, re-stamped, counted with the gateway's parser."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from maillage.bench.fleet import Archetype, build_mix, plan_connections, readings_per_message, stamp
from maillage.ingest.formats import MessageContext, parse_message


@pytest.fixture(scope="module")
def mix() -> list[Archetype]:
    return build_mix()


def test_mix_is_the_territory_s(mix: list[Archetype]) -> None:
    """Shares add up to one, meters send most messages, a message carries a few readings."""
    assert sum(a.share for a in mix) == pytest.approx(1.0)
    meters = sum(a.share for a in mix if a.device_type == "meter")
    assert meters > 0.5
    assert {a.channel for a in mix} >= {"up/tic", "up/json", "up/senml", "up/event"}
    assert 3 <= readings_per_message(mix) <= 9


def test_stamped_payloads_parse_to_the_counted_readings(mix: list[Archetype]) -> None:
    """Every template re-stamped at t makes exactly its readings, measured at t (TIC historique: receive time)."""
    ts = int(datetime(2026, 3, 10, 8, 30, tzinfo=UTC).timestamp())
    received = datetime.now(UTC)
    for a in mix:
        for t in a.templates[:5]:
            payload = stamp(t, ts, 42)
            envs = parse_message(payload, MessageContext("bench", "d1", a.channel, received, a.device_type))
            metrics = tuple(m for e in envs if e.kind == "reading" for m in e.values)
            assert metrics == t.metrics, a.name
            assert sum(1 for e in envs if e.kind == "event") == t.events, a.name
            expected = received if t.kind == "tic_hist" else datetime.fromtimestamp(ts, UTC)
            assert all(e.ts == expected for e in envs), a.name


def test_consecutive_messages_have_distinct_times(mix: list[Archetype]) -> None:
    """Message i of a device is measured at t0 + i seconds, so no two rows share a key."""
    for a in mix:
        t = a.templates[0]
        if t.kind == "tic_hist":
            continue
        seen = set()
        for i in range(3):
            envs = parse_message(stamp(t, 1_770_000_000 + i, i + 1),
                                 MessageContext("bench", "d1", a.channel, datetime.now(UTC), a.device_type))
            seen.add(envs[0].ts)
        assert len(seen) == 3, a.name


def test_every_archetype_gets_a_session(mix: list[Archetype]) -> None:
    """Rare archetypes keep one session; frequent ones get more, weighted to keep the mix."""
    slots = plan_connections(mix, 24)
    assert {s.archetype for s in slots} == set(range(len(mix)))
    share = [sum(s.weight for s in slots if s.archetype == i) for i in range(len(mix))]
    assert share == pytest.approx([a.share for a in mix])
