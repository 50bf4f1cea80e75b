"""Apache Kafka in KRaft mode: one node for the embedded stack, or a small cluster for tests.

The broker's jars come from Maven Central (`kafka-broker.pom.xml` beside this module, copied into
a cache folder by `scripts/bootstrap.sh` or `install()`). Each node runs combined (broker and
controller) in its own folder under the data directory, with durable logs, its own log4j 2
configuration and a heap sized for the 2-core, 24 GiB machines maillage targets.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from maillage.errors import StackError
from maillage.stack.process import ManagedProcess, free_port, wait_for_port

log = logging.getLogger(__name__)

VERSION = "4.1.1"
POM = "kafka-broker.pom.xml"
MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"
HEAP_MB = 1024
"""Heap of the embedded node: Kafka keeps data in the page cache, not on the heap."""
START_TIMEOUT_S = 90.0

_LOG4J2 = """\
Configuration:
  status: warn
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Logger:
      - name: kafka
        level: WARN
      - name: org.apache.kafka
        level: WARN
      - name: kafka.server.KafkaServer
        level: INFO
      - name: kafka.server.BrokerServer
        level: INFO
    Root:
      level: WARN
      AppenderRef:
        - ref: STDOUT
"""


def home() -> Path:
    """Where the broker's jars are kept: `$MAILLAGE_KAFKA_HOME`, else a per-user cache folder."""
    given = os.environ.get("MAILLAGE_KAFKA_HOME")
    if given:
        return Path(given)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "maillage" / f"kafka-{VERSION}"


def installed() -> bool:
    """True when the jars are in place (the install finished)."""
    return (home() / ".installed").exists()


