"""Anomalies as the API and the silent-device job read them (the detection stage writes them).

`anomalies` rows are written by `maillage.db.detection.record_transitions`; this module only
reads: pages of a tenant's anomalies (newest first), one anomaly by id, the open offline
anomalies and the devices' last receive times for the silent-device job.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg

COLUMNS = ("id", "tenant_id", "device_id", "kind", "severity", "score", "start_ts", "end_ts",
           "evidence", "grp", "care")
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM anomalies"

# The visibility filter every API read goes through: tenant (None: every tenant, for an
# all-tenants admin) and care (None: both, True: care only, False: no care).
_SCOPE = ("(%(tenant)s::text IS NULL OR tenant_id = %(tenant)s) "
          "AND (%(care)s::boolean IS NULL OR care = %(care)s)")


def _rows(rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    return [dict(zip(COLUMNS, r, strict=True)) for r in rows]


async def list_anomalies(*, conn: psycopg.AsyncConnection, tenant: str | None, care: bool | None,
                         device: str | None = None, kind: str | None = None,
                         severity: str | None = None, group: str | None = None,
                         start: datetime | None = None, end: datetime | None = None,
                         state: str | None = None, after: tuple[datetime, str] | None = None,
                         limit: int) -> list[dict[str, Any]]:
    """Anomalies overlapping [start, end), newest start first, after the cursor (start_ts, id).

    An anomaly overlaps the window when it started before `end` and was still open at `start`
    (or ended at or after it); `state` is `open` (no end yet) or `closed`.
    """
    a_ts, a_id = after if after is not None else (None, None)
    cur = await conn.execute(
        f"{_SELECT} WHERE {_SCOPE} "
        "AND (%(device)s::text IS NULL OR device_id = %(device)s) "
        "AND (%(kind)s::text IS NULL OR kind = %(kind)s) "
        "AND (%(severity)s::text IS NULL OR severity = %(severity)s) "
        "AND (%(grp)s::text IS NULL OR grp = %(grp)s) "
        "AND (%(end)s::timestamptz IS NULL OR start_ts < %(end)s) "
        "AND (%(start)s::timestamptz IS NULL OR end_ts IS NULL OR end_ts >= %(start)s) "
        "AND (%(state)s::text IS NULL OR (end_ts IS NULL) = (%(state)s = 'open')) "
        "AND (%(a_ts)s::timestamptz IS NULL OR (start_ts, id) < (%(a_ts)s, %(a_id)s)) "
        "ORDER BY start_ts DESC, id DESC LIMIT %(limit)s",
        {"tenant": tenant, "care": care, "device": device, "kind": kind, "severity": severity,
         "grp": group, "start": start, "end": end, "state": state, "a_ts": a_ts, "a_id": a_id,
         "limit": limit},
    )
    return _rows(await cur.fetchall())


async def get_anomaly(*, conn: psycopg.AsyncConnection, anomaly_id: str, tenant: str | None,
                      care: bool | None) -> dict[str, Any] | None:
    """One anomaly by id within the caller's scope, else None."""
    cur = await conn.execute(
        f"{_SELECT} WHERE id = %(id)s AND {_SCOPE} ORDER BY start_ts DESC LIMIT 1",
        {"id": anomaly_id, "tenant": tenant, "care": care})
    rows = _rows(await cur.fetchall())
    return rows[0] if rows else None


# -- the silent-device job (synchronous: it runs in a worker thread) ------------------------------

OFFLINE_KINDS = ("device_offline", "group_offline")

_US = "(extract(epoch FROM {col}) * 1000000)::bigint"


def open_offline(*, conn: psycopg.Connection) -> list[dict[str, Any]]:
    """The open `device_offline` and `group_offline` anomalies of every tenant (times in µs)."""
    rows = conn.execute(
        f"SELECT tenant_id, device_id, kind, severity, score, {_US.format(col='start_ts')}, "
        "evidence, grp FROM anomalies WHERE end_ts IS NULL AND kind = ANY(%s)",
        (list(OFFLINE_KINDS),)).fetchall()
    keys = ("tenant", "device_id", "kind", "severity", "score", "start_us", "evidence", "group")
    return [dict(zip(keys, r, strict=True)) for r in rows]


SEEN_COLUMNS = ("tenant_id", "device_id", "type", "timezone", "commune", "district", "site",
                "dwelling", "meta", "expected_interval_s", "last_rx_us", "interval_s")


def device_silence(*, conn: psycopg.Connection) -> list[tuple[Any, ...]]:
    """Every device ever heard from (`SEEN_COLUMNS`): registry data, last receive time, interval."""
    return conn.execute(
        "SELECT d.tenant_id, d.device_id, d.type, t.timezone, d.commune, d.district, d.site, "
        f"d.dwelling, d.meta, d.expected_interval_s, {_US.format(col='s.last_rx')}, s.interval_s "
        "FROM detection_state s "
        "JOIN devices d ON d.tenant_id = s.tenant_id AND d.device_id = s.device_id "
        "JOIN tenants t ON t.id = d.tenant_id WHERE s.last_rx IS NOT NULL").fetchall()


SILENT_LOCK = 0x6D61696C_73696C  # "mailsil": one silence check at a time across processes


def try_silent_lock(*, conn: psycopg.Connection) -> bool:
    """Take the silence check's advisory lock for the current transaction; False if held."""
    row = conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (SILENT_LOCK,)).fetchone()
    return bool(row and row[0])
