"""What docker-compose relies on, tested with the settings and commands its services use."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest
import yaml

from maillage.db.migrate import GRAFANA_ROLE, migrate
from maillage.stack import state
from maillage.stack.process import free_port
from tests.conftest import Services

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"


def _services() -> dict[str, dict[str, object]]:
    return dict(yaml.safe_load(COMPOSE.read_text())["services"])


def test_compose_config_is_valid() -> None:
    """`docker compose config` accepts the file (the client needs no engine for that)."""
    docker = shutil.which("docker")
    assert docker is not None, "scripts/bootstrap.sh installs the Docker client with compose"
    env = dict(os.environ, POSTGRES_PASSWORD="p", MQTT_ADMIN_PASSWORD="a", MQTT_GATEWAY_PASSWORD="g",
               GRAFANA_ADMIN_PASSWORD="ga", GRAFANA_DB_PASSWORD="gd")
    proc = subprocess.run([docker, "compose", "-f", str(COMPOSE), "config", "--quiet"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_gateway_replicas_get_distinct_mqtt_client_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    """Compose runs `gateway` without --instance: each replica's id comes from its host name."""
    gateway = _services()["gateway"]
    assert "--instance" not in gateway["command"]  # type: ignore[operator]
    assert gateway["deploy"]["replicas"] >= 2  # type: ignore[index]
    ids = set()
    for host in ("3f2a9c1b7d10", "8e41d0aa52c3"):  # two containers' host names
        monkeypatch.setattr(state.socket, "gethostname", lambda h=host: h)
        ids.add(state.gateway_client_id(None))
        assert state.gateway_client_id(None) == state.gateway_client_id(None)  # stable: its session resumes
    assert len(ids) == 2
    assert state.gateway_client_id(0) != state.gateway_client_id(1)  # `maillage up` numbers them


def test_every_maillage_process_serves_its_metrics() -> None:
    """Gateways and processors have a metrics port in compose (the API serves /metrics itself)."""
    services = _services()
    env = yaml.safe_load(COMPOSE.read_text())["x-maillage"]["environment"]
    assert int(env["MAILLAGE_METRICS_PORT"]) > 0
    for name in ("gateway", "storage", "detection", "maintenance"):
        assert services[name]["command"][0] in ("gateway", "processor")  # type: ignore[index]


def test_a_processor_serves_prometheus_metrics_on_its_port(services: Services, db_url: str) -> None:
    """`maillage processor maintenance` with MAILLAGE_METRICS_PORT answers /metrics, as in compose."""
    port = free_port()
    env = dict(os.environ, MAILLAGE_DATABASE_URL=db_url, MAILLAGE_KAFKA_BOOTSTRAP=services.kafka_bootstrap,
               MAILLAGE_METRICS_PORT=str(port), MAILLAGE_METRICS_HOST="127.0.0.1")
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.Popen([sys.executable, "-m", "maillage", "processor", "maintenance"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        body = ""
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None:
            try:
                body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
                break
            except httpx.HTTPError:
                time.sleep(0.3)
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert "python_info" in body or "process_cpu_seconds_total" in body
    finally:
        proc.terminate()
        proc.wait(30)


def test_the_grafana_role_reads_the_grafana_views_and_nothing_else(fresh_db_url: str) -> None:
    """The role named in Grafana's provisioning exists after `migrate`, logs in with the password
    compose gives it, sees no care device and cannot read the tables themselves."""
    datasources = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/maillage.yml").read_text())["datasources"]
    assert {d["user"] for d in datasources} == {GRAFANA_ROLE}
    migrate_env = _services()["migrate"]["environment"]
    assert "MAILLAGE_GRAFANA_DB_PASSWORD" in migrate_env  # type: ignore[operator]
    password = uuid.uuid4().hex
    migrate(fresh_db_url, grafana_password=password)
    tenant = f"t{uuid.uuid4().hex[:8]}"
    with psycopg.connect(fresh_db_url, autocommit=True) as conn:
        conn.execute("INSERT INTO tenants (id, name) VALUES (%s, %s)", (tenant, tenant))
        for did, dtype in (("m1", "meter"), ("c1", "care_motion")):
            conn.execute("INSERT INTO devices (tenant_id, device_id, type, mqtt_username) "
                         "VALUES (%s, %s, %s, %s)", (tenant, did, dtype, f"{tenant}/{did}"))
    base, _, dbname = fresh_db_url.rpartition("/")
    scheme, _, hostpart = base.partition("://")
    host = hostpart.rpartition("@")[2]
    reader_url = f"{scheme}://{GRAFANA_ROLE}:{password}@{host}/{dbname}"
    with psycopg.connect(reader_url, autocommit=True) as conn:
        ids = {r[0] for r in conn.execute("SELECT device_id FROM grafana.devices").fetchall()}
        assert ids == {"m1"}
        conn.execute("SELECT count(*) FROM grafana.readings").fetchone()
        conn.execute("SELECT count(*) FROM grafana.anomalies").fetchone()
        for table in ("devices", "readings", "care_access_log", "api_tokens", "anomalies"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"SELECT 1 FROM public.{table} LIMIT 1")  # noqa: S608 - fixed names
