"""Replaying rejected messages once the cause is fixed (`maillage dlq replay`).

A device registered late, an installation date corrected, a parser fixed: the messages the DLQ
kept can then be accepted. Each selected row of `rejected` goes again through the gateway's own
decisions (`Ingest.convert`) with its original topic, bytes and **receive time**, against the
current registry and parsers:

- accepted: its envelopes are produced to Kafka exactly as the gateway would have (the storage
  processor stores them, idempotently: replaying twice stores nothing twice); once Kafka
  acknowledged them the row gets `replayed_at`;
- still bad: the row is left as it was (never deleted, `replayed_at` stays empty) and reported
  with the reason it fails for now.

Why not re-publish to MQTT: the receive time would become the replay time, which moves every
time that depends on it (TIC historique frames, relative SenML times, events without `ts`), and
the gateway's broker account may only publish commands, not device data.
Rows are locked while being replayed (`FOR UPDATE SKIP LOCKED`), so two replays never overlap.
"""

from __future__ import annotations

import base64
import collections
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg
from aiokafka import AIOKafkaProducer

from maillage.db.rejected import claim_for_replay, mark_replayed
from maillage.ingest.registry_cache import RegistryCache
from maillage.ingest.validate import Ingest
from maillage.topics import KIND_TOPIC

log = logging.getLogger(__name__)

BATCH = 500


@dataclass(frozen=True)
class ReplayFilter:
    """Which rejected messages to replay (all filters combine)."""

    tenant: str | None = None
    device_id: str | None = None
    reason: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    again: bool = False
    """Also rows already replayed (they are stored once anyway)."""
    limit: int | None = None


@dataclass
class ReplayReport:
    """What a replay did."""

    selected: int = 0
    replayed: int = 0
    records: int = 0
    still_rejected: list[dict[str, Any]] = field(default_factory=list)
    """`{"id", "device_id", "reason", "detail", "was"}` of each message that is still bad."""

    def to_dict(self) -> dict[str, Any]:
        reasons = collections.Counter(str(r["reason"]) for r in self.still_rejected)
        return {"selected": self.selected, "replayed": self.replayed, "records": self.records,
                "still_rejected": len(self.still_rejected),
                "still_rejected_by_reason": dict(reasons),
                "still_rejected_items": self.still_rejected[:100]}


def payload_view(payload: bytes) -> tuple[str, str]:
    """(text, encoding): a stored payload as UTF-8 text when it is, else base64."""
    try:
        return payload.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(payload).decode(), "base64"


async def replay(*, database_url: str, kafka_bootstrap: str, selection: ReplayFilter,
                 max_future: timedelta) -> ReplayReport:
    """Replay the selected rows of `rejected`, batch by batch (see the module docstring)."""
    report = ReplayReport()
    registry = RegistryCache(database_url, listen=False)
    registry.load()
    ingest = Ingest(registry, max_future=max_future)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", linger_ms=5)
    await producer.start()
    last_id = 0
    try:
        with psycopg.connect(database_url) as conn:
            while selection.limit is None or report.selected < selection.limit:
                size = BATCH if selection.limit is None else min(BATCH, selection.limit - report.selected)
                with conn.transaction():
                    rows = claim_for_replay(
                        conn=conn, tenant=selection.tenant, device_id=selection.device_id,
                        reason=selection.reason, since=selection.since, until=selection.until,
                        include_replayed=selection.again, after_id=last_id, limit=size)
                    if not rows:
                        break
                    last_id = rows[-1][0]
                    report.selected += len(rows)
                    done: list[int] = []
                    futures = []
                    for rid, topic, payload, received_at, device_id, was in rows:
                        outcome = ingest.convert(topic, bytes(payload), received_at)
                        if outcome.rejection is not None:
                            report.still_rejected.append({
                                "id": rid, "device_id": device_id, "reason": str(outcome.rejection.reason),
                                "detail": outcome.rejection.detail, "was": was})
                            continue
                        for env in outcome.envelopes:
                            futures.append(await producer.send(KIND_TOPIC[env.kind],
                                                               value=env.to_kafka(), key=env.key))
                        done.append(rid)
                    for fut in futures:
                        await fut  # raises on a Kafka failure: the transaction rolls back
                    report.records += len(futures)
                    if done:
                        mark_replayed(conn=conn, ids=done)
                    report.replayed += len(done)
    finally:
        await producer.stop()
        registry.close()
    log.info("replayed %d of %d rejected messages (%d still rejected)", report.replayed,
             report.selected, len(report.still_rejected))
    return report

