"""Acceptance 3: the detection processor SIGKILLed mid-stream, several times, and restarted.

The processor runs as a real subprocess (`maillage processor detection`) on the session's Kafka
and PostgreSQL with the small test rules. What it stored and produced is compared with what the
engine gives on the same records in one uninterrupted pass: every anomaly is there, none is
stored twice, and no transition reaches `maillage.anomalies` twice."""

from __future__ import annotations

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

from tests.processors.detection.conftest import produce_sync
from tests.processors.detection.meter_stream import (
    READINGS_PER_METER,
    RULES,
    add_meters,
    assert_produced_once,
    assert_stored,
    expected,
    meter_readings,
)

ROOT = Path(__file__).resolve().parents[3]
CHUNKS = 16


def _start(db_url: str, bootstrap: str, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, MAILLAGE_DATABASE_URL=db_url, MAILLAGE_KAFKA_BOOTSTRAP=bootstrap,
               MAILLAGE_DETECTION_RULES=RULES,
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
    add_meters(db_url, tenant)
    transitions = expected(tenant)
    assert len(transitions) > 200 and {t.change for t in transitions} == {"open", "update", "close"}

    def feed() -> None:  # the stream keeps coming while the processor is killed and restarted
        per = READINGS_PER_METER // CHUNKS
        for c in range(CHUNKS):
            produce_sync(bootstrap, meter_readings(tenant, c * per, (c + 1) * per))
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
        while _count(db_url, tenant) < len(transitions) and time.time() < deadline:
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
    assert_stored(db_url, tenant, transitions, text)
    with psycopg.connect(db_url) as conn:
        outbox = conn.execute("SELECT event_id FROM anomaly_outbox WHERE kafka_key LIKE %s",
                              (f"{tenant}/%",)).fetchall()
    want = {t.event_id for t in transitions}
    queued = [r[0] for r in outbox]
    assert sorted(queued) == sorted(want), (f"outbox: missing {sorted(want - set(queued))[:5]}, "
                                            f"unexpected {sorted(set(queued) - want)[:5]}")

    # Produced: every transition once, none twice.
    assert_produced_once(bootstrap, tenant, transitions, text)
