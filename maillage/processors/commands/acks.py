"""Device acks (`kind="ack"` envelopes on `maillage.events`) close their command targets."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from aiokafka.structs import ConsumerRecord

from maillage import topics
from maillage.db import commands as db
from maillage.processors.commands.metrics import DONE, FAILED
from maillage.processors.poison import Skipper
from maillage.processors.tasks import LazyConnection

log = logging.getLogger(__name__)

GROUP = "maillage-commands-acks"
TOPICS = [topics.EVENTS]
_ACK = b'"kind":"ack"'


class AckSink(LazyConnection):
    """Collects acks; `flush` closes their targets and the commands' states in one transaction."""

    def __init__(self, database_url: str) -> None:
        self.url = database_url
        self._acks: list[tuple[str, str, int, str, dict[str, Any]]] = []
        self._conn: psycopg.Connection | None = None
        self.skipper = Skipper(GROUP)

    def add(self, record: ConsumerRecord[bytes, bytes]) -> None:
        value = record.value or b""
        if _ACK not in value:  # events that are not acks: skipped without decoding
            return
        env = self.skipper.envelope(record)
        if env is None or env.kind != "ack" or env.event not in ("done", "failed"):
            return
        command_id = str(env.attrs.get("command_id", ""))
        if not command_id.isdigit():  # not one of ours (a device's own id scheme)
            log.info("ack from %s/%s for unknown command %r", env.tenant, env.device_id, command_id)
            return
        fields = {k: v for k, v in env.attrs.items() if k != "command_id"}
        fields["ts"] = env.ts.isoformat()
        self._acks.append((env.tenant, env.device_id, int(command_id), env.event, fields))

    def full(self) -> bool:
        return len(self._acks) >= 5000

    def flush(self) -> None:
        acks, self._acks = self._acks, []
        if not acks:
            return
        conn = self._connection()
        with conn.transaction():
            touched = db.close_acked(conn=conn, acks=acks)
            db.refresh(conn=conn, command_ids=touched)
        done = sum(1 for a in acks if a[3] == "done")
        DONE.inc(done)
        FAILED.labels("device").inc(len(acks) - done)
