"""The commune query figure: p95 of a one-year daily-energy query over a 10,000-meter commune.

It runs on a database of its own (an embedded PostgreSQL in a temporary folder, or a fresh
database on MAILLAGE_DATABASE_URL's server), seeded with `seed_commune`, and times the
API's query function (`query_area`, daily buckets, Europe/Paris) cold once, then warm.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from maillage.db import rollups
from maillage.db.migrate import migrate
from maillage.db.readings import query_area
from maillage.stack import postgres
from maillage.stack.process import ManagedProcess, free_port


def _database(server_url: str | None, root: Path) -> tuple[str, ManagedProcess | None]:
    if server_url:
        name = f"bench_commune_{uuid.uuid4().hex[:6]}"
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return server_url.rsplit("/", 1)[0] + f"/{name}", None
    proc, url = postgres.start(root / "pg", free_port())
    return url, proc


def commune_query(*, meters: int = 10_000, days: int = 365, runs: int = 20,
                  server_url: str | None = None) -> dict[str, Any]:
    """Seed, then time `runs` one-year daily queries of the commune; milliseconds."""
    root = Path(tempfile.mkdtemp(prefix="maillage-commune-", dir="/tmp"))
    root.chmod(0o755)
    url, proc = _database(server_url, root)
    try:
        migrate(url)
        with psycopg.connect(url, autocommit=True) as conn:
            t0 = time.perf_counter()
            seed_commune(conn, tenant="bench", commune="bench", meters=meters, days=days)
            while rollups.refresh_rollups(conn) > 0:
                pass
            seed_s = time.perf_counter() - t0
            end = datetime.now(UTC)
            start = end - timedelta(days=days)
            times: list[float] = []
            rows = 0
            for _ in range(runs + 1):
                t = time.perf_counter()
                rows = len(query_area(conn, tenant="bench", level="commune", name="bench",
                                      metric="energy_import_wh", start=start, end=end, bucket="1d",
                                      tz="Europe/Paris"))
                times.append((time.perf_counter() - t) * 1000)
        warm = sorted(times[1:])
        return {"meters": meters, "days": days, "buckets": rows, "seed_s": round(seed_s, 1),
                "cold_ms": round(times[0], 1), "p50_ms": round(statistics.median(warm), 1),
                "p95_ms": round(warm[min(len(warm) - 1, int(0.95 * len(warm)))], 1)}
    finally:
        if proc is not None:
            proc.stop()
        shutil.rmtree(root, ignore_errors=True)


def markdown_line(result: dict[str, Any]) -> str:
    """One line for docs/benchmarks.md."""
    return (f"- {datetime.now(UTC):%Y-%m-%d}: one-year daily energy of a commune of "
            f"{result['meters']:,} meters ({result['buckets']} buckets): p50 {result['p50_ms']} ms, "
            f"p95 {result['p95_ms']} ms, cold {result['cold_ms']} ms (seeding {result['seed_s']} s)\n")


def seed_commune(conn: psycopg.Connection, *, tenant: str = "bench", commune: str = "bench",
                 meters: int = 10_000, days: int = 365, tz: str = "Europe/Paris") -> list[int]:
    """Benchmark data: a commune of `meters` meters with `days` of daily energy; returns pks.

    Device rollups (day and month) are written directly, as 15-minute raw data for 10,000
    meters over a year would be 350 M rows; the area rollups are then computed by the refresh,
    so a commune query reads what production would. Meters sit in 10 districts of 100 sites.
    """
    p = {"t": tenant, "c": commune, "n": meters, "tz": tz, "days": days}
    conn.execute("INSERT INTO tenants (id, name, timezone) VALUES (%(t)s, %(t)s, %(tz)s) "
                 "ON CONFLICT (id) DO NOTHING", p)
    conn.execute(
        "INSERT INTO devices (tenant_id, device_id, type, mqtt_username, site, district, commune) "
        "SELECT %(t)s, %(c)s || '-m' || i, 'meter', %(t)s || '-' || %(c)s || '-m' || i, "
        "       %(c)s || '-s' || i %% 100, %(c)s || '-d' || i %% 10, %(c)s "
        "FROM generate_series(1, %(n)s) i ON CONFLICT (tenant_id, device_id) DO NOTHING", p)
    p["pks"] = pks = [r[0] for r in conn.execute(
        "SELECT pk FROM devices WHERE tenant_id = %(t)s AND commune = %(c)s ORDER BY pk", p)]
    conn.execute("INSERT INTO metrics (name) VALUES ('energy_import_wh') ON CONFLICT DO NOTHING")
    # A seasonal load (more in winter) varying by meter: about 2 to 24 kWh a day.
    conn.execute(
        "INSERT INTO rollup_1d (device_pk, metric_id, bucket, n, energy) "
        "SELECT pk, m.id, (date_trunc('day', now() AT TIME ZONE %(tz)s) - k * interval '1 day') "
        "       AT TIME ZONE %(tz)s, 96, "
        "       (8000 + 4000 * cos(2 * pi() * (extract(doy FROM now()) - k) / 365.0)) "
        "       * (0.5 + (pk %% 97) / 64.0) "
        "FROM metrics m, unnest(%(pks)s::bigint[]) pk, generate_series(1, %(days)s) k "
        "WHERE m.name = 'energy_import_wh' ON CONFLICT DO NOTHING", p)
    conn.execute(
        "INSERT INTO rollup_1mo (device_pk, metric_id, bucket, n, energy) "
        "SELECT device_pk, metric_id, maillage_bucket(bucket, '1mo', %(tz)s), sum(n), sum(energy) "
        "FROM rollup_1d WHERE device_pk = ANY (%(pks)s) GROUP BY 1, 2, 3 "
        "ON CONFLICT (device_pk, metric_id, bucket) DO UPDATE SET n = EXCLUDED.n, "
        "energy = EXCLUDED.energy", p)
    conn.execute(
        "INSERT INTO rollup_area_dirty (tenant_id, level, name, metric_id, grain, bucket) "
        "SELECT %(t)s, a.level, a.name, b.metric_id, b.grain, b.bucket "
        "FROM (SELECT DISTINCT l.level, l.name FROM devices d CROSS JOIN LATERAL (VALUES "
        "      ('site', d.site), ('district', d.district), ('commune', d.commune)) l(level, name) "
        "      WHERE d.pk = ANY (%(pks)s)) a, "
        "     (SELECT DISTINCT metric_id, '1d' AS grain, bucket FROM rollup_1d "
        "      WHERE device_pk = %(first)s "
        "      UNION SELECT DISTINCT metric_id, '1mo', bucket FROM rollup_1mo "
        "      WHERE device_pk = %(first)s) b", {**p, "first": pks[0] if pks else None})
    while rollups.refresh_rollups(conn, limit=1_000_000):
        pass
    return pks
