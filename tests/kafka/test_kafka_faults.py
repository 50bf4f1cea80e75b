"""Apache Kafka under faults, during a steady QoS 1 stream: nothing acknowledged is lost or doubled.

Each test runs a real `maillage up` (embedded PostgreSQL and Mosquitto, real gateway and storage
processes) on Apache Kafka: its own embedded node, or a three-node KRaft cluster on loopback.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

from maillage.processors.storage import GROUP
from maillage.stack import apache_kafka
from tests.e2e.conftest import Stack, running_stack, wait_until
from tests.kafka.stream import Stream, assert_exactly_once

# Each test starts a stack and runs its faults during a stream; a loaded machine needs the room.
pytestmark = pytest.mark.timeout(900)
INGEST_ONLY = {"MAILLAGE_PROCESSORS": "storage"}
"""What these tests judge is ingest -> Kafka -> storage: the other processors stay off."""


def _pids(stack: Stack) -> dict[str, int]:
    return dict(json.loads((stack.data_dir / "state.json").read_text())["pids"])


def _kill(pid: int, sig: signal.Signals = signal.SIGKILL) -> None:
    os.kill(pid, sig)


def _stream(stack: Stack, devices: int = 10, rate: float = 200.0) -> tuple[str, Stream]:
    tenant = stack.tenant()
    devs = [stack.device(tenant) for _ in range(devices)]
    return tenant, Stream(stack, devs, rate_per_s=rate).start()


@pytest.fixture
def cluster() -> Iterator[apache_kafka.Cluster]:
    root = Path(tempfile.mkdtemp(prefix="maillage-kraft3-", dir="/tmp"))
    c = apache_kafka.start_cluster(root, 3, partitions=4)
    try:
        yield c
    finally:
        c.stop()


def test_three_brokers_lose_one_and_freeze_another_without_losing_a_reading(
        cluster: apache_kafka.Cluster) -> None:
    """RF 3, min ISR 2: one broker SIGKILLed (then back), another SIGSTOPped 30 s: 0 lost, 0 doubled."""
    env = {"MAILLAGE_KAFKA_BOOTSTRAP": cluster.bootstrap, "MAILLAGE_KAFKA_PARTITIONS": "4",
           **INGEST_ONLY}
    with running_stack("maillage-kraft3-up-", env_extra=env) as (data_dir, status):
        stack = Stack(data_dir, status)
        tenant, stream = _stream(stack)
        try:
            time.sleep(5)
            cluster.procs[0].popen.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
            time.sleep(8)
            cluster.start_node(0)
            time.sleep(10)  # back in the in-sync replicas
            frozen = cluster.procs[1].popen
            assert frozen is not None
            frozen.send_signal(signal.SIGSTOP)
            try:
                time.sleep(30)
            finally:
                frozen.send_signal(signal.SIGCONT)
            time.sleep(5)
        finally:
            stream.stop()
        assert stream.refused == 0
        assert_exactly_once(stack, tenant, stream)


def test_the_embedded_broker_killed_and_restarted_loses_nothing_acknowledged() -> None:
    """SIGKILL of the embedded Apache Kafka mid-stream; the supervisor starts it again: 0 lost."""
    with running_stack("maillage-kafka-restart-", "--kafka", "apache",
                       env_extra=INGEST_ONLY) as (data_dir, status):
        stack = Stack(data_dir, status)
        assert not {"detection", "alerting", "control"} & set(_pids(stack))  # MAILLAGE_PROCESSORS
        assert stack.cli("status", "--json").stdout and json.loads(
            stack.cli("status", "--json").stdout)["kafka_kind"] == "apache"
        tenant, stream = _stream(stack)
        try:
            time.sleep(5)
            old = _pids(stack)["kafka"]
            _kill(old)
            assert wait_until(lambda: _pids(stack)["kafka"] != old, timeout=60)
            time.sleep(10)
        finally:
            stream.stop()
        assert_exactly_once(stack, tenant, stream)


async def _assignment(bootstrap: str) -> dict[str, list[int]]:
    """Member id -> its partitions of maillage.readings, for the storage consumer group."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (resp,) = await admin.describe_consumer_groups([GROUP])
    finally:
        await admin.close()
    (group,) = resp.to_object()["groups"]
    out: dict[str, list[int]] = {}
    for member in group["members"]:
        raw = member["member_assignment"]
        assignment = ConsumerProtocolMemberAssignment.decode(raw) if raw else None
        out[member["member_id"]] = sorted(
            p for t, parts in (assignment.assignment if assignment else []) for p in parts
            if t == "maillage.readings")
    return out


def _storage_process(stack: Stack, name: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, MAILLAGE_DATA_DIR=str(stack.data_dir))
    env.pop("MAILLAGE_DATABASE_URL", None)
    log = open(stack.data_dir / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - child keeps it
    return subprocess.Popen([sys.executable, "-m", "maillage", "processor", "storage"], env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _members(stack: Stack) -> int:
    return len(asyncio.run(_assignment(stack.status["kafka_bootstrap"])))


def test_storage_processors_joining_and_one_killed_rebalance_without_loss() -> None:
    """1 -> 3 storage processors mid-stream, then one SIGKILLed: 0 lost, 0 doubled."""
    env = {"MAILLAGE_KAFKA_PARTITIONS": "6", **INGEST_ONLY}
    with running_stack("maillage-rebalance-", "--kafka", "apache", env_extra=env) as (data_dir, status):
        stack = Stack(data_dir, status)
        tenant, stream = _stream(stack)
        extra: list[subprocess.Popen[bytes]] = []
        try:
            time.sleep(4)
            extra = [_storage_process(stack, f"storage-extra-{i}") for i in range(2)]
            assert wait_until(lambda: _members(stack) == 3, timeout=90), "the group never had 3 members"
            time.sleep(6)
            os.killpg(extra[0].pid, signal.SIGKILL)
            extra[0].wait(10)
            assert wait_until(lambda: _members(stack) == 2, timeout=90), "the killed member stayed"
            time.sleep(6)
        finally:
            stream.stop()
        try:
            assert_exactly_once(stack, tenant, stream)
            spread = asyncio.run(_assignment(stack.status["kafka_bootstrap"]))
            assert len(spread) == 2
            assigned = sorted(p for parts in spread.values() for p in parts)
            assert assigned == list(range(6)), spread  # every partition, each to one member
            assert all(parts for parts in spread.values()), spread  # both members work
        finally:
            for proc in extra:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(30)


def test_two_gateways_on_the_shared_subscription_one_killed_lose_nothing() -> None:
    """Two gateways with distinct client ids; one SIGKILLed mid-stream: 0 lost, 0 doubled."""
    env = {"MAILLAGE_GATEWAY_PROCESSES": "2", **INGEST_ONLY}
    with running_stack("maillage-gateways-", "--kafka", "apache", env_extra=env) as (data_dir, status):
        stack = Stack(data_dir, status)
        tenant, stream = _stream(stack)
        try:
            time.sleep(5)
            _kill(_pids(stack)["gateway-0"])
            time.sleep(10)
        finally:
            stream.stop()
        assert_exactly_once(stack, tenant, stream)
