"""Helpers of the alert API tests: two tenants with alerts of every visibility and tokens of every
role (rows written as the alerting processor writes them: the alert and its `opened` event)."""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import uvicorn

from maillage.db.alerts import SNAPSHOT_SQL
from maillage.registry.tenants import add_tenant
from maillage.registry.tokens import create_token
from maillage.stack.process import free_port

T0 = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
ROLES = ("admin", "energy_manager", "care_coordinator", "opendata")


@dataclass
class World:
    """Tenants `a` and `b`; tokens of `a` by role (plus `root`, `expired`, `revoked`, `b_admin`),
    alert ids by name."""

    a: str
    b: str
    tokens: dict[str, str]
    token_ids: dict[str, int]
    ids: dict[str, int] = field(default_factory=dict)
    care: dict[str, bool] = field(default_factory=dict)

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def name_of(self, alert_id: int) -> str:
        return {v: k for k, v in self.ids.items()}[alert_id]


def insert_alert(conn: psycopg.Connection, *, tenant: str, kind: str, device: str, care: bool,
                 state: str = "open", severity: str = "warning", first_at: datetime = T0,
                 last_at: datetime | None = None, count: int = 1, grp: str | None = None,
                 opened_at: datetime | None = None, acknowledged_at: datetime | None = None,
                 resolved_at: datetime | None = None) -> int:
    """One alert and its `opened` event (NOTIFYed), as the processor would write them."""
    with conn.transaction():
        row = conn.execute(
            "INSERT INTO alerts (tenant_id, group_key, kind, severity, device_id, grp, care, state, "
            "count, first_at, last_at, opened_at, acknowledged_at, acknowledged_by, resolved_at, "
            "resolved_by, next_escalation_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
            "coalesce(%s, now()), %s, %s, %s, %s, CASE WHEN %s = 'open' THEN now() END) "
            "RETURNING id",
            (tenant, f"{kind}|{device}|{uuid.uuid4().hex[:6]}", kind, severity, device, grp, care,
             state, count, first_at, last_at or first_at, opened_at,
             acknowledged_at or (T0 if state == "acknowledged" else None),
             "token:0" if acknowledged_at or state == "acknowledged" else None,
             resolved_at or (T0 if state == "resolved" else None),
             "system" if resolved_at or state == "resolved" else None, state)).fetchone()
        assert row is not None
        ev = conn.execute(
            "INSERT INTO alert_events (alert_id, tenant_id, care, actor, action, snapshot) "
            f"SELECT a.id, a.tenant_id, a.care, 'system', 'opened', {SNAPSHOT_SQL} FROM alerts a "
            "WHERE a.id = %s RETURNING id", (row[0],)).fetchone()
        assert ev is not None
        conn.execute("SELECT pg_notify('alert_events', %s)", (str(ev[0]),))
    return int(row[0])


def make_world(db_url: str) -> World:
    """Two fresh tenants, tokens of every role, and these alerts:

    a: spike (meter-1, open), voltage (meter-2, critical, acknowledged), fall (care, critical,
    open), battery (care, resolved), cabinet (lighting group, open); b: b_spike, b_fall."""
    a, b = f"aa{uuid.uuid4().hex[:8]}", f"ab{uuid.uuid4().hex[:8]}"
    with psycopg.connect(db_url, autocommit=True) as conn:
        add_tenant(conn, tenant_id=a)
        add_tenant(conn, tenant_id=b)
        tokens = {r: create_token(conn, tenant=a, role=r, label=f"{r} of {a}") for r in ROLES}
        tokens["root"] = create_token(conn, tenant="*", role="admin", label="root")
        tokens["b_admin"] = create_token(conn, tenant=b, role="admin")
        tokens["expired"] = create_token(conn, tenant=a, role="admin", ttl_days=1)
        tokens["revoked"] = create_token(conn, tenant=a, role="admin")
        tokens["never"] = create_token(conn, tenant=a, role="admin", ttl_days=0)
        ids_by_hash = dict(conn.execute("SELECT token_hash, id FROM api_tokens").fetchall())
        token_ids = {k: ids_by_hash[hashlib.sha256(v.encode()).hexdigest()]
                     for k, v in tokens.items()}
        conn.execute("UPDATE api_tokens SET expires_at = now() - interval '1 hour' WHERE id = %s",
                     (token_ids["expired"],))
        conn.execute("UPDATE api_tokens SET revoked_at = now() WHERE id = %s",
                     (token_ids["revoked"],))
        w = World(a, b, tokens, token_ids)
        specs: dict[str, dict[str, Any]] = {
            "spike": dict(tenant=a, kind="spike", device="meter-1", care=False, count=7,
                          first_at=T0, last_at=T0 + timedelta(hours=1)),
            "voltage": dict(tenant=a, kind="voltage_out_of_range", device="meter-2", care=False,
                            severity="critical", state="acknowledged",
                            first_at=T0 + timedelta(hours=2)),
            "cabinet": dict(tenant=a, kind="group_offline", device="cab-1", care=False,
                            grp="cabinet:cab-1", first_at=T0 + timedelta(hours=3)),
            "fall": dict(tenant=a, kind="fall", device="care-bed-1", care=True,
                         severity="critical", first_at=T0 + timedelta(hours=4)),
            "battery": dict(tenant=a, kind="battery_low", device="care-door-1", care=True,
                            state="resolved", first_at=T0 + timedelta(hours=5)),
            "b_spike": dict(tenant=b, kind="spike", device="meter-9", care=False, first_at=T0),
            "b_fall": dict(tenant=b, kind="fall", device="care-bed-9", care=True,
                           severity="critical", first_at=T0),
        }
        for name, spec in specs.items():
            w.ids[name] = insert_alert(conn, **spec)
            w.care[name] = spec["care"]
    return w


def access_rows(db_url: str, tenant: str) -> list[tuple[str, str | None, str]]:
    """The tenant's care access log: (role, device, what), oldest first."""
    with psycopg.connect(db_url) as conn:
        return conn.execute("SELECT role, device_id, what FROM care_access_log WHERE tenant_id = %s "
                            "ORDER BY id", (tenant,)).fetchall()


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """`app` served by uvicorn in a thread on a free port: its base URL (a real HTTP server)."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
