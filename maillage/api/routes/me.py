"""`GET /v1/me`: who the caller's token speaks for, so the web page shows only what its role may
use (the routes still decide: this only spares the page calls it would be refused)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from maillage.api.deps import PrincipalDep
from maillage.api.routes.alerts import READERS as ALERT_READERS
from maillage.registry.models import Role

router = APIRouter(prefix="/v1", tags=["me"])

SAVINGS_READERS = (Role.ADMIN, Role.ENERGY_MANAGER)


class MeOut(BaseModel):
    """The caller: tenant (null for an all-tenants admin), role, token label, and what the page
    may offer it."""

    tenant: str | None
    role: str
    label: str | None
    alerts: bool  # may read the alert feed, acknowledge and resolve
    savings: bool  # may read savings per commune


@router.get("/me", response_model=MeOut)
async def me(p: PrincipalDep) -> MeOut:
    """The token's tenant and role (any valid token; 401 otherwise)."""
    return MeOut(tenant=p.tenant, role=p.role.value, label=p.label,
                 alerts=p.role in ALERT_READERS, savings=p.role in SAVINGS_READERS)
