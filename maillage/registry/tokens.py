"""API bearer tokens: random secrets stored as SHA-256 hashes, scoped to a tenant and a role.

A token expires (`expires_at`; by default `DEFAULT_TTL_DAYS` after its creation, never when
created with a TTL of 0), can be revoked (at once: every request reads `revoked_at`), and records
when it was last used, at most once a minute so that a busy token costs no write per request.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

import psycopg

from maillage.errors import RegistryError
from maillage.registry.models import Role
from maillage.registry.tenants import tenant_exists

ALL_TENANTS = "*"
DEFAULT_TTL_DAYS = 90
"""Lifetime of a new token unless told otherwise (`MAILLAGE_TOKEN_TTL_DAYS`, `--ttl-days`)."""
LAST_USED_EVERY_S = 60
"""`last_used_at` is written when older than this: cheap, and precise enough to spot dead tokens."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a token speaks for: a role in one tenant, or an admin of every tenant (tenant None)."""

    tenant: str | None
    role: Role
    token_id: int
    label: str | None = None

    def can_see_tenant(self, tenant: str) -> bool:
        return self.tenant is None or self.tenant == tenant

    @property
    def actor(self) -> str:
        """How the token is named where it acted (alert history): its id, and its label."""
        return f"token:{self.token_id}" + (f" ({self.label})" if self.label else "")


class TokenRefused(RegistryError):
    """A bearer token the API refuses (unknown, expired or revoked), with the reason."""

    def __init__(self, message: str, *, reason: str = "invalid_token",
                 token_id: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason  # invalid_token | token_revoked | token_expired (security log)
        self.token_id = token_id


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(conn: psycopg.Connection, *, tenant: str, role: str, label: str | None = None,
                 ttl_days: int = DEFAULT_TTL_DAYS) -> str:
    """Create a token valid `ttl_days` days (0: never expires) and return it (only its hash is
    stored)."""
    try:
        the_role = Role(role)
    except ValueError as exc:
        raise RegistryError(f"unknown role {role!r}; one of: {', '.join(r.value for r in Role)}") from exc
    if ttl_days < 0:
        raise RegistryError(f"ttl_days must be 0 (never expires) or more, not {ttl_days}")
    tenant_id: str | None = tenant
    if tenant == ALL_TENANTS:
        if the_role is not Role.ADMIN:
            raise RegistryError("only an admin token may span every tenant ('*')")
        tenant_id = None
    elif not tenant_exists(conn, tenant):
        raise RegistryError(f"unknown tenant {tenant!r}")
    token = "mlg_" + secrets.token_urlsafe(32)
    conn.execute(
        "INSERT INTO api_tokens (token_hash, tenant_id, role, label, expires_at) VALUES "
        "(%s, %s, %s, %s, CASE WHEN %s > 0 THEN now() + %s * interval '1 day' END)",
        (_hash(token), tenant_id, the_role.value, label, ttl_days, ttl_days),
    )
    return token


async def authenticate(*, conn: psycopg.AsyncConnection, token: str) -> Principal:
    """The principal of a valid token; `TokenRefused` saying why otherwise (the API's lookup)."""
    cur = await conn.execute(
        "SELECT id, tenant_id, role, label, revoked_at, expires_at, expires_at <= now(), "
        f"last_used_at IS NULL OR last_used_at < now() - interval '{LAST_USED_EVERY_S} seconds' "
        "FROM api_tokens WHERE token_hash = %s", (_hash(token),))
    row = await cur.fetchone()
    if row is None:
        raise TokenRefused("invalid token")
    token_id, tenant, role, label, revoked_at, expires_at, expired, stale = row
    if revoked_at is not None:
        raise TokenRefused(f"token {token_id} was revoked at {revoked_at.isoformat()}",
                           reason="token_revoked", token_id=token_id)
    if expired:
        raise TokenRefused(f"token {token_id} expired at {expires_at.isoformat()}; "
                           "ask an admin for a new one", reason="token_expired", token_id=token_id)
    if stale:
        # Concurrent requests may both write: harmless, the last one wins.
        await conn.execute("UPDATE api_tokens SET last_used_at = now() WHERE id = %s", (token_id,))
    return Principal(tenant=tenant, role=Role(role), token_id=token_id, label=label)


async def still_valid(*, conn: psycopg.AsyncConnection, token_id: int) -> bool:
    """Whether a token is neither revoked nor expired now (long-lived streams re-check)."""
    cur = await conn.execute(
        "SELECT 1 FROM api_tokens WHERE id = %s AND revoked_at IS NULL "
        "AND (expires_at IS NULL OR expires_at > now())", (token_id,))
    return await cur.fetchone() is not None


async def lookup_token(*, conn: psycopg.AsyncConnection, token: str) -> Principal | None:
    """The principal of a valid token, else None."""
    try:
        return await authenticate(conn=conn, token=token)
    except TokenRefused:
        return None


TOKEN_COLUMNS = ("id", "tenant", "role", "label", "created_at", "expires_at", "last_used_at",
                 "revoked_at")
_TOKEN_SELECT = ("SELECT id, coalesce(tenant_id, '*'), role, label, created_at, expires_at, "
                 "last_used_at, revoked_at FROM api_tokens")
# Tenant filter: None every token; '*' the all-tenants tokens; else that tenant's.
_TOKEN_SCOPE = "(%(tenant)s::text IS NULL OR coalesce(tenant_id, '*') = %(tenant)s)"


def _token_rows(rows: list[Any]) -> list[dict[str, Any]]:
    return [dict(zip(TOKEN_COLUMNS, r, strict=True)) for r in rows]


def list_tokens(conn: psycopg.Connection, *, tenant: str | None = None) -> list[dict[str, Any]]:
    """Tokens (never their secret) with role, expiry, last use and revocation, by id."""
    rows = conn.execute(f"{_TOKEN_SELECT} WHERE {_TOKEN_SCOPE} ORDER BY id",
                        {"tenant": tenant}).fetchall()
    return _token_rows(rows)


def revoke_token(conn: psycopg.Connection, *, token_id: int) -> dict[str, Any]:
    """Revoke a token now (kept for the record); revoking it again changes nothing."""
    conn.execute("UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = %s",
                 (token_id,))
    rows = conn.execute(f"{_TOKEN_SELECT} WHERE id = %s", (token_id,)).fetchall()
    if not rows:
        raise RegistryError(f"no token {token_id}")
    return _token_rows(rows)[0]


async def list_tokens_async(*, conn: psycopg.AsyncConnection,
                            tenant: str | None) -> list[dict[str, Any]]:
    """`list_tokens` for the API."""
    cur = await conn.execute(f"{_TOKEN_SELECT} WHERE {_TOKEN_SCOPE} ORDER BY id",
                             {"tenant": tenant})
    return _token_rows(await cur.fetchall())


async def revoke_token_async(*, conn: psycopg.AsyncConnection, token_id: int,
                             tenant: str | None) -> dict[str, Any] | None:
    """Revoke a token of `tenant` (None: any) for the API; None when there is no such token."""
    cur = await conn.execute(
        "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now()) "
        f"WHERE id = %(id)s AND {_TOKEN_SCOPE} RETURNING id", {"id": token_id, "tenant": tenant})
    if await cur.fetchone() is None:
        return None
    cur = await conn.execute(f"{_TOKEN_SELECT} WHERE id = %s", (token_id,))
    return _token_rows(await cur.fetchall())[0]