def install() -> Path:
    """Fetch the broker and its dependencies from Maven Central with Maven (once)."""
    dest = home()
    if installed():
        return dest
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError("Apache Kafka is not installed and Maven is missing: run "
                         "scripts/bootstrap.sh (it installs a JRE and Maven with apt)")
    dest.mkdir(parents=True, exist_ok=True)
    pom = dest / "pom.xml"
    pom.write_bytes(resources.files("maillage.stack").joinpath(POM).read_bytes())
    libs = dest / "libs"
    shutil.rmtree(libs, ignore_errors=True)
    proc = subprocess.run([mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
                           f"-DoutputDirectory={libs}", "-DincludeScope=runtime"],
                          capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise StackError(f"Maven could not fetch Apache Kafka {VERSION}: {proc.stdout[-2000:]}")
    (dest / ".installed").write_text(VERSION + "\n")
    return dest


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise StackError("no Java runtime (Apache Kafka needs Java 17): run scripts/bootstrap.sh")
    return java


def _classpath() -> str:
    if not installed():
        install()
    return str(home() / "libs" / "*")


@dataclass(frozen=True, slots=True)
class Node:
    """One KRaft node (broker and controller in one process)."""

    node_id: int
    port: int
    controller_port: int
    directory: Path

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"


def config(node: Node, voters: Sequence[Node], *, partitions: int = 2) -> str:
    """`server.properties` of a node in a cluster of `voters` (itself included)."""
    n = len(voters)
    quorum = ",".join(f"{v.node_id}@127.0.0.1:{v.controller_port}" for v in voters)
    internal_rf = min(3, n)
    lines = {
        "process.roles": "broker,controller",
        "node.id": node.node_id,
        "controller.quorum.voters": quorum,
        "listeners": f"PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{node.port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(node.directory / "data"),
        "num.partitions": partitions,
        "default.replication.factor": internal_rf,
        "min.insync.replicas": 2 if n >= 3 else 1,
        "offsets.topic.replication.factor": internal_rf,
        "offsets.topic.num.partitions": 8,  # 50 by default: slow to create on a small machine
        "transaction.state.log.replication.factor": internal_rf,
        "transaction.state.log.min.isr": 2 if n >= 3 else 1,
        "transaction.state.log.num.partitions": 4,
        "share.coordinator.state.topic.replication.factor": internal_rf,
        "share.coordinator.state.topic.min.isr": 2 if n >= 3 else 1,
        "group.initial.rebalance.delay.ms": 0,
        "unclean.leader.election.enable": "false",
        "num.network.threads": 2,
        "num.io.threads": 4,
        "log.retention.hours": 168,
        "log.segment.bytes": 256 * 1024 * 1024,
        "auto.create.topics.enable": "true",
    }
    return "".join(f"{k}={v}\n" for k, v in lines.items())


def _format(node: Node, cluster_id: str) -> None:
    """Format the node's log folder once (KRaft needs it before the first start)."""
    if (node.directory / "data" / "meta.properties").exists():
        return
    proc = subprocess.run([_java(), "-cp", _classpath(), STORAGE_TOOL, "format",
                           f"--cluster-id={cluster_id}",
                           "-c", str(node.directory / "server.properties"), "--ignore-formatted"],
                          capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise StackError(f"formatting Kafka node {node.node_id} failed: {proc.stdout}{proc.stderr}")


def new_cluster_id(draw: Callable[[], uuid.UUID] = uuid.uuid4) -> str:
    """A fresh KRaft cluster id: 22 base64url characters, never starting with '-'.

    Like Kafka's own `Uuid.randomUuid`, an id that begins with '-' is drawn again: the storage
    tool would read it as an option (one id in 64 did, and failed a CI run).
    """
    while True:
        cid = base64.urlsafe_b64encode(draw().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def _cluster_id(directory: Path) -> str:
    """The cluster id kept beside the nodes (KRaft wants 22 base64url characters)."""
    path = directory / "cluster.id"
    if path.exists():
        kept = path.read_text().strip()
        if not kept.startswith("-"):
            return kept
    cid = new_cluster_id()
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(cid + "\n")
    return cid


def node_process(node: Node, *, heap_mb: int = HEAP_MB) -> ManagedProcess:
    """The (not yet started) process of a configured, formatted node."""
    argv = [_java(), f"-Xms{min(256, heap_mb)}m", f"-Xmx{heap_mb}m", "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20", "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={node.directory / 'log4j2.yaml'}",
            "-cp", _classpath(), MAIN_CLASS, str(node.directory / "server.properties")]
    return ManagedProcess(name=f"kafka-{node.node_id}", argv=argv,
                          log_path=node.directory / "kafka.log")


def prepare(directory: Path, ports: Sequence[tuple[int, int]], *, partitions: int = 2) -> list[Node]:
    """Configure and format the nodes of a cluster under `directory` (one folder per node)."""
    nodes = [Node(i + 1, port, cport, directory / f"node-{i + 1}")
             for i, (port, cport) in enumerate(ports)]
    cid = _cluster_id(directory)
    for node in nodes:
        node.directory.mkdir(parents=True, exist_ok=True)
        (node.directory / "server.properties").write_text(config(node, nodes, partitions=partitions))
        (node.directory / "log4j2.yaml").write_text(_LOG4J2)
        _format(node, cid)
    return nodes


def start(directory: Path, port: int, *, controller_port: int | None = None,
          partitions: int = 2, heap_mb: int = HEAP_MB) -> ManagedProcess:
    """Start a single durable node on 127.0.0.1:port (the embedded stack's broker)."""
    cport = controller_port or free_port()
    (node,) = prepare(directory / "kafka", [(port, cport)], partitions=partitions)
    proc = node_process(node, heap_mb=heap_mb)
    proc.name = "kafka"
    proc.start()
    wait_ready([node.bootstrap], [proc], brokers=1)
    return proc


@dataclass
class Cluster:
    """A KRaft cluster on loopback: its nodes and their processes (for fault tests)."""

    nodes: list[Node]
    procs: list[ManagedProcess]
    heap_mb: int

    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes)

    def start_node(self, i: int) -> None:
        """(Re)start node `i` (0-based) after it was stopped or killed."""
        self.procs[i] = node_process(self.nodes[i], heap_mb=self.heap_mb).start()
        wait_for_port("127.0.0.1", self.nodes[i].port, START_TIMEOUT_S, self.procs[i])

    def stop(self) -> None:
        """Stop every node at once (one by one, the last waits for a quorum that is gone)."""
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(len(self.procs)) as pool:
            list(pool.map(lambda p: p.stop(timeout_s=10), self.procs))


def start_cluster(directory: Path, size: int, *, partitions: int = 2,
                  heap_mb: int = 512) -> Cluster:
    """Start `size` KRaft nodes on free loopback ports and wait until every broker is in."""
    nodes = prepare(directory, [(free_port(), free_port()) for _ in range(size)],
                    partitions=partitions)
    procs = [node_process(n, heap_mb=heap_mb).start() for n in nodes]
    cluster = Cluster(nodes, procs, heap_mb)
    try:
        wait_ready([n.bootstrap for n in nodes], procs, brokers=size)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def wait_ready(bootstraps: Sequence[str], procs: Sequence[ManagedProcess], *, brokers: int,
               timeout_s: float = START_TIMEOUT_S) -> None:
    """Wait until the cluster answers metadata requests with `brokers` brokers registered."""
    deadline = time.monotonic() + timeout_s
    for bootstrap, proc in zip(bootstraps, procs, strict=True):
        host, _, port = bootstrap.rpartition(":")
        wait_for_port(host, int(port), timeout_s, proc)
    quiet = logging.getLogger("aiokafka")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # refused connections are expected while nodes start
    last: Exception | None = None
    try:
        while time.monotonic() < deadline:
            for proc in procs:
                if not proc.alive():
                    raise StackError(f"{proc.name} exited ({proc.returncode()}): see {proc.log_path}")
            try:
                if asyncio.run(_brokers(bootstraps)) >= brokers:
                    return
            except Exception as exc:  # noqa: BLE001 - not up yet
                last = exc
            time.sleep(0.3)
    finally:
        quiet.setLevel(level)
    raise StackError(f"Apache Kafka did not come up in {timeout_s:.0f} s ({last})")


async def _brokers(bootstraps: Sequence[str]) -> int:
    """How many brokers the cluster's metadata lists."""
    admin = AIOKafkaAdminClient(bootstrap_servers=list(bootstraps), request_timeout_ms=5000)
    await admin.start()
    try:
        meta = await admin.describe_cluster()
        return len(meta.get("brokers", []))
    finally:
        await admin.close()
