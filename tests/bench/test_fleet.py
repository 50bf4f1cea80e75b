"""The bench's message mix: real territory payloads, re-stamped, counted with the gateway's parser."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from maillage.bench.fleet import (
    Archetype,
    Template,
    build_mix,
    plan_connections,
    readings_per_message,
    stamp,
)
from maillage.ingest.formats import MessageContext, parse_message
from maillage.simulators import payloads


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


def _reference(t: Template, ts: int, seq: int) -> bytes:
    """What `stamp` must produce, made the slow way with the simulators' own encoders."""
    when = datetime.fromtimestamp(ts, UTC)
    if t.kind in ("json", "event"):
        return b'{"ts":"' + payloads.iso(when).encode() + b'","seq":' + str(seq).encode() + b"," + t.tail
    if t.kind == "senml":
        return b'[{"bt":' + str(ts).encode() + b"," + t.tail
    if t.kind == "tic_std":
        return t.head + payloads.standard_group("DATE", "", payloads.horodate(when)) + t.tail
    return t.raw


def test_stamp_matches_the_simulators_encoders_across_dst(mix: list[Archetype]) -> None:
    """Byte for byte, including the TIC season letter and checksum around both 2026 DST changes."""
    changes = [int(datetime(2026, 3, 29, 1, tzinfo=UTC).timestamp()),
               int(datetime(2026, 10, 25, 1, tzinfo=UTC).timestamp())]
    times = [c + d for c in changes for d in range(-3 * 3600, 3 * 3600, 599)]
    times += [c + d for c in changes for d in (-1, 0, 1)]
    times += random.Random(3).sample(range(1_700_000_000, 1_900_000_000), 200)
    for a in mix:
        for t in a.templates[:4]:
            for ts in times:
                assert stamp(t, ts, ts % 977 + 1) == _reference(t, ts, ts % 977 + 1), (a.name, ts)
