"""Adaptive lighting: presence raises a street's (or district's) lamps, a timer lowers them.

The closed loop: a presence sensor publishes (`presence_count` > 0, or any event) -> gateway ->
Kafka -> `PresenceSink` (this module, driven by the runner) -> for each enabled rule covering the
sensor's street or district: if it was at its night level, a `dim` command to the rule's level
(one audited command per rule, `issued_by = rule:<id>`); in any case its `raised_until` is pushed
to now + hold. `lower_due` (a loop of the control process) sends the rules whose hold has passed
back to their night level. The commands go through the outbox, `maillage.commands` and MQTT like
the API's. State lives in `lighting_rules`, so a restart loses no pending lowering. Presence
older than `STALE_S` (a replay after an outage) raises nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime

import psycopg
from aiokafka.structs import ConsumerRecord

from maillage import topics
from maillage.db import commands as db_commands
from maillage.db import groups
from maillage.db import lighting_rules as db
from maillage.envelope import Envelope
from maillage.processors.poison import Skipper
from maillage.processors.tasks import LazyConnection, every

log = logging.getLogger(__name__)

GROUP = "maillage-control-adaptive"
TOPICS = [topics.READINGS, topics.EVENTS]
STALE_S = 120.0
_PRESENCE = b"presence_count"
_EVENT = b'"kind":"event"'


def is_presence(env: Envelope) -> bool:
    """A presence reading counting someone, or an event (only presence devices' count later)."""
    if env.kind == "reading":
        return bool(env.values.get("presence_count", 0.0) > 0)
    return bool(env.kind == "event")


def issue(conn: psycopg.Connection, rule: dict[str, object], level: float) -> int | None:
    """A `dim` command to a rule's lamps (None when its area has none)."""
    group = groups.area_group(str(rule["area"]), str(rule["name"]))
    devices = groups.members_sync(conn=conn, tenant=str(rule["tenant_id"]), group_id=group)
    if not devices:
        log.warning("rule %s: no streetlight in %s", rule["id"], group)
        return None
    return db_commands.create_command_sync(
        conn=conn, tenant=str(rule["tenant_id"]), target=group, cmd="dim", level=level, params={},
        devices=devices, issued_by=f"rule:{rule['id']}")


class PresenceSink(LazyConnection):
    """Collects presence from `maillage.readings` and `maillage.events`; `flush` raises rules."""

    def __init__(self, database_url: str) -> None:
        self.url = database_url
        self._seen: dict[tuple[str, str], float] = {}  # (tenant, device) -> newest presence ts
        self.skipper = Skipper(GROUP)
        self._conn: psycopg.Connection | None = None
        self.raised = 0

    def add(self, record: ConsumerRecord[bytes, bytes]) -> None:
        value = record.value or b""
        if _PRESENCE not in value and _EVENT not in value:
            return  # most readings: skipped without decoding
        env = self.skipper.envelope(record)
        if env is None or not is_presence(env):
            return
        key = (env.tenant, env.device_id)
        ts = env.ts.timestamp()
        if ts > self._seen.get(key, 0.0):
            self._seen[key] = ts

    def full(self) -> bool:
        return len(self._seen) >= 10_000

    def flush(self) -> None:
        seen, self._seen = self._seen, {}
        fresh = [k for k, ts in seen.items() if ts >= time.time() - STALE_S]
        if not fresh:
            return
        conn = self._connection()
        with conn.transaction():
            for tenant, device in fresh:
                for rule in db.rules_for_presence(conn=conn, tenant=tenant, device_id=device):
                    if db.raise_rule(conn=conn, rule_id=int(rule["id"]), hold_s=float(rule["hold_s"])):
                        if issue(conn, rule, float(rule["level"])) is not None:
                            self.raised += 1
                            log.info("rule %s raised by %s/%s", rule["id"], tenant, device)


def lower_due(conn: psycopg.Connection) -> int:
    """Send the rules whose hold has passed back to their night level; how many."""
    n = 0
    with conn.transaction():
        for rule in db.take_due_lowering(conn=conn):
            if issue(conn, rule, float(rule["night_level"])) is not None:
                n += 1
    if n:
        log.info("%d rule(s) back to night level at %s", n, datetime.now(UTC).isoformat())
    return n


async def lowering_loop(database_url: str, stop: asyncio.Event, *, tick_s: float = 0.2) -> None:
    """`lower_due` every `tick_s` until stopped."""
    await every(database_url, lower_due, stop, tick_s=tick_s)
