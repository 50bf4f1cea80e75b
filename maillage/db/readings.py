"""Readings: the idempotent move from staging into `readings`, raw and bucketed queries per device
and per area, CSV (the storage processor's writer is `db.writer`)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
from psycopg import sql

from maillage.db import rollups
from maillage.vocabulary import KNOWN, is_valid_name

STAGE = "readings_stage"
"""The one staging table of readings (temporary, per connection), for COPY then `write_staged`."""
_STAGE_DDL = (
    f"CREATE TEMP TABLE IF NOT EXISTS {STAGE} (device_pk bigint, metric_id smallint, "
    "ts timestamptz, value double precision, received_at timestamptz, seq bigint) "
    "ON COMMIT DELETE ROWS"
)

# One statement: empty the stage, keep the first value received per key (in the batch, then
# against the table), and queue the buckets of the rows actually inserted (duplicates change
# nothing, so they mark nothing).
_WRITE = """
WITH s AS (DELETE FROM {stage} RETURNING device_pk, metric_id, ts, value, received_at, seq),
ins AS (
    INSERT INTO readings (device_pk, metric_id, ts, value, received_at, seq)
    SELECT DISTINCT ON (device_pk, metric_id, ts) device_pk, metric_id, ts, value, received_at, seq
    FROM s ORDER BY device_pk, metric_id, ts, received_at
    ON CONFLICT DO NOTHING
    RETURNING device_pk, metric_id, ts),
