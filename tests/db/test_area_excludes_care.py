"""Hole 10: a commune's rollups (energy managers' views) leave care devices out.

On dc046fb `area_compute.sql` joined every device of the area: a care hub's mains power in a
dwelling of the commune was averaged with the meters' (mean 300 W, two devices), so the
assertions below (400 W, one device) failed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg

from maillage.db.readings import query_area

# Recent: care raw data has a short retention, and older claims are dropped with it.
T0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)


def test_commune_power_leaves_care_devices_out(conn: psycopg.Connection,
                                               make_tenant: Callable[..., str],
                                               make_device: Callable[..., int],
                                               put: Callable[..., int]) -> None:
    tenant = make_tenant("UTC")
    meter = make_device(tenant, type="meter", commune="c1", district="d1")
    hub = make_device(tenant, type="care_hub", commune="c1", district="d1")
    points = [(T0 + timedelta(minutes=m), 400.0) for m in range(0, 15, 5)]
    put(meter, "active_power_w", points)
    put(hub, "active_power_w", [(ts, 200.0) for ts, _ in points])
    for level, name in (("commune", "c1"), ("district", "d1")):
        rows = query_area(conn, tenant=tenant, level=level, name=name, metric="active_power_w",
                          start=T0, end=T0 + timedelta(hours=1), bucket="15m")
        assert [(r["value"], r["devices"]) for r in rows] == [(400.0, 1)], level
