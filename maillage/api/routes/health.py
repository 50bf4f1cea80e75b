"""`/health`: is the API up and does it reach its database."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from maillage.api.deps import ConnDep
from maillage.db.health import ping

router = APIRouter(tags=["health"])


@router.get("/health")
async def health(conn: ConnDep) -> JSONResponse:
    """200 with `{"status": "ok"}` when the database answers, else 503."""
    try:
        await ping(conn=conn)
    except Exception as exc:  # noqa: BLE001 - any database failure means unhealthy
        return JSONResponse({"status": "degraded", "database": str(exc)}, status_code=503)
    return JSONResponse({"status": "ok", "database": "ok"})
