"""Micro-benchmark of the gateway's CPU hot path, without brokers: `python -m
maillage.ingest.hotpath_bench [--messages N] [--repeat R]`.

Feeds the default territory's message mix (`maillage.bench.fleet`: real payloads re-stamped per
bench device) through what the gateway does per message: `Ingest.convert`, then `kind`, `key`,
`to_kafka()` and `len(values)` of each envelope, with the registry held in memory. Prints CPU
microseconds (`time.process_time`, best of R passes) per message and per reading, per format
and for the whole mix.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from maillage.ingest.registry_cache import KnownDevice, RegistryCache
from maillage.ingest.validate import Ingest

TENANT = "bench"
RECEIVED = datetime(2026, 1, 15, 20, 0, tzinfo=UTC)
SINCE = datetime(2010, 1, 1, tzinfo=UTC)
DEVICES_PER_ARCHETYPE = 8


@dataclass(frozen=True, slots=True)
class Message:
    """One MQTT message of the mix."""

    kind: str  # the template kind: tic_std, tic_hist, senml, json, event
    topic: str
    payload: bytes


def corpus(n: int, seed: int = 11) -> tuple[list[Message], RegistryCache]:
    """`n` messages drawn from the mix by share, and a registry knowing their devices."""
    from maillage.bench.fleet import build_mix, stamp

    mix = build_mix()
    rng = random.Random(seed)
    devices: dict[tuple[str, str], KnownDevice] = {}
    for i, a in enumerate(mix):
        for k in range(DEVICES_PER_ARCHETYPE):
            devices[(TENANT, f"{a.name}-{k}")] = KnownDevice(i * 100 + k, a.device_type, SINCE)
    t0 = int((RECEIVED - timedelta(hours=2)).timestamp())
    picks = rng.choices(mix, [a.share for a in mix], k=n)
    out = []
    for j, a in enumerate(picks):
        t = rng.choice(a.templates)
        device = f"{a.name}-{rng.randrange(DEVICES_PER_ARCHETYPE)}"
        payload = stamp(t, t0 + j % 7000, j)
        out.append(Message(t.kind, f"maillage/{TENANT}/{device}/{a.channel}", payload))
    return out, RegistryCache.in_memory(devices)


def run_once(ingest: Ingest, messages: list[Message]) -> tuple[float, int]:
    """CPU seconds of one pass as the gateway does it, and the readings it made."""
    readings = 0
    start = time.process_time()
    for m in messages:
        outcome = ingest.convert(m.topic, m.payload, RECEIVED)
        if outcome.rejection is not None:
            raise AssertionError(f"{m.topic}: {outcome.rejection}")
        for env in outcome.envelopes:
            readings += len(env.values)
            env.kind, env.key, env.to_kafka()  # noqa: B018 - what the gateway reads
    elapsed = time.process_time() - start
    return elapsed, readings


def measure(messages: list[Message], registry: RegistryCache,
            repeat: int) -> dict[str, tuple[int, int, float]]:
    """Per kind (and `mix`): (messages, readings, best CPU seconds of a pass)."""
    ingest = Ingest(registry, max_future=timedelta(minutes=5))
    by_kind: dict[str, list[Message]] = defaultdict(list)
    for m in messages:
        by_kind[m.kind].append(m)
    by_kind["mix"] = messages
    result = {}
    for kind, msgs in by_kind.items():
        best, readings = min(run_once(ingest, msgs) for _ in range(repeat))
        result[kind] = (len(msgs), readings, best)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    messages, registry = corpus(args.messages)
    result = measure(messages, registry, args.repeat)
    out = sys.stdout
    out.write(f"{'format':10s} {'messages':>9s} {'readings':>9s} {'µs/message':>11s} "
              f"{'µs/reading':>11s}\n")
    for kind, (n, readings, cpu) in sorted(result.items(), key=lambda kv: -kv[1][0]):
        per_reading = f"{cpu / readings * 1e6:11.2f}" if readings else f"{'-':>11s}"
        out.write(f"{kind:10s} {n:9d} {readings:9d} {cpu / n * 1e6:11.2f} {per_reading}\n")


if __name__ == "__main__":
    main()
