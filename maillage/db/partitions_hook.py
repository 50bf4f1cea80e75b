"""Create the readings partitions around now (called at start-up and by the storage processor)."""

from __future__ import annotations

import psycopg


def ensure_partitions_now(database_url: str) -> int:
    """Monthly partitions from 24 months back to 3 months ahead; returns how many were created."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT maillage_ensure_partitions(now() - interval '24 months', now() + interval '3 months')"
        ).fetchone()
    return int(row[0]) if row else 0
