"""Fixtures shared by the registry tests."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from maillage.registry.tenants import add_tenant


@pytest.fixture
def tenant(db_url: str) -> str:
    """A fresh tenant in the session's database."""
    name = f"t{uuid.uuid4().hex[:10]}"
    with psycopg.connect(db_url, autocommit=True) as conn:
        add_tenant(conn, tenant_id=name)
    return name
