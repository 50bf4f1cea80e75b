"""A territory for the open data tests, on the session's real PostgreSQL.

Tenant `pub` (Europe/Paris), October 2026, energy from two index readings per device 10 hours
apart (rollups refreshed by the production code):
- Bourg: 3 streetlights (one without a location), a cabinet,
  12 household meters, a public building meter, a meter marked public but with a dwelling (a
  household's all the same), and care devices of a resident (a hub and a bed sensor) whose
  readings carry energy too: none of it may show.
- Hameau: 2 streetlights (one with an open lamp failure) and 4 household meters (under the
  threshold of 10).
Lighting savings rows (as the savings stage stores them) for Bourg in September and October.
Tenant `other`: one streetlight, which `pub`'s readers must never see.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient

from maillage.api.app import create_app
from maillage.db import rollups
from maillage.db.writer import DeviceIds, LastSeen, MetricIds, write_readings
from maillage.envelope import to_us
from maillage.registry.devices import register
from maillage.registry.models import DeviceSpec, DeviceType
from maillage.registry.tenants import add_tenant
from maillage.registry.tokens import create_token

T0 = datetime(2026, 10, 10, 6, 0, tzinfo=UTC)
T1 = T0 + timedelta(hours=10)
LAMP_WH = {"lamp-b1": 500.0, "lamp-b2": 700.0, "lamp-b3": 300.0, "lamp-h1": 400.0,
           "lamp-h2": 450.0}
CABINET_WH = 2000.0
PUBLIC_WH = 9000.0
CARE_WH = 123456.0
SAVINGS = [  # lamp-night rows of the lighting savings stage: (lamp, commune, night, ref, measured, €/kWh)
    ("lamp-b1", "Bourg", date(2026, 10, 9), 2000.0, 800.0, 0.2),
    ("lamp-b2", "Bourg", date(2026, 10, 10), 1800.0, 600.0, 0.2),
    ("lamp-b1", "Bourg", date(2026, 9, 30), 2100.0, 900.0, None),
]


@dataclass
class Territory:
    """The tenants, the expected kWh, every device id by class, tokens and an API client."""

    tenant: str
    other: str
    client: TestClient
    db_url: str
    tokens: dict[str, str]
    household_wh: dict[str, float] = field(default_factory=dict)
    care_ids: list[str] = field(default_factory=list)
    household_ids: list[str] = field(default_factory=list)

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


def _spec(device_id: str, dtype: DeviceType, commune: str, **kw: object) -> DeviceSpec:
    return DeviceSpec(device_id=device_id, type=dtype, commune=commune, **kw)  # type: ignore[arg-type]  # kw are DeviceSpec fields


@pytest.fixture(scope="package")
def territory(db_url: str) -> Iterator[Territory]:
    """The territory above with its rollups, tokens of every role, and the API in process."""
    tag = uuid.uuid4().hex[:8]
    tenant, other = f"pub-{tag}", f"other-{tag}"
    specs: list[tuple[str, DeviceSpec]] = []
    energy: dict[str, float] = {}
    lamps = [("lamp-b1", "Bourg", 48.1101, -1.6801, "cab-b"), ("lamp-b2", "Bourg", 48.1102,
             -1.6802, "cab-b"), ("lamp-b3", "Bourg", None, None, "cab-b"),
             ("lamp-h1", "Hameau", 48.2001, -1.7001, None), ("lamp-h2", "Hameau", 48.2002,
                                                             -1.7002, None)]
    for did, commune, lat, lon, cabinet in lamps:
        meta: dict[str, object] = {"lamp_tech": "LED", "nominal_power_w": 60, "street": "rue A"}
        if cabinet:
            meta["cabinet"] = cabinet
        specs.append((tenant, _spec(did, DeviceType.STREETLIGHT, commune, lat=lat, lon=lon,
                                    site="rue A", district="centre", meta=meta,
                                    installed_at=datetime(2019, 3, 1, tzinfo=UTC))))
        energy[did] = LAMP_WH[did]
    specs.append((tenant, _spec("cab-b", DeviceType.LIGHTING_CABINET, "Bourg", lat=48.11,
                                lon=-1.68, site="rue A")))
    energy["cab-b"] = CABINET_WH
    t = Territory(tenant, other, None, db_url, {})  # type: ignore[arg-type]  # client set below
    for commune, n in (("Bourg", 12), ("Hameau", 4)):
        for k in range(n):
            did = f"home-{commune[0].lower()}{k:02d}"
            specs.append((tenant, _spec(did, DeviceType.METER, commune, dwelling=f"{did}-apt",
                                        meta={"housing": "flat"})))
            energy[did] = t.household_wh[did] = 3000.0 + 100 * k
            t.household_ids.append(did)
    specs.append((tenant, _spec("mairie", DeviceType.METER, "Bourg",
                                meta={"public_building": True})))
    energy["mairie"] = PUBLIC_WH
    specs.append((tenant, _spec("loge-gardien", DeviceType.METER, "Bourg", dwelling="loge",
                                meta={"public_building": True})))
    energy["loge-gardien"] = t.household_wh["loge-gardien"] = 2500.0
    t.household_ids.append("loge-gardien")
    for did, dtype in (("care-hub-7", DeviceType.CARE_HUB), ("care-bed-7", DeviceType.CARE_BED)):
        specs.append((tenant, _spec(did, dtype, "Bourg", lat=48.1103, lon=-1.6803,
                                    dwelling="apt-7", meta={"resident": "R-7"})))
        energy[did] = CARE_WH
        t.care_ids.append(did)
    specs.append((other, _spec("lamp-x9", DeviceType.STREETLIGHT, "Bourg", lat=48.3, lon=-1.6)))
    energy["lamp-x9"] = 999.0

    with psycopg.connect(db_url, autocommit=True) as conn:
        add_tenant(conn, tenant_id=tenant)
        add_tenant(conn, tenant_id=other)
        register(conn, specs, dynsec=None)
        msgs = []
        for ten, spec in specs:
            did = spec.device_id
            values0: dict[str, float] = {"energy_import_wh": 10_000.0}
            values1: dict[str, float] = {"energy_import_wh": 10_000.0 + energy[did]}
            if spec.type is DeviceType.STREETLIGHT:
                values1 |= {"lamp_on": 1.0, "dimming_pct": 40.0 if did == "lamp-b2" else 100.0,
                            "lamp_power_w": 24.0 if did == "lamp-b2" else 60.0}
            if spec.type is DeviceType.LIGHTING_CABINET:
                values1 |= {"active_power_w": 144.0}
            msgs.append((ten, did, to_us(T0), to_us(T0), None, values0))
            msgs.append((ten, did, to_us(T1), to_us(T1), None, values1))
        with conn.transaction():
            write_readings(conn, msgs, DeviceIds(), MetricIds(), LastSeen())
        pks = [r[0] for r in conn.execute("SELECT pk FROM devices WHERE tenant_id IN (%s, %s)",
                                          (tenant, other)).fetchall()]
        rollups.refresh_devices(conn, pks)
        conn.execute(
            "INSERT INTO anomalies (id, tenant_id, device_id, kind, severity, score, start_ts, "
            "care) VALUES (%s, %s, 'lamp-h2', 'lamp_failure', 'warning', 0.9, %s, false)",
            (uuid.uuid4().hex, tenant, T1))
        for did, commune, night, ref, measured, eur in SAVINGS:
            conn.execute(
                "INSERT INTO lighting_savings (tenant_id, device_id, night, commune, tech, "
                "reference_wh, measured_wh, led_retrofit_wh, dimming_wh, switch_off_wh, "
                "presence_wh, other_wh, eur_per_kwh, kg_co2_per_kwh, readings) VALUES (%s, %s, "
                "%s, %s, 'LED', %s, %s, %s, %s, 0, 0, 0, %s, 0.05, 100)",
                (tenant, did, night, commune, ref, measured, (ref - measured) * 0.75,
                 (ref - measured) * 0.25, eur))
        for role in ("admin", "energy_manager", "care_coordinator", "opendata"):
            t.tokens[role] = create_token(conn, tenant=tenant, role=role, label="opendata test")
        t.tokens["root"] = create_token(conn, tenant="*", role="admin", label="opendata test")
    with TestClient(create_app(db_url)) as client:
        t.client = client
        yield t
