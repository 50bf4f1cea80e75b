"""API bearer tokens: random secrets stored as SHA-256 hashes, scoped to a tenant and a role."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

import psycopg

from maillage.errors import RegistryError
from maillage.registry.models import Role
from maillage.registry.tenants import tenant_exists

ALL_TENANTS = "*"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a token speaks for: a role in one tenant, or an admin of every tenant (tenant None)."""

    tenant: str | None
    role: Role
    token_id: int

    def can_see_tenant(self, tenant: str) -> bool:
        return self.tenant is None or self.tenant == tenant


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(conn: psycopg.Connection, *, tenant: str, role: str, label: str | None = None) -> str:
    """Create a token and return it (only its hash is stored)."""
    try:
        the_role = Role(role)
    except ValueError as exc:
        raise RegistryError(f"unknown role {role!r}; one of: {', '.join(r.value for r in Role)}") from exc
    tenant_id: str | None = tenant
    if tenant == ALL_TENANTS:
        if the_role is not Role.ADMIN:
            raise RegistryError("only an admin token may span every tenant ('*')")
        tenant_id = None
    elif not tenant_exists(conn, tenant):
        raise RegistryError(f"unknown tenant {tenant!r}")
    token = "mlg_" + secrets.token_urlsafe(32)
    conn.execute(
        "INSERT INTO api_tokens (token_hash, tenant_id, role, label) VALUES (%s, %s, %s, %s)",
        (_hash(token), tenant_id, the_role.value, label),
    )
    return token


async def lookup_token(*, conn: psycopg.AsyncConnection, token: str) -> Principal | None:
    """The principal of a valid, unrevoked token, else None (the API's one token lookup)."""
    cur = await conn.execute(
        "SELECT id, tenant_id, role FROM api_tokens WHERE token_hash = %s AND revoked_at IS NULL",
        (_hash(token),),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    return Principal(tenant=row[1], role=Role(row[2]), token_id=row[0])
