"""Lighting savings per lamp and night: reference (dusk to dawn at full power) against measured.

Entry point for the savings job: `compute(conn, *, tenant_id=None, since=None) -> int`
(lamp-nights stored). It reads the lamps' readings and inventory through
`maillage.db.lighting_savings`, splits each night's saving by cause (`led_retrofit`, `dimming`,
`switch_off`, `presence`) and stores one row per lamp and night; `db.lighting_savings.daily`
reads them back aggregated per lamp, cabinet, district or commune.
"""

from __future__ import annotations

from datetime import date

import psycopg


def compute(conn: psycopg.Connection, *, tenant_id: str | None = None,
            since: date | None = None) -> int:
    """Compute and store lamp-nights from `since` (default: the last stored night); returns rows."""
    raise NotImplementedError("lighting savings: in progress")
