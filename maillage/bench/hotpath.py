"""Micro-benchmark of the gateway's CPU hot path, without brokers: `python -m
maillage.bench.hotpath [--messages N] [--repeat R] [--instructions]`.

Feeds the default territory's message mix (`maillage.bench.fleet`: real payloads re-stamped per
bench device) through what the gateway does per message: `Ingest.convert`, then `kind`, `key`,
`to_kafka()` and `len(values)` of each envelope, with the registry held in memory. Prints CPU
microseconds (`time.process_time`, best of R passes) per message and per reading, per format
and for the whole mix. On a shared machine CPU time drifts with the neighbours' load:
`--instructions` counts instructions instead (valgrind's callgrind, deterministic; each format
run for one and for three passes, the difference divided by two passes).
"""

from __future__ import annotations

import argparse
import pickle
import random
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import maillage
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


def corpus(n: int, seed: int = 11) -> tuple[list[Message], dict[tuple[str, str], KnownDevice]]:
    """`n` messages drawn from the mix by share, and their devices (for `RegistryCache.in_memory`)."""
    # bench/ sits above ingest/: this script belongs there (tests/test_architecture.py KNOWN_EDGES).
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
    return out, devices


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


def measure(messages: list[Message], devices: dict[tuple[str, str], KnownDevice],
            repeat: int) -> dict[str, tuple[int, int, float]]:
    """Per kind (and `mix`): (messages, readings, best CPU seconds of a pass)."""
    ingest = Ingest(RegistryCache.in_memory(devices), max_future=timedelta(minutes=5))
    by_kind: dict[str, list[Message]] = defaultdict(list)
    for m in messages:
        by_kind[m.kind].append(m)
    by_kind["mix"] = messages
    result = {}
    for kind, msgs in by_kind.items():
        best, readings = min(run_once(ingest, msgs) for _ in range(repeat))
        result[kind] = (len(msgs), readings, best)
    return result


def instructions(messages: list[Message], devices: dict[tuple[str, str], KnownDevice],
                 ) -> dict[str, tuple[int, int, float]]:
    """Per kind (and `mix`): (messages, readings, instructions per pass), under callgrind."""
    ingest = Ingest(RegistryCache.in_memory(devices), max_future=timedelta(minutes=5))
    kinds = sorted({m.kind for m in messages}) + ["mix"]
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        saved = f"{tmp}/corpus.pickle"
        with open(saved, "wb") as f:
            pickle.dump(([(m.kind, m.topic, m.payload) for m in messages],
                         {k: (d.pk, d.type, d.since) for k, d in devices.items()}), f)
        for kind in kinds:
            msgs = messages if kind == "mix" else [m for m in messages if m.kind == kind]
            if len(msgs) < 50:
                continue  # too few: the collector's timing would dominate the difference
            _, readings = run_once(ingest, msgs)
            one, three = (_callgrind(saved, kind, passes) for passes in (1, 3))
            result[kind] = (len(msgs), readings, (three - one) / 2)
    return result


def _callgrind(saved: str, kind: str, passes: int) -> int:
    """Instructions of a run of `passes` passes over one kind of the saved corpus, by the same
    `maillage` tree as this process (not necessarily the installed one)."""
    root = str(Path(maillage.__file__).parent.parent)
    argv = ["hotpath", "--replay", saved, "--kind", kind, "--passes", str(passes)]
    boot = (f"import sys, runpy; sys.path.insert(0, {root!r}); sys.meta_path[:] = [f for f in "
            f"sys.meta_path if not getattr(f, '__module__', '').startswith('__editable__')]; "
            f"sys.argv = {argv!r}; runpy.run_module('maillage.bench.hotpath', run_name='__main__')")
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
           "-c", boot]
    err = subprocess.run(cmd, capture_output=True, text=True, check=True).stderr
    return int(re.search(r"Collected : (\d+)", err).group(1))  # type: ignore[union-attr]  # callgrind prints it


def _replay(saved: str, kind: str, passes: int) -> None:
    with open(saved, "rb") as f:
        raw, known = pickle.load(f)
    messages = [Message(*m) for m in raw]
    devices = {k: KnownDevice(*d) for k, d in known.items()}
    ingest = Ingest(RegistryCache.in_memory(devices), max_future=timedelta(minutes=5))
    msgs = messages if kind == "mix" else [m for m in messages if m.kind == kind]
    for _ in range(passes):
        run_once(ingest, msgs)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--instructions", action="store_true",
                        help="count instructions with valgrind instead of timing")
    parser.add_argument("--replay", help=argparse.SUPPRESS)
    parser.add_argument("--kind", help=argparse.SUPPRESS)
    parser.add_argument("--passes", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.replay:
        _replay(args.replay, args.kind, args.passes)
        return
    messages, devices = corpus(args.messages)
    out = sys.stdout
    if args.instructions:
        result = instructions(messages, devices)
        unit, scale = "instr", 1.0
    else:
        result = measure(messages, devices, args.repeat)
        unit, scale = "µs", 1e6
    out.write(f"{'format':10s} {'messages':>9s} {'readings':>9s} {unit + '/message':>14s} "
              f"{unit + '/reading':>14s}\n")
    for kind, (n, readings, cost) in sorted(result.items(), key=lambda kv: -kv[1][0]):
        per_reading = f"{cost / readings * scale:14.2f}" if readings else f"{'-':>14s}"
        out.write(f"{kind:10s} {n:9d} {readings:9d} {cost / n * scale:14.2f} {per_reading}\n")


if __name__ == "__main__":
    main()
