"""Acceptance 3: the detection processor SIGKILLed mid-stream, several times, and restarted.

The processor runs as a real subprocess (`maillage processor detection`) on the session's Kafka
and PostgreSQL with the small test rules. What it stored and produced is compared with what the
engine gives on the same records in one uninterrupted pass: every anomaly is there, none is
stored twice, and no transition reaches `maillage.anomalies` twice."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg

from maillage.processors.detection.engine import Engine, load_tables
from maillage.processors.detection.model import DeviceInfo, Transition
from tests.processors.detection.conftest import MIN, T0, produce_sync, read_anomalies, reading

ROOT = Path(__file__).resolve().parents[3]
METERS = 12
READINGS_PER_METER = 400
CHUNKS = 16


def _power(meter: int, i: int) -> float:
    """Alternating calm and high load, sometimes critical: opens, updates and closes."""
    phase = (i + 3 * meter) // 6
    if phase % 2 == 0:
        return 100.0 + meter
    rises = phase % 3 == 1 and (i + 3 * meter) % 6 >= 3  # warning, then critical: an update
    return 2500.0 + 10 * (i % 7) if rises else 1500.0 + 10 * (i % 5)


def _expected(tenant: str) -> list[Transition]:
    t = load_tables(["tests.processors.detection.rules_fixture"])
    eng = Engine(t.rules, t.group_rules, quality=t.quality)  # as the subprocess runs it
    out: list[Transition] = []
    for m in range(METERS):
        dev = DeviceInfo(tenant, f"m{m}", "meter")
        for i in range(READINGS_PER_METER):
            out += eng.handle(dev, reading(tenant, dev.device_id, T0 + i * MIN,
                                           active_power_w=_power(m, i)))
    return out


def _start(db_url: str, bootstrap: str, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, MAILLAGE_DATABASE_URL=db_url, MAILLAGE_KAFKA_BOOTSTRAP=bootstrap,
               MAILLAGE_DETECTION_RULES="tests.processors.detection.rules_fixture",
               MAILLAGE_DETECTION_CHECKPOINT_S="1", PYTHONPATH=str(ROOT))
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with open(log, "ab") as f:
        return subprocess.Popen([sys.executable, "-m", "maillage", "processor", "detection",
                                 "--no-silent"], cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT)


def _count(db_url: str, tenant: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT count(*) FROM anomaly_outbox WHERE kafka_key LIKE %s",
                           (f"{tenant}/%",)).fetchone()
    return int(row[0]) if row else 0


def test_sigkill_mid_stream_loses_and_repeats_nothing(db_url: str, services: Any, det_tenant: str,
                                                      tmp_path: Path) -> None:
    tenant, bootstrap = det_tenant, services.kafka_bootstrap
    with psycopg.connect(db_url, autocommit=True) as conn:
        for m in range(METERS):
            conn.execute("INSERT INTO devices (tenant_id, device_id, type, mqtt_username) "
                         "VALUES (%s, %s, 'meter', %s) ON CONFLICT DO NOTHING",
                         (tenant, f"m{m}", f"{tenant}-m{m}"))
    expected = _expected(tenant)
    assert len(expected) > 200 and {t.change for t in expected} == {"open", "update", "close"}

    def feed() -> None:  # the stream keeps coming while the processor is killed and restarted
        per = READINGS_PER_METER // CHUNKS
        for c in range(CHUNKS):
            produce_sync(bootstrap, [reading(tenant, f"m{m}", T0 + i * MIN, active_power_w=_power(m, i))
                                     for i in range(c * per, (c + 1) * per) for m in range(METERS)])
            time.sleep(2.0)

    feeder = threading.Thread(target=feed)
    feeder.start()
    log = tmp_path / "detection.log"
    kills = 0
    proc = _start(db_url, bootstrap, log)
    try:
        while kills < 3:  # kill once it made progress since the previous kill
            time.sleep(1.5)
            before = _count(db_url, tenant)
            deadline = time.time() + 90
            while _count(db_url, tenant) <= before and time.time() < deadline:
                assert proc.poll() is None, log.read_text()[-3000:]
                time.sleep(0.05)
            assert _count(db_url, tenant) > before, log.read_text()[-3000:]
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            kills += 1
            proc = _start(db_url, bootstrap, log)
        feeder.join()
        deadline = time.time() + 240  # generous: the machine may be shared
        while _count(db_url, tenant) < len(expected) and time.time() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.3)
        time.sleep(2)  # anything extra (a repeat) would show now

        def relayed() -> int:
            with psycopg.connect(db_url) as conn:
                row = conn.execute("SELECT count(*) FROM anomaly_outbox WHERE kafka_key LIKE %s "
                                   "AND produced_at IS NULL", (f"{tenant}/%",)).fetchone()
            return int(row[0]) if row else -1

        deadline = time.time() + 30
        while relayed() != 0 and time.time() < deadline:
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        feeder.join()
    text = log.read_text()
    assert text.count("resumes from its own checkpoint") >= 4, text[-3000:]
    assert re.search(r"maillage\.readings\[\d\]@\d+", text), "no restart resumed from a checkpoint"

    # Stored: exactly the anomalies of the uninterrupted pass, in their final state.
    final: dict[str, Any] = {}
    for t in expected:
        final[t.anomaly.id] = t.anomaly
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT id, severity, score, (extract(epoch FROM end_ts) * 1e6)::bigint FROM anomalies "
            "WHERE tenant_id = %s AND device_id LIKE 'm%%'", (tenant,)).fetchall()
        outbox = conn.execute("SELECT event_id FROM anomaly_outbox WHERE kafka_key LIKE %s",
                              (f"{tenant}/%",)).fetchall()
    want = {t.event_id for t in expected}
    stored = {r[0] for r in rows}
    assert len(rows) == len(stored), "an anomaly was stored twice"
    assert stored == set(final), (f"missing {len(set(final) - stored)}, unexpected "
                                  f"{len(stored - set(final))}; log: {text[-2000:]}")
    for rid, severity, score, end_us in rows:
        a = final[rid]
        assert (severity, score, end_us) == (str(a.severity), a.score, a.end_us), rid
    queued = [r[0] for r in outbox]
    assert sorted(queued) == sorted(want), (f"outbox: missing {sorted(want - set(queued))[:5]}, "
                                            f"unexpected {sorted(set(queued) - want)[:5]}")

    # Produced: every transition once, none twice.
    produced = asyncio.run(read_anomalies(bootstrap, tenant))
    ids = [d["event_id"] for d in produced]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    assert not twice, f"produced twice: {twice[:5]}; log: {text[-2000:]}"
    assert set(ids) == want, (f"topic: missing {sorted(want - set(ids))[:5]}, "
                              f"unexpected {sorted(set(ids) - want)[:5]}")
