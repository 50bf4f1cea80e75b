"""A data directory that looks like a running `maillage up`, backed by the session's services."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from maillage.stack.state import StackState


@pytest.fixture
def stack_dir(tmp_path: Path, services, db_url: str) -> Path:  # type: ignore[no-untyped-def]
    """`state.json` and broker credentials pointing at the test broker and database."""
    StackState(mqtt_host="127.0.0.1", mqtt_port=services.mqtt_port, database_url=db_url,
               kafka_bootstrap=services.kafka_bootstrap, up_pid=os.getpid()).write(tmp_path)
    (tmp_path / "mosquitto").mkdir()
    (tmp_path / "mosquitto" / "credentials.json").write_text(json.dumps({
        "admin_password": services.mqtt_creds.admin_password,
        "gateway_password": services.mqtt_creds.gateway_password}))
    return tmp_path


@pytest.fixture
def tenant_id() -> str:
    """A fresh tenant name for one test."""
    return f"sim-{uuid.uuid4().hex[:10]}"