dirty AS ({queue})
SELECT count(*) FROM ins
"""
_QUEUE = rollups.queue_from("SELECT DISTINCT device_pk, metric_id, maillage_bucket15(ts) AS bucket FROM ins")


def metric_ids(conn: psycopg.Connection, names: Iterable[str]) -> dict[str, int]:
    """Ids of these metric names, creating rows for new ones (known=false when not canonical)."""
    wanted = sorted(set(names))
    bad = [n for n in wanted if not is_valid_name(n)]
    if bad:
        raise ValueError(f"invalid metric names: {', '.join(bad)}")
    query = "SELECT name, id FROM metrics WHERE name = ANY (%s)"
    ids: dict[str, int] = dict(conn.execute(query, (wanted,)).fetchall())
    missing = [n for n in wanted if n not in ids]
    if missing:
        # Only missing names: ON CONFLICT still burns a smallserial value per attempted row.
        conn.execute(
            "INSERT INTO metrics (name, known) SELECT * FROM unnest(%s::text[], %s::bool[]) "
            "ON CONFLICT (name) DO NOTHING",
            (missing, [n in KNOWN for n in missing]),
        )
        ids.update(conn.execute(query, (missing,)).fetchall())
    return ids


def create_stage(conn: psycopg.Connection) -> str:
    """Make sure this connection has the staging table (emptied at commit); return its name."""
    conn.execute(_STAGE_DDL)
    return STAGE


def write_staged(conn: psycopg.Connection, *, staging_table: str) -> int:
    """Move a staging table (device_pk, metric_id, ts, value, received_at, seq) into readings.

    The staging table is emptied. Returns how many rows were new; their rollup buckets are
    queued in the same transaction.
    """
    query = sql.SQL(_WRITE).format(stage=sql.Identifier(staging_table), queue=sql.SQL(_QUEUE))
    row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0


def query_readings(
    conn: psycopg.Connection, *, device_pk: int, metric: str | None = None,
    start: datetime | None = None, end: datetime | None = None, bucket: str | None = None,
    tz: str | None = None, limit: int = 10_000, after: tuple[datetime | str, str] | None = None,
    fresh: bool = True,
) -> list[dict[str, Any]]:
    """Raw rows `{ts, metric, value}` in [start, end), or buckets overlapping it.

    Bucketed rows are `{bucket, metric, value, min, max}` with `bucket` the local start (ISO,
    with offset) in `tz` (default: the tenant's). Index metrics give the energy of the bucket
    (min and max None), others the mean. Order is (time, metric); `after` is the (time, metric)
    of the last row of the previous page. `fresh` first refreshes this device's dirty buckets.
    """
    row = conn.execute(
        "SELECT t.timezone FROM devices d JOIN tenants t ON t.id = d.tenant_id WHERE d.pk = %s",
        (device_pk,),
    ).fetchone()
    if row is None:
        raise LookupError(f"no device with pk {device_pk}")
    home_tz = row[0]
    if bucket is None:
        return _raw(conn, device_pk=device_pk, metric=metric, start=start, end=end, limit=limit,
                    after=after)
    rollups.table(bucket)  # an unknown bucket fails before any work
    tz = _zone(tz or home_tz)
    if fresh:
        rollups.refresh_devices(conn, [device_pk])
    source = bucket if tz == home_tz or bucket == "15m" else "15m"
    where = [sql.SQL("r.device_pk = %(key)s")]
    return _bucketed(conn, table=rollups.table(source), where=where, key=device_pk, metric=metric,
                     start=start, end=end, bucket=bucket, tz=tz, limit=limit, after=after)


def query_area(
    conn: psycopg.Connection, *, tenant: str, level: str, name: str, metric: str | None,
    start: datetime | None, end: datetime | None, bucket: str, tz: str | None = None,
    limit: int = 100_000, after: tuple[datetime | str, str] | None = None, fresh: bool = True,
) -> list[dict[str, Any]]:
    """Buckets of a site, district or commune: energy summed over devices, power mean/min/max.

    Rows are `{bucket, metric, value, min, max, devices}`; `devices` counts the devices with
    data in the bucket (the most in any sub-bucket when `tz` differs from the tenant's).
    """
    if level not in rollups.LEVELS:
        raise ValueError(f"unknown level {level!r}; use one of {', '.join(rollups.LEVELS)}")
    row = conn.execute("SELECT timezone FROM tenants WHERE id = %s", (tenant,)).fetchone()
    if row is None:
        raise LookupError(f"no tenant {tenant!r}")
    home_tz = row[0]
    rollups.table(bucket)
    tz = _zone(tz or home_tz)
    if fresh:
        rollups.refresh_area(conn, tenant=tenant, level=level, name=name)
    source = bucket if tz == home_tz else "15m"
    where = [sql.SQL("r.tenant_id = %(key)s AND r.level = %(level)s AND r.name = %(name)s "
                     "AND r.grain = %(grain)s")]
    return _bucketed(conn, table=sql.Identifier("rollup_area"), where=where, key=tenant,
                     metric=metric, start=start, end=end, bucket=bucket, tz=tz, limit=limit,
                     after=after, extra={"level": level, "name": name, "grain": source},
                     devices=True)


def rows_to_csv(rows: Iterable[Mapping[str, Any]]) -> str:
    """CSV text with a header (the keys, in first-seen order); times in ISO 8601, None empty."""
    rows = list(rows)
    fields: list[str] = []
    for r in rows:
        fields.extend(k for k in r if k not in fields)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    if fields:
        writer.writeheader()
    for r in rows:
        writer.writerow({k: _cell(v) for k, v in r.items()})
    return buf.getvalue()


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float):
        return repr(value)
    return value


def _zone(tz: str) -> str:
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {tz!r}") from exc
    return tz


def _after(after: tuple[datetime | str, str] | None) -> tuple[datetime, str] | None:
    if after is None:
        return None
    when, metric = after
    return (datetime.fromisoformat(when) if isinstance(when, str) else when), metric


def _raw(conn: psycopg.Connection, *, device_pk: int, metric: str | None, start: datetime | None,
         end: datetime | None, limit: int, after: tuple[datetime | str, str] | None,
         ) -> list[dict[str, Any]]:
    # One index range scan per metric, merged: the key (device, metric, ts) serves every filter.
    cond = [sql.SQL("r.device_pk = %(pk)s AND r.metric_id = m.id")]
    if start is not None:
        cond.append(sql.SQL("r.ts >= %(start)s"))
    if end is not None:
        cond.append(sql.SQL("r.ts < %(end)s"))
    page = _after(after)
    if page is not None:
        cond.append(sql.SQL("r.ts >= %(a_ts)s AND (r.ts > %(a_ts)s OR m.name > %(a_m)s)"))
    query = sql.SQL(
        "SELECT x.ts, m.name, x.value FROM metrics m CROSS JOIN LATERAL ("
        " SELECT r.ts, r.value FROM readings r WHERE {cond} ORDER BY r.ts LIMIT %(limit)s) x "
        "WHERE {metric} ORDER BY x.ts, m.name LIMIT %(limit)s"
    ).format(cond=sql.SQL(" AND ").join(cond),
             metric=sql.SQL("m.name = %(metric)s" if metric else "true"))
    params = {"pk": device_pk, "start": start, "end": end, "limit": limit, "metric": metric,
              "a_ts": page[0] if page else None, "a_m": page[1] if page else None}
    return [{"ts": ts, "metric": m, "value": v} for ts, m, v in conn.execute(query, params)]


def _bucketed(conn: psycopg.Connection, *, table: sql.Identifier, where: Sequence[sql.Composable],
              key: int | str, metric: str | None, start: datetime | None, end: datetime | None,
              bucket: str, tz: str, limit: int, after: tuple[datetime | str, str] | None,
              extra: Mapping[str, Any] | None = None, devices: bool = False,
              ) -> list[dict[str, Any]]:
    """Aggregate stored rollups (of this grain, or finer) into buckets of `bucket` in `tz`."""
    rollups.table(bucket)
    cond = list(where)
    if metric is not None:
        cond.append(sql.SQL("m.name = %(metric)s"))
    # Every bucket overlapping [start, end): widen to the bucket edges in the asked zone.
    if start is not None:
        cond.append(sql.SQL("r.bucket >= maillage_bucket(%(start)s, %(grain_q)s, %(tz)s)"))
    if end is not None:
        cond.append(sql.SQL(
            "r.bucket < maillage_bucket_end(maillage_bucket(%(end)s - interval '1 microsecond', "
            "%(grain_q)s, %(tz)s), %(grain_q)s, %(tz)s)"))
    page = _after(after)
    having = sql.SQL("HAVING (maillage_bucket(r.bucket, %(grain_q)s, %(tz)s), m.name) "
                     "> (%(a_b)s, %(a_m)s)" if page else "")
    query = sql.SQL(
        "SELECT maillage_bucket(r.bucket, %(grain_q)s, %(tz)s) AS b, m.name, m.kind, "
        "sum(r.n), sum(r.vsum), min(r.vmin), max(r.vmax), sum(r.energy), {dev} "
        "FROM {table} r JOIN metrics m ON m.id = r.metric_id WHERE {cond} "
        "GROUP BY 1, 2, 3 {having} ORDER BY 1, 2 LIMIT %(limit)s"
    ).format(table=table, cond=sql.SQL(" AND ").join(cond), having=having,
             dev=sql.SQL("max(r.devices)" if devices else "NULL"))
    params: dict[str, Any] = {"key": key, "metric": metric, "start": start, "end": end,
                              "grain_q": bucket, "tz": tz, "limit": limit,
                              "a_b": page[0] if page else None, "a_m": page[1] if page else None,
                              **(extra or {})}
    zone = ZoneInfo(tz)
    out: list[dict[str, Any]] = []
    for b, name, kind, n, vsum, vmin, vmax, energy, ndev in conn.execute(query, params):
        if kind == "index":
            item = {"bucket": b.astimezone(zone).isoformat(), "metric": name, "value": energy,
                    "min": None, "max": None}
        else:
            item = {"bucket": b.astimezone(zone).isoformat(), "metric": name,
                    "value": vsum / n if n else None, "min": vmin, "max": vmax}
        if devices:
            item["devices"] = ndev
        out.append(item)
    return out


async def raw_page(*, conn: psycopg.AsyncConnection, device_pk: int, metric: str | None,
                   start: datetime | None, end: datetime | None,
                   after: tuple[datetime, str] | None, limit: int) -> list[dict[str, Any]]:
    """Raw rows `{ts, metric, value}` of a device in [start, end), by (time, metric), after `after`."""
    a_ts, a_metric = after if after is not None else (None, None)
    cur = await conn.execute(
        "SELECT r.ts, m.name, r.value FROM readings r JOIN metrics m ON m.id = r.metric_id "
        "WHERE r.device_pk = %s AND (%s::text IS NULL OR m.name = %s) "
        "AND (%s::timestamptz IS NULL OR r.ts >= %s) AND (%s::timestamptz IS NULL OR r.ts < %s) "
        "AND (%s::timestamptz IS NULL OR (r.ts, m.name) > (%s, %s)) "
        "ORDER BY r.ts, m.name LIMIT %s",
        (device_pk, metric, metric, start, start, end, end, a_ts, a_ts, a_metric, limit),
    )
    return [{"ts": ts, "metric": m, "value": v} for ts, m, v in await cur.fetchall()]


def device_pks(conn: psycopg.Connection, tenant: str, device_ids: Sequence[str]) -> dict[str, int]:
    """device_id -> pk for one tenant (helper for scripts and tests)."""
    return dict(conn.execute(
        "SELECT device_id, pk FROM devices WHERE tenant_id = %s AND device_id = ANY (%s)",
        (tenant, list(device_ids)),
    ).fetchall())
