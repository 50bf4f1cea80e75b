"""Demand response: the lamps of a declared peak window's area dimmed during it, restored after.

Each tick, in one transaction: a window whose start has come and that was not dimmed gets a
`dim` command to its level (`issued_by = peak_window:<id>`); a dimmed window that is over gets an
`auto` command (back to the lamps' own schedule). The command ids are kept on the window, so a
restart neither dims twice nor forgets to restore. The shed is measured at read time from the
stored readings (`db.peak_windows.measured_shed`).
"""

from __future__ import annotations

import asyncio
import logging

import psycopg

from maillage.db import commands as db_commands
from maillage.db import groups
from maillage.db import peak_windows as db
from maillage.processors.tasks import every

log = logging.getLogger(__name__)


def _issue(conn: psycopg.Connection, window: dict[str, object], cmd: str,
           level: float | None) -> int | None:
    name = window["name"]
    group = groups.area_group(str(window["area"]), None if name is None else str(name))
    devices = groups.members_sync(conn=conn, tenant=str(window["tenant_id"]), group_id=group)
    if not devices:
        return None
    return db_commands.create_command_sync(
        conn=conn, tenant=str(window["tenant_id"]), target=group, cmd=cmd, level=level,
        params={}, devices=devices, issued_by=f"peak_window:{window['id']}")


def tick(conn: psycopg.Connection) -> int:
    """Dim the windows that began, restore those that ended; how many commands were issued."""
    n = 0
    with conn.transaction():
        for w in db.take_due_starts(conn=conn):
            cid = _issue(conn, w, "dim", float(w["level"]))
            if cid is None:
                log.warning("peak window %s: no streetlight in its area", w["id"])
                continue
            db.set_command(conn=conn, window_id=int(w["id"]), which="dim", command_id=cid)
            log.info("peak window %s: dimmed to %s %% (command %d)", w["id"], w["level"], cid)
            n += 1
        for w in db.take_due_ends(conn=conn):
            cid = _issue(conn, w, "auto", None)
            if cid is None:
                continue
            db.set_command(conn=conn, window_id=int(w["id"]), which="restore", command_id=cid)
            log.info("peak window %s: restored (command %d)", w["id"], cid)
            n += 1
    return n


async def run(database_url: str, stop: asyncio.Event, *, tick_s: float = 0.5) -> None:
    """`tick` every `tick_s` until stopped."""
    await every(database_url, tick, stop, tick_s=tick_s)
