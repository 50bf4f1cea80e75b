"""Helpers of the ingest end-to-end tests: bulk registration, stored rows, a Kafka tap.

Devices are registered in bulk through the registry and the broker's dynamic security (as
`maillage devices import` does), not one CLI call each, so that the tests stay fast.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psutil
import psycopg
from aiokafka import AIOKafkaConsumer

from maillage import topics
from maillage.registry.devices import register
from maillage.registry.dynsec import DynsecClient
from maillage.registry.models import DeviceSpec
from maillage.registry.tenants import add_tenant
from maillage.registry.tokens import create_token
from maillage.stack.mosquitto import ADMIN_USER
from tests.e2e.conftest import Device, Publisher, Stack, wait_until

__all__ = ["Device", "IngestStack", "KafkaTap", "Publisher", "dlq_counts", "messages_handled", "utc",
           "wait_until"]


class IngestStack(Stack):
    """The stack, plus bulk registration and queries of what was stored or rejected."""

    def new_tenant(self) -> str:
        name = f"t{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.db(), autocommit=True) as conn:
            add_tenant(conn, tenant_id=name)
        return name

    def new_token(self, tenant: str, role: str = "admin") -> str:
        with psycopg.connect(self.db(), autocommit=True) as conn:
            return create_token(conn, tenant=tenant, role=role)

    def dynsec(self) -> DynsecClient:
        creds = json.loads((self.data_dir / "mosquitto" / "credentials.json").read_text())
        return DynsecClient(self.status["mqtt_host"], self.status["mqtt_port"], ADMIN_USER,
                            creds["admin_password"])

    def register(self, tenant: str, specs: Sequence[DeviceSpec | tuple[str, str]]) -> list[Device]:
        """Register devices (specs, or (device_id, type) pairs) with their MQTT credentials."""
        items = [(tenant, s if isinstance(s, DeviceSpec) else DeviceSpec(device_id=s[0], type=s[1]))
                 for s in specs]
        with psycopg.connect(self.db()) as conn, self.dynsec() as dyn:
            creds = register(conn, items, dynsec=dyn)
        return [Device(c.tenant, c.device_id, c.mqtt_username, c.mqtt_password, c.topic_prefix)
                for c in creds]

    def readings(self, tenant: str, device_id: str) -> list[tuple[str, datetime, float, datetime]]:
        """(metric, ts, value, received_at) of a device, by time then metric."""
        with psycopg.connect(self.db()) as conn:
            return conn.execute(
                "SELECT m.name, r.ts, r.value, r.received_at FROM readings r "
                "JOIN metrics m ON m.id = r.metric_id JOIN devices d ON d.pk = r.device_pk "
                "WHERE d.tenant_id = %s AND d.device_id = %s ORDER BY r.ts, m.name",
                (tenant, device_id)).fetchall()

    def events(self, tenant: str, device_id: str) -> list[tuple[datetime, str, dict[str, Any]]]:
        """(ts, event, attrs) of a device, by time."""
        with psycopg.connect(self.db()) as conn:
            return conn.execute(
                "SELECT e.ts, e.event, e.attrs FROM events e JOIN devices d ON d.pk = e.device_pk "
                "WHERE d.tenant_id = %s AND d.device_id = %s ORDER BY e.ts, e.event",
                (tenant, device_id)).fetchall()

    def rejected(self, tenant: str, device_id: str | None = None) -> list[tuple[str, str, str, bytes]]:
        """(device_id, reason, detail, payload) of a tenant's (or a device's) rejections, in order."""
        with psycopg.connect(self.db()) as conn:
            rows = conn.execute(
                "SELECT device_id, reason, detail, payload FROM rejected WHERE tenant_id = %s "
                "AND (%s::text IS NULL OR device_id = %s) ORDER BY id",
                (tenant, device_id, device_id)).fetchall()
        return [(d, r, detail, bytes(p)) for d, r, detail, p in rows]

    def pids(self) -> dict[str, int]:
        """PIDs of the stack's parts, from its state file."""
        return dict(json.loads((self.data_dir / "state.json").read_text())["pids"])

    def gateways_alive(self, *, ask_cli: bool = True) -> bool:
        """Both gateway processes still run (and `maillage status --json` says so)."""
        pids = {k: v for k, v in self.pids().items() if k.startswith("gateway-")}
        alive = len(pids) == 2 and all(
            psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
            for p in pids.values())
        if not (alive and ask_cli):
            return alive
        doc = json.loads(self.cli("status", "--json").stdout)
        return all(doc["parts"][name] for name in pids)


class KafkaTap:
    """Records produced from now on to the gateway's output topics, grouped by key, in a thread."""

    TOPICS = (topics.READINGS, topics.EVENTS, topics.STATUS, topics.DLQ)

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.records: dict[str, list[tuple[str, bytes]]] = defaultdict(list)
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._sync_request = threading.Event()
        self._synced = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> KafkaTap:
        self._thread.start()
        assert self._ready.wait(30), f"Kafka tap did not start: {self._error}"
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    async def _run(self) -> None:
        consumer = AIOKafkaConsumer(*self.TOPICS, bootstrap_servers=self.bootstrap,
                                    enable_auto_commit=False, auto_offset_reset="latest")
        try:
            await consumer.start()
            await consumer.seek_to_end()
            for tp in consumer.assignment():
                await consumer.position(tp)  # resolve "latest" now, before anything is published
            self._ready.set()
            targets: dict[Any, int] | None = None
            while not self._stop.is_set():
                got = await consumer.getmany(timeout_ms=100)
                with self._lock:
                    for recs in got.values():
                        for r in recs:
                            self.records[(r.key or b"").decode()].append((r.topic, r.value or b""))
                if self._sync_request.is_set():
                    self._sync_request.clear()
                    targets = await consumer.end_offsets(list(consumer.assignment()))
                if targets is not None:
                    positions = {tp: await consumer.position(tp) for tp in targets}
                    if all(positions[tp] >= end for tp, end in targets.items()):
                        targets = None
                        self._synced.set()
        except BaseException as exc:  # noqa: BLE001 - reported by __enter__
            self._error = exc
            self._ready.set()
        finally:
            await consumer.stop()

    def catch_up(self, timeout: float = 30) -> bool:
        """Wait until everything in the topics right now has been read."""
        self._synced.clear()
        self._sync_request.set()
        return self._synced.wait(timeout)

    def of(self, tenant: str, device_id: str) -> list[tuple[str, bytes]]:
        with self._lock:
            return list(self.records.get(f"{tenant}/{device_id}", []))


def utc(*args: int) -> datetime:
    """A UTC datetime."""
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def messages_handled(stack: Stack, pid: int) -> float:
    """MQTT messages one gateway process handled (accepted or rejected), from its Prometheus file."""
    from prometheus_client.mmap_dict import MmapedDict

    path = stack.data_dir / "prometheus" / f"counter_{pid}.db"
    if not path.exists():
        return 0.0
    total = 0.0
    for key, value, *_ in MmapedDict.read_all_values_from_file(str(path)):
        if json.loads(key)[1] == "maillage_ingest_messages_total":
            total += value
    return total


def dlq_counts(stack: Stack) -> dict[str, float]:
    """`maillage_dlq_records_total` per reason, summed over every process, from the API's /metrics."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(stack.api + "/metrics", timeout=10).text
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "maillage_dlq_records_total":
                reason = sample.labels["reason"]
                counts[reason] = counts.get(reason, 0.0) + sample.value
    return counts
