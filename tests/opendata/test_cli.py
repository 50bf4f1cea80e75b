"""`maillage opendata publish|unpublish` and the threshold setting."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from maillage.cli.opendata import opendata_app
from maillage.config import Settings
from maillage.registry.tenants import add_tenant


def _public(db_url: str, tenant: str) -> bool:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT opendata_public FROM tenants WHERE id = %s",
                           (tenant,)).fetchone()
    assert row is not None
    return bool(row[0])


def test_publish_and_unpublish(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tenant starts unpublished, is published, then unpublished; an unknown one is an error."""
    monkeypatch.setenv("MAILLAGE_DATABASE_URL", db_url)
    tenant = f"od-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(db_url, autocommit=True) as conn:
        add_tenant(conn, tenant_id=tenant)
    assert not _public(db_url, tenant)
    runner = CliRunner()
    r = runner.invoke(opendata_app, ["publish", "--tenant", tenant])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output) == {"tenant": tenant, "opendata_public": True}
    assert _public(db_url, tenant)
    assert runner.invoke(opendata_app, ["unpublish", "--tenant", tenant]).exit_code == 0
    assert not _public(db_url, tenant)
    r = runner.invoke(opendata_app, ["publish", "--tenant", "no-such-tenant"])
    assert r.exit_code == 1 and "not found" in r.output


def test_threshold_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """MAILLAGE_OPENDATA_MIN_HOUSEHOLDS: 10 by default; below 3 refused."""
    assert Settings().opendata_min_households == 10
    monkeypatch.setenv("MAILLAGE_OPENDATA_MIN_HOUSEHOLDS", "20")
    assert Settings().opendata_min_households == 20
    monkeypatch.setenv("MAILLAGE_OPENDATA_MIN_HOUSEHOLDS", "2")
    with pytest.raises(ValidationError):
        Settings()
