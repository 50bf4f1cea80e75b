"""Commands to devices: the audit rows, the outbox to `maillage.commands`, delivery states.

A command (`commands`) is one order from one issuer (an API token, a lighting rule, a peak
window) to a device or a group; it has one `command_targets` row per device. The target rows are
the transactional outbox: inserted with the command, produced to Kafka by the commands
processor's relay (`produced_at`), recorded back from Kafka (`accepted_at`), published over MQTT
(`sent`, `attempts`, `next_at` = when to try again or give up), closed by the device's ack
(`done` / `failed`) or by the retry budget (`failed`). A command's own state sums its targets':
`pending` (nothing sent yet), `sent` (some under way), `done` (every device acknowledged it),
`failed` (all finished, at least one failed). Every write NOTIFYs nothing but the outbox.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

OUTBOX_CHANNEL = "maillage_commands"
STATES = ("pending", "sent", "done", "failed")
CMDS = ("on", "off", "dim", "schedule", "auto")

def listen(*, conn: psycopg.Connection) -> None:
    """Subscribe this (autocommit) connection to new commands (the relay's wake-up)."""
    conn.execute(f"LISTEN {OUTBOX_CHANNEL}")


_INSERT_COMMAND = (
    "INSERT INTO commands (tenant_id, target, cmd, level, params, issued_by, token_id, role, devices) "
    "VALUES (%(tenant)s, %(target)s, %(cmd)s, %(level)s, %(params)s, %(issued_by)s, %(token_id)s, "
    "%(role)s, %(devices)s) RETURNING id, state, created_at")
_INSERT_TARGETS = (
    "INSERT INTO command_targets (command_id, tenant_id, device_id) "
    "SELECT %(id)s, %(tenant)s, d FROM unnest(%(devices)s::text[]) AS d")
_NOTIFY = f"NOTIFY {OUTBOX_CHANNEL}"

_COLUMNS = ("c.id, c.tenant_id, c.target, c.cmd, c.level, c.params, c.issued_by, c.token_id, "
            "c.role, c.state, c.devices, c.done, c.failed, c.created_at, c.finished_at")
_TARGET_COLUMNS = ("id, device_id, state, attempts, produced_at, accepted_at, sent_at, next_at, "
                   "finished_at, result, error")


def _params(*, tenant: str, target: str, cmd: str, level: float | None, params: dict[str, Any],
            devices: Sequence[str], issued_by: str, token_id: int | None,
            role: str | None) -> dict[str, Any]:
    if not devices:
        raise ValueError("a command needs at least one device")
    return {"tenant": tenant, "target": target, "cmd": cmd, "level": level,
            "params": Jsonb(params), "issued_by": issued_by, "token_id": token_id, "role": role,
            "devices": len(devices)}


async def create_command(*, conn: psycopg.AsyncConnection, tenant: str, target: str, cmd: str,
                         level: float | None, params: dict[str, Any], devices: Sequence[str],
                         issued_by: str, token_id: int | None, role: str | None) -> dict[str, Any]:
    """Record a command and its targets (the outbox) in one transaction; `{id, state, created_at}`."""
    p = _params(tenant=tenant, target=target, cmd=cmd, level=level, params=params, devices=devices,
                issued_by=issued_by, token_id=token_id, role=role)
    async with conn.transaction():
        cur = await conn.cursor(row_factory=dict_row).execute(_INSERT_COMMAND, p)
        row = await cur.fetchone()
        assert row is not None
        await conn.execute(_INSERT_TARGETS, {"id": row["id"], "tenant": tenant,
                                             "devices": list(devices)})
        await conn.execute(_NOTIFY)
    return dict(row)


def create_command_sync(*, conn: psycopg.Connection, tenant: str, target: str, cmd: str,
                        level: float | None, params: dict[str, Any], devices: Sequence[str],
                        issued_by: str) -> int:
    """`create_command` for the control processors, inside the caller's transaction; the id."""
    p = _params(tenant=tenant, target=target, cmd=cmd, level=level, params=params, devices=devices,
                issued_by=issued_by, token_id=None, role=None)
    row = conn.execute(_INSERT_COMMAND, p).fetchone()
    assert row is not None
    conn.execute(_INSERT_TARGETS, {"id": row[0], "tenant": tenant, "devices": list(devices)})
    conn.execute(_NOTIFY)
    return int(row[0])


async def list_commands(*, conn: psycopg.AsyncConnection, tenant: str | None, state: str | None,
                        target: str | None, device: str | None, issued_by: str | None,
                        start: datetime | None, end: datetime | None, before_id: int | None,
                        limit: int) -> list[dict[str, Any]]:
    """Commands newest first (id below `before_id`), filtered; `device`: commands that reached it."""
    cur = await conn.cursor(row_factory=dict_row).execute(
        f"SELECT {_COLUMNS} FROM commands c WHERE "
        "(%(tenant)s::text IS NULL OR c.tenant_id = %(tenant)s) "
        "AND (%(state)s::text IS NULL OR c.state = %(state)s) "
        "AND (%(target)s::text IS NULL OR c.target = %(target)s) "
        "AND (%(issued_by)s::text IS NULL OR c.issued_by = %(issued_by)s) "
        "AND (%(device)s::text IS NULL OR EXISTS (SELECT 1 FROM command_targets t "
        "     WHERE t.command_id = c.id AND t.device_id = %(device)s)) "
        "AND (%(start)s::timestamptz IS NULL OR c.created_at >= %(start)s) "
        "AND (%(end)s::timestamptz IS NULL OR c.created_at < %(end)s) "
        "AND (%(before)s::bigint IS NULL OR c.id < %(before)s) "
        "ORDER BY c.id DESC LIMIT %(limit)s",
        {"tenant": tenant, "state": state, "target": target, "device": device,
         "issued_by": issued_by, "start": start, "end": end, "before": before_id, "limit": limit})
    return list(await cur.fetchall())


async def get_command(*, conn: psycopg.AsyncConnection, tenant: str | None,
                      command_id: int) -> dict[str, Any] | None:
    """One command with its `targets` (per device), within the tenant; None when absent."""
    cur = await conn.cursor(row_factory=dict_row).execute(
        f"SELECT {_COLUMNS} FROM commands c WHERE c.id = %(id)s "
        "AND (%(tenant)s::text IS NULL OR c.tenant_id = %(tenant)s)",
        {"id": command_id, "tenant": tenant})
    row = await cur.fetchone()
    if row is None:
        return None
    cur = await conn.cursor(row_factory=dict_row).execute(
        f"SELECT {_TARGET_COLUMNS} FROM command_targets WHERE command_id = %s ORDER BY device_id",
        (command_id,))
    return {**row, "targets": list(await cur.fetchall())}


def command_summary(*, conn: psycopg.Connection, command_id: int) -> dict[str, Any] | None:
    """State, counts and finish time of one command (the control processors' view)."""
    cur = conn.cursor(row_factory=dict_row).execute(
        "SELECT id, state, devices, done, failed, finished_at FROM commands WHERE id = %s",
        (command_id,))
    return cur.fetchone()


# -- the relay (outbox -> maillage.commands) ---------------------------------------------------------

def pending_outbox(*, conn: psycopg.Connection, limit: int) -> list[tuple[int, bytes, bytes]]:
    """Targets not yet produced, oldest first: (target id, Kafka key, Kafka value)."""
    rows = conn.execute(
        "SELECT t.id, t.command_id, t.tenant_id, t.device_id, c.cmd, c.level, c.params, "
        "c.issued_by, c.created_at FROM command_targets t JOIN commands c ON c.id = t.command_id "
        "WHERE t.produced_at IS NULL ORDER BY t.id LIMIT %s", (limit,)).fetchall()
    out = []
    for tid, cid, tenant, device, cmd, level, params, issued_by, created in rows:
        value = orjson.dumps({"id": tid, "command_id": cid, "tenant": tenant, "device_id": device,
                              "cmd": cmd, "level": level, "params": params,
                              "issued_by": issued_by, "created_at": created.isoformat()})
        out.append((tid, f"{tenant}/{device}".encode(), value))
    return out


def mark_produced(*, conn: psycopg.Connection, ids: Sequence[int]) -> None:
    """Targets now on `maillage.commands`."""
    conn.execute("UPDATE command_targets SET produced_at = now() WHERE id = ANY(%s) "
                 "AND produced_at IS NULL", (list(ids),))


# -- the dispatcher (maillage.commands -> MQTT, retries) ---------------------------------------------

def accept(*, conn: psycopg.Connection, ids: Sequence[int]) -> set[int]:
    """Record targets read from Kafka as due for sending; returns the ids known to the table
    (a target read again after a replay keeps its state)."""
    if not ids:
        return set()
    rows = conn.execute(
        "WITH known AS (SELECT id FROM command_targets WHERE id = ANY(%(ids)s)), "
        "upd AS (UPDATE command_targets SET accepted_at = now(), next_at = now() "
        "        WHERE id = ANY(%(ids)s) AND accepted_at IS NULL AND state = 'pending') "
        "SELECT id FROM known", {"ids": list(ids)}).fetchall()
    return {r[0] for r in rows}


def reject_record(*, conn: psycopg.Connection, position: str, timestamp_ms: int, key: bytes | None,
                  payload: bytes, detail: str) -> None:
    """A record of `maillage.commands` that names no command of the table: kept in `rejected`
    (keyed by topic, record time and payload: the same record replayed is kept once)."""
    tenant, _, device = (key or b"").decode("utf-8", "replace").partition("/")
    record_key = hashlib.sha256(f"kafka:maillage.commands|{timestamp_ms}|".encode() + payload).digest()
    conn.execute(
        "INSERT INTO rejected (received_at, mqtt_topic, tenant_id, device_id, reason, detail, "
        "payload, kafka_offset, record_key) VALUES (to_timestamp(%s / 1000.0), "
        "'kafka:maillage.commands', %s, %s, 'not_stored', %s, %s, %s, %s) "
        "ON CONFLICT (record_key) DO NOTHING",
        (timestamp_ms, tenant or None, device or None, f"commands at {position}: {detail}"[:1000],
         payload, position, record_key))


def supersede(*, conn: psycopg.Connection) -> list[int]:
    """Fail the open targets a newer accepted command to the same device replaces (an older
    order retried after a newer one would undo it); the commands touched."""
    rows = conn.execute(
        "UPDATE command_targets o SET state = 'failed', finished_at = now(), "
        "error = 'superseded by a newer command to this device' "
        "WHERE o.state IN ('pending', 'sent') AND o.accepted_at IS NOT NULL AND EXISTS ("
        " SELECT 1 FROM command_targets n WHERE n.tenant_id = o.tenant_id "
        " AND n.device_id = o.device_id AND n.id > o.id AND n.accepted_at IS NOT NULL) "
        "RETURNING o.command_id").fetchall()
    return sorted({r[0] for r in rows})


def claim_due(*, conn: psycopg.Connection, limit: int) -> list[dict[str, Any]]:
    """Open targets whose `next_at` has come, locked for this transaction (SKIP LOCKED)."""
    cur = conn.cursor(row_factory=dict_row).execute(
        "SELECT t.id, t.command_id, t.tenant_id, t.device_id, t.state, t.attempts, c.cmd, "
        "c.level, c.params FROM command_targets t JOIN commands c ON c.id = t.command_id "
        "WHERE t.state IN ('pending', 'sent') AND t.next_at <= now() "
        "ORDER BY t.next_at LIMIT %s FOR UPDATE OF t SKIP LOCKED", (limit,))
    return list(cur.fetchall())


def mark_sent(*, conn: psycopg.Connection, target_id: int, wait_s: float) -> None:
    """One more MQTT attempt made; the ack is awaited for `wait_s`."""
    conn.execute(
        "UPDATE command_targets SET state = 'sent', attempts = attempts + 1, sent_at = now(), "
        "next_at = now() + make_interval(secs => %s) WHERE id = %s", (wait_s, target_id))


def mark_failed(*, conn: psycopg.Connection, target_id: int, error: str) -> None:
    """Given up on a target."""
    conn.execute(
        "UPDATE command_targets SET state = 'failed', finished_at = now(), next_at = NULL, "
        "error = %s WHERE id = %s AND state IN ('pending', 'sent')", (error, target_id))


def close_acked(*, conn: psycopg.Connection,
                acks: Sequence[tuple[str, str, int, str, dict[str, Any]]]) -> list[int]:
    """Acks `(tenant, device_id, target id, done|failed, fields)` close their open targets (a
    device acknowledges only its own commands); the commands touched."""
    touched: set[int] = set()
    for tenant, device, tid, status, fields in acks:
        row = conn.execute(
            "UPDATE command_targets SET state = %s, finished_at = now(), next_at = NULL, "
            "result = %s, error = %s WHERE id = %s AND tenant_id = %s AND device_id = %s "
            "AND state IN ('pending', 'sent') RETURNING command_id",
            (status, Jsonb(fields), str(fields.get("error")) if status == "failed" else None,
             tid, tenant, device)).fetchone()
        if row is not None:
            touched.add(row[0])
    return sorted(touched)


def refresh(*, conn: psycopg.Connection, command_ids: Sequence[int]) -> None:
    """Recompute the state and counts of commands from their targets."""
    if not command_ids:
        return
    conn.execute(
        "UPDATE commands c SET done = s.done, failed = s.failed, "
        "state = CASE WHEN s.open = 0 THEN CASE WHEN s.failed > 0 THEN 'failed' ELSE 'done' END "
        "             WHEN s.started > 0 THEN 'sent' ELSE 'pending' END, "
        "finished_at = CASE WHEN s.open = 0 THEN coalesce(c.finished_at, s.last) END "
        "FROM (SELECT command_id, count(*) FILTER (WHERE state = 'done') AS done, "
        "      count(*) FILTER (WHERE state = 'failed') AS failed, "
        "      count(*) FILTER (WHERE state IN ('pending', 'sent')) AS open, "
        "      count(*) FILTER (WHERE state <> 'pending') AS started, "
        "      max(finished_at) AS last "
        "      FROM command_targets WHERE command_id = ANY(%(ids)s) GROUP BY command_id) s "
        "WHERE c.id = s.command_id", {"ids": list(command_ids)})
