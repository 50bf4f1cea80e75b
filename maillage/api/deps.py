"""Dependencies shared by the routes: the database pool, the caller's principal, tenant scoping."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

import psycopg
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg_pool import AsyncConnectionPool

from maillage.api.security import Refused, log_refusal, remember
from maillage.registry.models import DeviceType, Role
from maillage.registry.tokens import Principal, TokenRefused, authenticate

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
    request: Request,
    conn: ConnDep,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The token's principal; 401 without a valid bearer token (unknown, expired, revoked)."""
    return await _authenticate(request, conn, creds)


async def _authenticate(request: Request, conn: psycopg.AsyncConnection,
                        creds: HTTPAuthorizationCredentials | None) -> Principal:
    """The principal, kept on the request; a refusal is logged (api/security.py)."""
    try:
        if creds is None or creds.scheme.lower() != "bearer":
            raise Refused(status.HTTP_401_UNAUTHORIZED, "missing bearer token",
                          reason="missing_token", headers={"WWW-Authenticate": "Bearer"})
        try:
            return remember(request, await authenticate(conn=conn, token=creds.credentials))
        except TokenRefused as exc:
            raise Refused(status.HTTP_401_UNAUTHORIZED, str(exc), reason=exc.reason,
                          token_id=exc.token_id, headers={"WWW-Authenticate": "Bearer"}) from exc
    except Refused as exc:
        log_refusal(request, status=exc.status_code, reason=exc.reason, message=str(exc.detail),
                    token_id=exc.token_id)
        raise


PrincipalDep = Annotated[Principal, Depends(principal)]


async def principal_released(
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The principal, giving its pooled connection back at once (for long-lived streams, which
    would otherwise hold one of the pool's few connections for their whole life)."""
    async with pool(request).connection() as conn:
        return await _authenticate(request, conn, creds)


ReleasedPrincipalDep = Annotated[Principal, Depends(principal_released)]

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

    async def check(request: Request, p: PrincipalDep) -> Principal:
        if p.role not in roles:
            message = f"role {p.role.value} may not do this"
            log_refusal(request, status=403, reason="role", message=message)
            raise Refused(status.HTTP_403_FORBIDDEN, message, reason="role")
        return p

    return Depends(check)


def care_scope(p: Principal) -> bool | None:
    """Which care-flagged rows a role sees: None both, True care only, False no care."""
    if p.role is Role.CARE_COORDINATOR:
        return True
    if p.role is Role.ADMIN:
        return None
    return False


def tenant_scope(p: Principal, tenant: str | None) -> str | None:
    """The tenant to read: the token's own; an all-tenants admin may name one (None: all)."""
    if p.tenant is None:
        return tenant
    if tenant is not None and tenant != p.tenant:
        message = f"tenant {tenant!r} not found"
        log_refusal(None, status=404, reason="other_tenant", message=message, principal=p)
        raise Refused(status.HTTP_404_NOT_FOUND, message, reason="other_tenant")
    return p.tenant


def one_tenant(p: Principal, tenant: str | None) -> str:
    """The one tenant a request acts on: the token's; an all-tenants admin must name it (422)."""
    scope = tenant_scope(p, tenant)
    if scope is None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            "tenant: an all-tenants token must name the tenant (?tenant=)")
    return scope


def aware(name: str, value: datetime | None) -> datetime | None:
    """A query time, refused (422) without a time zone."""
    if value is not None and value.tzinfo is None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"{name}: give a time zone (e.g. 2026-11-23T00:00:00Z or +01:00)")
    return value


def window(start: datetime | None, end: datetime | None) -> tuple[datetime | None, datetime | None]:
    """`from` and `to`, both with a zone, `to` after `from` (422 otherwise)."""
    start, end = aware("from", start), aware("to", end)
    if start and end and end <= start:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "'to' must be after 'from'")
    return start, end
