"""Tokens: expiry (default, per token, never), revocation at once, last use at most once a minute,
listing without secrets; and `maillage tokens create|list|revoke` (the CLI group on its own)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from typer.testing import CliRunner

from maillage.cli.tokens import tokens_app
from maillage.errors import RegistryError
from maillage.registry.tokens import (
    DEFAULT_TTL_DAYS,
    TokenRefused,
    authenticate,
    create_token,
    list_tokens,
    revoke_token,
)


def _auth(db_url: str, token: str) -> object:
    async def go() -> object:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            try:
                return await authenticate(conn=conn, token=token)
            except TokenRefused as exc:
                return str(exc)
    return asyncio.run(go())


def _row(db_url: str, tenant: str) -> dict[str, object]:
    with psycopg.connect(db_url) as conn:
        return list_tokens(conn, tenant=tenant)[-1]


def test_expiry_default_per_token_and_never(db_url: str, tenant: str) -> None:
    """New tokens expire after 90 days unless told; 0 days means never."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        create_token(conn, tenant=tenant, role="energy_manager")
        default = list_tokens(conn, tenant=tenant)[-1]
        create_token(conn, tenant=tenant, role="energy_manager", ttl_days=7)
        week = list_tokens(conn, tenant=tenant)[-1]
        create_token(conn, tenant=tenant, role="energy_manager", ttl_days=0)
        never = list_tokens(conn, tenant=tenant)[-1]
        with pytest.raises(RegistryError, match="ttl_days"):
            create_token(conn, tenant=tenant, role="admin", ttl_days=-1)
    assert default["expires_at"] - default["created_at"] == timedelta(days=DEFAULT_TTL_DAYS)
    assert week["expires_at"] - week["created_at"] == timedelta(days=7)
    assert never["expires_at"] is None
    assert set(default) == {"id", "tenant", "role", "label", "created_at", "expires_at",
                            "last_used_at", "revoked_at"}  # no hash, no secret


def test_expired_and_revoked_are_refused_with_the_reason(db_url: str, tenant: str) -> None:
    """An expired token and a revoked one are refused, each saying why; revocation is at once."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        token = create_token(conn, tenant=tenant, role="admin", label="ops")
        first = _auth(db_url, token)
        assert getattr(first, "role", None) == "admin" and getattr(first, "label", None) == "ops"
        token_id = _row(db_url, tenant)["id"]
        conn.execute("UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE id = %s",
                     (token_id,))
        assert f"token {token_id} expired at" in str(_auth(db_url, token))
        conn.execute("UPDATE api_tokens SET expires_at = NULL WHERE id = %s", (token_id,))
        assert not isinstance(_auth(db_url, token), str)
        revoked = revoke_token(conn, token_id=token_id)
        assert revoked["revoked_at"] is not None
        assert f"token {token_id} was revoked at" in str(_auth(db_url, token))
        assert revoke_token(conn, token_id=token_id)["revoked_at"] == revoked["revoked_at"]
        with pytest.raises(RegistryError, match="no token 0"):
            revoke_token(conn, token_id=0)
    assert _auth(db_url, "mlg_nonsense") == "invalid token"


def test_last_used_at_most_once_a_minute(db_url: str, tenant: str) -> None:
    """The first use writes last_used_at; uses within the minute do not; a later one does."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        token = create_token(conn, tenant=tenant, role="energy_manager")
        assert _row(db_url, tenant)["last_used_at"] is None
        _auth(db_url, token)
        first = _row(db_url, tenant)["last_used_at"]
        assert isinstance(first, datetime)
        _auth(db_url, token)
        assert _row(db_url, tenant)["last_used_at"] == first
        old = datetime(2026, 1, 1, tzinfo=UTC)
        conn.execute("UPDATE api_tokens SET last_used_at = %s WHERE tenant_id = %s", (old, tenant))
        _auth(db_url, token)
        assert _row(db_url, tenant)["last_used_at"] > old


def test_cli_create_list_revoke(db_url: str, tenant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """`tokens create --ttl-days`, `MAILLAGE_TOKEN_TTL_DAYS`, `tokens list --json`, `tokens revoke`."""
    monkeypatch.setenv("MAILLAGE_DATABASE_URL", db_url)
    runner = CliRunner()
    r = runner.invoke(tokens_app, ["create", "--tenant", tenant, "--role", "admin", "--ttl-days",
                                   "0", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["token"].startswith("mlg_")
    monkeypatch.setenv("MAILLAGE_TOKEN_TTL_DAYS", "3")
    r = runner.invoke(tokens_app, ["create", "--tenant", tenant, "--role", "opendata",
                                   "--label", "portal"])
    assert r.exit_code == 0 and r.output.strip().startswith("mlg_")
    r = runner.invoke(tokens_app, ["list", "--tenant", tenant, "--json"])
    assert r.exit_code == 0, r.output
    items = json.loads(r.output)["items"]
    assert [(i["role"], i["label"], i["revoked_at"]) for i in items] == [
        ("admin", None, None), ("opendata", "portal", None)]
    assert items[0]["expires_at"] is None
    ttl = datetime.fromisoformat(items[1]["expires_at"]) - datetime.fromisoformat(
        items[1]["created_at"])
    assert ttl == timedelta(days=3)
    r = runner.invoke(tokens_app, ["revoke", str(items[1]["id"])])
    assert r.exit_code == 0 and f"token {items[1]['id']} revoked at" in r.output
    r = runner.invoke(tokens_app, ["list", "--tenant", tenant])
    assert r.exit_code == 0 and "revoked" in r.output and "portal" in r.output
    r = runner.invoke(tokens_app, ["revoke", "0"])
    assert r.exit_code == 1 and "no token 0" in r.output
    r = runner.invoke(tokens_app, ["create", "--tenant", tenant, "--role", "admin",
                                   "--ttl-days", "-2"])
    assert r.exit_code == 1 and "ttl_days" in r.output
