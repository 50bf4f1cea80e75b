"""`create_app(...)`: the FastAPI application; its lifespan opens the database pools."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from maillage import __version__
from maillage.api import errors, security
from maillage.api.routes import (
    access_log,
    alerts,
    anomalies,
    buckets,
    commands,
    devices,
    health,
    lighting,
    me,
    ngsi_ld,
    opendata,
    peaks,
    readings,
    rejected,
    retrofit,
    savings,
    tokens,
)
from maillage.opendata.exports import DEFAULT_MIN_HOUSEHOLDS
from maillage.registry.models import DeviceCredentials, DeviceSpec

RegisterFn = Callable[[str, Sequence[DeviceSpec]], list[DeviceCredentials]]
STATIC_DIR = Path(__file__).parent / "static"


def create_app(database_url: str, *, register_devices: RegisterFn | None = None,
               sse_heartbeat_s: float = alerts.HEARTBEAT_S,
               token_recheck_s: float = alerts.TOKEN_RECHECK_S,
               opendata_min_households: int = DEFAULT_MIN_HOUSEHOLDS) -> FastAPI:
    """The API over `database_url`; `register_devices` installs MQTT credentials (needs the broker);
    `sse_heartbeat_s`: comment lines on idle alert streams; `token_recheck_s`: how soon a stream
    ends after its token is revoked; `opendata_min_households`: the statistical-secrecy threshold
    of open data (docs/opendata.md)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A pooled connection is checked when lent: after a PostgreSQL restart the pools would
        # otherwise hand out dead connections, a 500 or 503 each (found by the fault suite
        # followed by schemathesis).
        async with AsyncConnectionPool(database_url, min_size=1, max_size=10,
                                       kwargs={"autocommit": True}, open=False,
                                       check=AsyncConnectionPool.check_connection) as pool:
            app.state.pool = pool
            sync_pool = ConnectionPool(database_url, min_size=1, max_size=4,
                                       kwargs={"autocommit": True}, open=True,
                                       check=ConnectionPool.check_connection)
            app.state.sync_pool = sync_pool
            try:
                yield
            finally:
                sync_pool.close()

    app = FastAPI(title="maillage", version=__version__, lifespan=lifespan,
                  description="Smart-territory IoT backbone: meters, public lighting, home care.")
    app.state.register_devices = register_devices or _no_broker
    app.state.database_url = database_url  # the alert stream's LISTEN connections
    app.state.sse_heartbeat_s = sse_heartbeat_s
    app.state.token_recheck_s = token_recheck_s
    app.state.opendata_min_households = opendata_min_households
    errors.install(app)
    security.install(app)  # 401/403 a route raised itself: logged with who and what
    app.include_router(health.router)
    app.include_router(devices.router)
    app.include_router(readings.router)
    app.include_router(buckets.router)
    app.include_router(rejected.router)
    app.include_router(anomalies.router)
    app.include_router(alerts.stream_router)
    app.include_router(alerts.router)
    app.include_router(tokens.router)
    app.include_router(access_log.router)
    app.include_router(me.router)
    app.include_router(commands.router)
    app.include_router(lighting.router)
    app.include_router(retrofit.router)  # before savings: /v1/savings/retrofit is not a savings path
    app.include_router(savings.router)
    app.include_router(peaks.router)
    app.include_router(opendata.router)
    app.include_router(ngsi_ld.router)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        """Prometheus metrics of every maillage process of this stack."""
        registry = CollectorRegistry()
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # untyped upstream
        else:
            from prometheus_client import REGISTRY as registry  # noqa: N811
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    if STATIC_DIR.exists():
        app.mount("/", StaticFiles(directory=STATIC_DIR, html=True), name="web")
    return app


def _no_broker(tenant: str, specs: Sequence[DeviceSpec]) -> list[DeviceCredentials]:
    from maillage.errors import StackError

    raise StackError("no MQTT broker control configured for this API")
