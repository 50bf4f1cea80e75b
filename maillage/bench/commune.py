"""The commune query figure: p95 of a one-year daily-energy query over a 10,000-meter commune.

It runs on a database of its own (an embedded PostgreSQL in a temporary folder, or a fresh
database on MAILLAGE_DATABASE_URL's server), seeded with `rollups.seed_commune`, and times the
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
            rollups.seed_commune(conn, tenant="bench", commune="bench", meters=meters, days=days)
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
