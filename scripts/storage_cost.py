"""CPU cost of the storage write path per reading: PostgreSQL and the storage sink, without Kafka.

Starts an embedded PostgreSQL with the production settings (durable) in a temporary folder,
registers devices, replays reading envelopes made like the bench's (`envelope_records`, the
territory's mix) through `StorageSink.add` / `flush` while the maintenance processor's tick runs
every 2 s on its own connection, as in production, then drains the rollup queue and checkpoints.
Prints CPU µs per reading of: the sink (decoding, flushing), the PostgreSQL backend of the
storage connection, the maintenance backend, the other PostgreSQL processes (WAL writer,
checkpointer, autovacuum...), and the top statements of `pg_stat_statements`.

Scenarios: `bench` (16 devices, message i of a device measured at t0 + i s, like the bench's
storage feed) and `fleet` (many devices, one message each per `--step` seconds: a batch holds
about one message per device, as a real territory sends).

    .venv/bin/python scripts/storage_cost.py --scenario fleet --readings 600000
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psutil
import psycopg
from aiokafka.structs import ConsumerRecord

from maillage import topics
from maillage.bench.baselines import envelope_records
from maillage.bench.fleet import build_mix, readings_per_message
from maillage.db import rollups
from maillage.db.migrate import migrate
from maillage.processors import maintenance
from maillage.processors.maintenance import Maintenance
from maillage.processors.storage import StorageSink
from maillage.stack import postgres
from maillage.stack.process import free_port

TENANT = "cost"


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")


def _tree_cpu(root: psutil.Process) -> dict[int, float]:
    out = {}
    for p in [root, *root.children(recursive=True)]:
        try:
            t = p.cpu_times()
            out[p.pid] = t.user + t.system + (t.children_user + t.children_system if p is root else 0)
        except psutil.NoSuchProcess:
            pass
    return out


def _pid_cpu(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def _records(args: argparse.Namespace, ids: list[str]) -> list[ConsumerRecord[bytes, bytes]]:
    mix = [a for a in build_mix() if a.readings_per_message > 0]
    n = int(args.readings / readings_per_message(mix))
    t0 = int(time.time()) - 2 * 86_400
    raw, _ = envelope_records(mix, TENANT, ids, t0, n)
    nd = len(ids)
    out = []
    for j, (key, value) in enumerate(raw):
        if args.step != 1:
            d = orjson.loads(value)
            d["ts"] = (t0 + (j // nd) * args.step) * 1_000_000
            value = orjson.dumps(d)
        out.append(ConsumerRecord(topics.READINGS, 0, j, 0, 0, key, value, None, len(key),
                                  len(value), ()))
    return out


def _register(url: str, n: int) -> list[str]:
    ids = [f"dev-{k:06d}" for k in range(n)]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO tenants (id, name) VALUES (%s, %s)", (TENANT, TENANT))
        conn.execute(
            "INSERT INTO devices (tenant_id, device_id, type, mqtt_username, site, commune) "
            "SELECT %s, d, 'meter', %s || '/' || d, 's' || (i %% 50), 'c' "
            "FROM unnest(%s::text[]) WITH ORDINALITY AS u(d, i)", (TENANT, TENANT, ids))
    return ids


def _maintenance(url: str, stop: threading.Event, box: dict[str, Any]) -> None:
    m = Maintenance(url)
    with psycopg.connect(url, autocommit=True) as conn:
        box["pid"] = conn.info.backend_pid
        while not stop.is_set():
            t = time.thread_time()
            m.tick(conn)
            box["cpu"] = box.get("cpu", 0.0) + time.thread_time() - t
            stop.wait(1.0)
        while rollups.refresh_rollups(conn):
            pass
        box["pg"] = _pid_cpu(box["pid"])


def _probe(url: str, stop: threading.Event) -> None:
    """The bench's latency probe poll: 50 queries a second for one device's newest rows."""
    with psycopg.connect(url, autocommit=True) as conn:
        pk = conn.execute("SELECT min(pk) FROM devices").fetchone()[0]
        while not stop.is_set():
            conn.execute(
                "SELECT r.seq, r.ts FROM readings r JOIN metrics m ON m.id = r.metric_id "
                "WHERE r.device_pk = %s AND m.name = %s AND r.ts > %s ORDER BY r.ts",
                (pk, "active_power_w", datetime.now(UTC) - timedelta(seconds=5))).fetchall()
            stop.wait(0.02)


def run(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="storage-cost-", dir="/tmp"))
    root.chmod(0o755)
    extra = dict(kv.split("=", 1) for kv in args.set)
    proc, url = postgres.start(root / "pg", free_port(), extra=extra)
    try:
        migrate(url)
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        ids = _register(url, args.devices)
        records = _records(args, ids)
        sink = StorageSink(url, max_rows=args.batch)
        sink.flush()
        pg = psutil.Process(proc.pid)
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("CHECKPOINT")
            c.execute("SELECT pg_stat_statements_reset()")
            wal0 = c.execute("SELECT wal_records, wal_fpi, wal_bytes FROM pg_stat_wal").fetchone()
        cpu0 = _tree_cpu(pg)
        stop, box = threading.Event(), {}
        maint = threading.Thread(target=_maintenance, args=(url, stop, box))
        maint.start()
        readings_per_record = args.readings / len(records)
        if args.probe:
            threading.Thread(target=_probe, args=(url, stop), daemon=True).start()
        add_s = flush_s = 0.0
        storage_pid = None
        t_start = time.monotonic()
        i = 0
        while i < len(records):
            t = time.thread_time()
            while i < len(records) and not sink.full():
                sink.add(records[i])
                i += 1
            t1 = time.thread_time()
            sink.flush()
            t2 = time.thread_time()
            add_s += t1 - t
            flush_s += t2 - t1
            if storage_pid is None and sink._conn is not None:
                storage_pid = sink._conn.info.backend_pid
            if args.rate:
                ahead = i * readings_per_record / args.rate - (time.monotonic() - t_start)
                if ahead > 0:
                    time.sleep(ahead)
        wall = time.monotonic() - t_start
        storage_pg = _pid_cpu(storage_pid) - cpu0.get(storage_pid, 0.0) if storage_pid else 0.0
        stop.set()
        maint.join()
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("CHECKPOINT")
            stored = c.execute("SELECT count(*) FROM readings").fetchone()[0]
            wal1 = c.execute("SELECT wal_records, wal_fpi, wal_bytes FROM pg_stat_wal").fetchone()
            top = c.execute(
                "SELECT total_exec_time, calls, rows, left(regexp_replace(query, '\\s+', ' ', 'g'), 90) "
                "FROM pg_stat_statements ORDER BY 1 DESC LIMIT 12").fetchall()
        cpu1 = _tree_cpu(pg)
        total_pg = sum(cpu1.values()) - sum(v for k, v in cpu0.items() if k in cpu1 or k == pg.pid)
        maint_pg = box.get("pg", 0.0) - cpu0.get(box.get("pid", -1), 0.0)
        per = 1e6 / stored
        _out(f"scenario={args.scenario} devices={args.devices} step={args.step}s batch={args.batch} "
              f"readings={stored:,} wall={wall:.1f}s ({stored / wall:,.0f}/s) settings={extra}")
        _out(f"  sink add      {add_s * per:6.2f} µs/reading")
        _out(f"  sink flush    {flush_s * per:6.2f} µs/reading (Python side)")
        _out(f"  maint python  {box.get('cpu', 0.0) * per:6.2f} µs/reading")
        _out(f"  pg storage    {storage_pg * per:6.2f} µs/reading")
        _out(f"  pg maint      {maint_pg * per:6.2f} µs/reading")
        _out(f"  pg other      {(total_pg - storage_pg - maint_pg) * per:6.2f} µs/reading")
        _out(f"  pg total      {total_pg * per:6.2f} µs/reading")
        rec, fpi, wal = (b - a for a, b in zip(wal0, wal1, strict=True))
        _out(f"  WAL           {rec / stored:6.2f} records, {fpi / stored:6.3f} page images, "
             f"{wal / stored:6.0f} bytes per reading")
        for ms, calls, rows, q in top:
            _out(f"    {ms * 1000 * per / 1e6:7.2f} µs/r {calls:6d} calls {rows:9d} rows  {q}")
    finally:
        proc.stop()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", choices=("bench", "fleet"), default="fleet")
    ap.add_argument("--devices", type=int)
    ap.add_argument("--step", type=int, help="seconds between two messages of a device")
    ap.add_argument("--readings", type=int, default=500_000)
    ap.add_argument("--batch", type=int, default=20_000, help="rows per flush")
    ap.add_argument("--rate", type=float, default=0.0, help="readings/s to feed at (0: at once)")
    ap.add_argument("--probe", action="store_true", help="also poll like the bench's latency probe")
    ap.add_argument("--rollup-every", type=float, help="seconds between rollup refreshes")
    ap.add_argument("--set", action="append", default=[], help="PostgreSQL setting key=value")
    args = ap.parse_args()
    if args.rollup_every is not None:
        maintenance.ROLLUP_EVERY_S = args.rollup_every
    if args.devices is None:
        args.devices = 16 if args.scenario == "bench" else 5000
    if args.step is None:
        args.step = 1 if args.scenario == "bench" else 30
    run(args)


if __name__ == "__main__":
    main()
