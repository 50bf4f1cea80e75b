"""The bench publishers against a real Mosquitto: every message accounted for, refusals are errors."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from maillage.bench.fleet import Archetype, build_mix, plan_connections, stamp
from maillage.bench.publish import MAX, PublisherPool, Session, WorkerResult, WorkerSpec
from maillage.mqtt import MqttConnection
from maillage.stack.mosquitto import mosquitto_binary
from maillage.stack.process import ManagedProcess, free_port, wait_for_port

T0 = 1_770_000_000
INFLIGHT = 40
"""The broker's receive maximum here: below the publishers' window, so the cap is exercised."""


@pytest.fixture(scope="module")
def mix() -> list[Archetype]:
    return build_mix()


@pytest.fixture(scope="module")
def broker() -> Iterator[int]:
    """A bare Mosquitto: any password, each user may publish under bench/<user>/ only.

    A large queue limit rather than maillage's `max_queued_messages 0` (no limit): with 0,
    Mosquitto 2.0.11 drops a client right after refusing one of its messages, so the refusals
    after the first would never be answered.
    """
    if shutil.which("mosquitto") is None and not os.path.exists("/usr/sbin/mosquitto"):
        pytest.skip("mosquitto is not installed")
    root = Path(tempfile.mkdtemp(prefix="maillage-pub-", dir="/tmp"))
    root.chmod(0o755)
    port = free_port()
    (root / "acl").write_text("pattern readwrite bench/%u/#\n\nuser collector\ntopic read bench/#\n")
    (root / "mosquitto.conf").write_text(
        ("user root\n" if os.geteuid() == 0 else "")
        + f"listener {port} 127.0.0.1\nallow_anonymous true\nacl_file {root}/acl\n"
        f"max_inflight_messages {INFLIGHT}\nmax_queued_messages 1000000\n")
    proc = ManagedProcess("mosquitto", [mosquitto_binary(), "-c", str(root / "mosquitto.conf")],
                          root / "mosquitto.log").start()
    try:
        wait_for_port("127.0.0.1", port, 20, proc)
        yield port
    finally:
        proc.stop()
        shutil.rmtree(root, ignore_errors=True)


class Collector:
    """Subscribes to bench/# in a thread; keeps every (topic, payload) in arrival order."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.got: list[tuple[str, bytes]] = []
        self.ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> Collector:
        self._thread.start()
        assert self.ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        conn: MqttConnection | None = None

        def on_publish(packets: list) -> None:  # type: ignore[type-arg]
            self.got += [(p.topic, p.payload) for p in packets]
            assert conn is not None
            conn.ack([p.packet_id for p in packets])

        conn, _ = await MqttConnection.connect("127.0.0.1", self.port, "collector", username="collector",
                                               password="x", on_publish=on_publish)
        await conn.subscribe([("bench/#", 1)])
        self.ready.set()
        await self._stop.wait()
        await conn.disconnect()


def _run_pool(specs: list[WorkerSpec], credit: int, settle: float = 90) -> tuple[PublisherPool, list[WorkerResult]]:
    """Publish up to `credit` readings as fast as allowed, then stop and collect the results."""
    pool = PublisherPool(specs)
    pool.start()
    deadline = time.monotonic() + 60
    while not all(pool.control.ready[:]):
        assert not pool.failed_early(), pool.results
        assert time.monotonic() < deadline, "publishers did not connect"
        time.sleep(0.05)
    pool.control.credit.value = credit
    pool.set_rate(MAX)
    deadline = time.monotonic() + settle
    last, still = -1, 0
    # Until the credit is spent and nothing more is published (a loaded machine stalls a
    # publisher for longer than the quiet spell: an unspent credit is not the end).
    while time.monotonic() < deadline and (last < credit or still < 10):
        time.sleep(0.05)
        now = pool.control.total("readings")
        still = still + 1 if now == last else 0
        last = now
    return pool, pool.stop(timeout_s=30)


def test_every_message_is_acknowledged_received_and_accounted_for(broker: int, mix: list[Archetype]) -> None:
    """Payloads are the stamped templates in order, per-template counts match what arrived."""
    slots = plan_connections(mix, 8)
    specs = [WorkerSpec(w, "127.0.0.1", broker,
                        [Session(f"dev-{w}-{k}", "pw", f"bench/dev-{w}-{k}/{mix[s.archetype].channel}",
                                 s.archetype, s.weight) for k, s in enumerate(slots)],
                        mix, T0, client_prefix="t-acct")
             for w in range(2)]
    credit = 30_000
    with Collector(broker) as col:
        pool, results = _run_pool(specs, credit)
        deadline = time.monotonic() + 120  # ends as soon as all arrived; a loaded machine is slow
        while len(col.got) < pool.control.total("messages") and time.monotonic() < deadline:
            time.sleep(0.05)
    assert len(results) == 2
    assert all(not r.errors for r in results), [r.errors for r in results]
    messages = sum(r.messages for r in results)
    assert messages == sum(r.acked for r in results) == len(col.got) == pool.control.total("messages")
    readings = pool.control.total("readings")
    # The credit is spent, and overspent by no more than what the sessions had in flight when it
    # ran out (2 workers x the broker's receive maximum, ~12 readings a message at most): a
    # loaded machine lets each session send its window before it sees the credit gone.
    assert credit <= readings < credit + 2 * INFLIGHT * 12

    by_topic: dict[str, list[bytes]] = defaultdict(list)
    for topic, payload in col.got:
        by_topic[topic].append(payload)
    sessions = {s.username: s for spec in specs for s in spec.sessions}
    counted = 0
    for r in results:
        for user, per_template in r.sent.items():
            s = sessions[user]
            templates = mix[s.archetype].templates
            got = by_topic.get(s.topic, [])
            assert len(got) == sum(per_template)
            expected = [stamp(templates[i % len(templates)], T0 + i, i + 1) for i in range(len(got))]
            assert got == expected, user  # in order, each measured one second after the previous
            counted += sum(len(templates[k].metrics) * n for k, n in enumerate(per_template))
    assert counted == readings


def test_refused_publications_are_errors_and_not_expected(broker: int, mix: list[Archetype]) -> None:
    """PUBACK 135 (not authorized) is counted as an error, never as an acknowledged message."""
    spec = WorkerSpec(0, "127.0.0.1", broker,
                      [Session("dev-ok", "pw", "bench/dev-ok/up/json", 1, 0.5),
                       Session("dev-bad", "pw", "bench/somebody-else/up/json", 1, 0.5)],
                      mix, T0, client_prefix="t-refused")
    _, results = _run_pool([spec], 2_000)
    (r,) = results
    assert any("dev-bad" in e and "NOT_AUTHORIZED" in e for e in r.errors), r.errors
    assert sum(r.sent["dev-bad"]) == 0
    assert sum(r.sent["dev-ok"]) > 0
    assert r.acked == sum(r.sent["dev-ok"]) < r.messages


def test_paused_pool_publishes_nothing_and_stops_cleanly(broker: int, mix: list[Archetype]) -> None:
    """Rate 0: sessions stay connected, nothing is sent, stop reports empty counts."""
    spec = WorkerSpec(0, "127.0.0.1", broker, [Session("dev-idle", "pw", "bench/dev-idle/up/json", 1, 1.0)],
                      mix, T0, client_prefix="t-idle")
    pool = PublisherPool([spec])
    pool.start()
    deadline = time.monotonic() + 60
    while not pool.control.ready[0]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.3)
    (r,) = pool.stop(timeout_s=30)
    assert r.errors == [] and r.messages == 0 and sum(r.sent["dev-idle"]) == 0
