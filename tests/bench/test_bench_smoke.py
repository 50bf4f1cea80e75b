"""`maillage bench --quick` on its own embedded stack: the JSON of the contract, nothing lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_quick_bench_writes_the_contract_json(tmp_path: Path) -> None:
    """A short run completes, writes every key of the contract, and loses no reading."""
    out = tmp_path / "out.json"
    env = dict(os.environ, MAILLAGE_DATA_DIR=str(tmp_path / "unused"))
    for var in ("MAILLAGE_DATABASE_URL", "MAILLAGE_KAFKA_BOOTSTRAP", "MAILLAGE_MQTT_URL"):
        env.pop(var, None)
    docs = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"
    before = docs.read_bytes()
    proc = subprocess.run(
        [sys.executable, "-m", "maillage", "bench", "--duration", "15", "--quick", "--json", str(out)],
        capture_output=True, text=True, env=env, timeout=280)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert docs.read_bytes() == before, "a run is added to docs/benchmarks.md only with --record"
    doc = json.loads(out.read_text())
    assert set(doc) >= {"machine", "baselines", "e2e", "latency_ms", "cost"}
    assert set(doc["baselines"]) >= {"mqtt_msgs_per_s", "kafka_records_per_s", "copy_rows_per_s"}
    assert set(doc["e2e"]) >= {"readings_per_s", "messages_per_s", "duration_s", "published", "stored",
                               "lost", "duplicated"}
    assert set(doc["latency_ms"]) == {"stored", "anomaly", "alert"}
    for key in ("stored", "anomaly", "alert"):
        assert set(doc["latency_ms"][key]) == {"p50", "p95", "p99"}
    assert doc["latency_ms"]["stored"]["p50"] is not None
    assert doc["latency_ms"]["anomaly"]["p50"] is not None  # falls of the pendant probe
    assert doc["latency_ms"]["alert"]["p50"] is not None  # their alerts on a coordinator's stream
    # Where each fall's time went, stage by stage (MQTT, gateway + Kafka, detection, commit).
    parts = doc["latency_detail"]["anomaly_segments"]["latency"]
    assert set(parts) == {"mqtt", "gateway_kafka", "detect", "commit_poll"}
    assert all(p["p50"] is not None for p in parts.values())
    assert doc["latency_detail"]["detection_catch_up_s"] is not None  # waited for, and caught up
    assert doc["latency_detail"]["rollups_catch_up_s"] is not None
    assert doc["config"]["kafka"]["kind"] in ("apache", "tansu")
    for component in ("gateway", "storage", "mosquitto", "kafka", "postgres", "detection", "alerting"):
        assert set(doc["cost"][component]) >= {"cpu_s_per_million", "peak_rss_mb"}
    e2e = doc["e2e"]
    assert e2e["lost"] == 0
    assert e2e["published"] > 0 and e2e["stored"] == e2e["published"]
    assert doc["storage"]["lost"] == 0
    assert doc["ok"] is True
