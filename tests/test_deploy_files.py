"""docker-compose and its config files are valid and consistent with the embedded stack."""

from __future__ import annotations

from pathlib import Path

import yaml

from maillage.stack.mosquitto import render_config

ROOT = Path(__file__).resolve().parents[1]


def test_compose_declares_every_part() -> None:
    """Real Kafka, TimescaleDB, Mosquitto, Grafana and maillage's own processes are all there."""
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = doc["services"]
    assert {"timescaledb", "kafka", "mosquitto", "grafana", "migrate", "gateway", "storage", "api"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka")
    assert services["timescaledb"]["image"].startswith("timescale/timescaledb")
    assert services["gateway"]["command"] == ["gateway"]
    assert services["maintenance"]["command"] == ["processor", "maintenance"]


def test_compose_sets_up_the_broker_before_the_gateway() -> None:
    """The dynsec file exists before Mosquitto starts; the gateway account before the gateway."""
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert services["mqtt-init"]["command"][:2] == ["broker", "init"]
    conf = (ROOT / "deploy/mosquitto/mosquitto.conf").read_text()
    assert f"plugin_opt_config_file {services['mqtt-init']['command'][2]}" in conf
    assert services["mosquitto"]["depends_on"]["mqtt-init"]["condition"] == "service_completed_successfully"
    assert services["broker-accounts"]["command"][:2] == ["broker", "accounts"]
    for name in ("gateway", "storage", "maintenance", "api"):
        deps = services[name]["depends_on"]
        assert deps["broker-accounts"]["condition"] == "service_completed_successfully"
        assert deps["migrate"]["condition"] == "service_completed_successfully"
    assert "migrate" not in services["migrate"]["depends_on"]


def test_compose_mosquitto_never_drops_queued_messages() -> None:
    """The compose broker has the same queue policy as the embedded one."""
    conf = (ROOT / "deploy/mosquitto/mosquitto.conf").read_text()
    embedded = render_config(directory=Path("/tmp/x"), port=1883)
    for line in ("max_queued_messages 0", "max_queued_bytes 0", "allow_anonymous false", "persistence true",
                 "max_inflight_messages 10000"):
        assert line in conf
        assert line in embedded
