"""Dependencies shared by the routes: the database pool, the caller's principal, tenant scoping."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import psycopg
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg_pool import AsyncConnectionPool

from maillage.registry.models import DeviceType, Role
from maillage.registry.tokens import Principal, lookup_token

_bearer = HTTPBearer(auto_error=False)


def pool(request: Request) -> AsyncConnectionPool:
    the_pool: AsyncConnectionPool = request.app.state.pool
    return the_pool


async def connection(request: Request) -> AsyncIterator[psycopg.AsyncConnection]:
    """A pooled connection for the request (autocommit reads; routes open transactions to write)."""
    async with pool(request).connection() as conn:
        yield conn


ConnDep = Annotated[psycopg.AsyncConnection, Depends(connection)]


async def principal(
    conn: ConnDep,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The token's principal; 401 without a valid bearer token."""
    if creds is None or creds.scheme.lower() != "bearer":
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing bearer token",
                            headers={"WWW-Authenticate": "Bearer"})
    found = await lookup_token(conn=conn, token=creds.credentials)
    if found is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid or revoked token",
                            headers={"WWW-Authenticate": "Bearer"})
    return found


PrincipalDep = Annotated[Principal, Depends(principal)]

CARE_TYPES = [t.value for t in DeviceType if t.is_care]
ENERGY_TYPES = [t.value for t in DeviceType if not t.is_care]


def device_types_visible(p: Principal) -> list[str]:
    """Device types a role may see: energy managers no care data, care coordinators only care."""
    if p.role is Role.ADMIN:
        return [t.value for t in DeviceType]
    if p.role is Role.ENERGY_MANAGER:
        return ENERGY_TYPES
    if p.role is Role.CARE_COORDINATOR:
        return CARE_TYPES
    return []


def require_roles(*roles: Role) -> Any:
    """A dependency refusing (403) any role not listed."""

    async def check(p: PrincipalDep) -> Principal:
        if p.role not in roles:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"role {p.role.value} may not do this")
        return p

    return Depends(check)
