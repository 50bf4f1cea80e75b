"""Tokens for admins: `GET /v1/tokens` (never the secrets) and `POST /v1/tokens/{id}/revoke`.

A tenant's admin sees and revokes its tenant's tokens; an all-tenants admin any token. A
revocation takes effect at the token's next request.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel

from maillage.api.deps import ConnDep, PrincipalDep, require_roles, tenant_scope
from maillage.registry.models import Role
from maillage.registry.tokens import list_tokens_async, revoke_token_async

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/tokens", tags=["tokens"], dependencies=[require_roles(Role.ADMIN)])


class TokenOut(BaseModel):
    """A token as admins see it: no secret, no hash."""

    id: int
    tenant: str
    role: str
    label: str | None
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenPage(BaseModel):
    """Every token in scope, by id."""

    items: list[TokenOut]


def _out(row: dict[str, Any]) -> TokenOut:
    return TokenOut(**row)


@router.get("", response_model=TokenPage)
async def tokens(conn: ConnDep, p: PrincipalDep,
                 tenant: Annotated[str | None, Query(description="For all-tenants admins "
                                                     "('*': the all-tenants tokens)")] = None,
                 ) -> TokenPage:
    """The tokens of the caller's tenant (an all-tenants admin: every token, or one tenant's)."""
    rows = await list_tokens_async(conn=conn, tenant=tenant_scope(p, tenant))
    return TokenPage(items=[_out(r) for r in rows])


@router.post("/{token_id:int}/revoke", response_model=TokenOut)
async def revoke(token_id: int, conn: ConnDep, p: PrincipalDep) -> TokenOut:
    """Revoke a token at once (revoking it again changes nothing)."""
    row = await revoke_token_async(conn=conn, token_id=token_id, tenant=p.tenant)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"token {token_id} not found")
    log.info("token %d revoked by %s", token_id, p.actor)
    return _out(row)
