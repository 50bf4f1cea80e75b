"""The permission matrix (issue 13, acceptance 3), on a real API process over HTTP.

Every endpoint of the app (walked from `app.routes`: a new route fails `test_every_route_is_in_the
_table` until it is given a row of `RULES`) x every caller (admin, all-tenants admin, energy
manager, care coordinator, opendata, an expired token, a revoked token, no token) x own and other
tenant (and, where it matters, a care and a non-care target): only the allowed cells succeed,
the others answer 401 (bad token), 403 (role) or 404 (out of scope). In every successful answer:
a tenant's token never gets another tenant's data, an energy manager or an opendata token never
gets care data, and any care data returned left a line in the care access log.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
from fastapi.routing import iter_route_contexts

from maillage.api.app import create_app
from maillage.db.commands import create_command_sync
from maillage.db.detection import record_transitions
from maillage.processors.detection.model import Anomaly, Kind, Severity, Transition
from maillage.registry.devices import register
from maillage.registry.models import DeviceCredentials, DeviceSpec, DeviceType
from maillage.registry.tokens import create_token
from tests.api.test_alerts_world import T0, World, insert_alert, make_world, serve

CALLERS = ("admin", "root", "energy_manager", "care_coordinator", "opendata", "expired", "revoked",
           "anonymous")
READERS = frozenset({"admin", "energy_manager", "care_coordinator"})
ADMIN = frozenset({"admin"})
ENERGY = frozenset({"admin", "energy_manager"})
PUBLIC = frozenset({"admin", "energy_manager", "care_coordinator", "opendata", "anonymous",
                    "expired", "revoked"})
OPENDATA = frozenset({"opendata"})
OPEN_DATA_READERS = frozenset({"admin", "energy_manager", "opendata"})
ANY_ROLE = READERS | OPENDATA
LIST = ("own", "other")
ITEMS = ("own_energy", "own_care", "other_energy", "other_care")
OWNED = ("own", "other")


@dataclass(frozen=True)
class Rule:
    """Who may call an endpoint (roles; the all-tenants admin follows `admin`), on which targets,
    and whether the care rule applies (energy managers no care target, coordinators only care)."""

    roles: frozenset[str]
    targets: tuple[str, ...] = LIST
    care_scoped: bool = False
    empty_for: frozenset[str] = frozenset()  # roles answered 200 with nothing rather than 403
    hidden_for: frozenset[str] = frozenset()  # roles answered 404 rather than 403
    care_denied: bool = False  # care targets do not exist for anyone (404): commands


RULES: dict[tuple[str, str], Rule] = {
    ("GET", "/openapi.json"): Rule(PUBLIC, ("own",)),
    ("GET", "/docs"): Rule(PUBLIC, ("own",)),
    ("GET", "/docs/oauth2-redirect"): Rule(PUBLIC, ("own",)),
    ("GET", "/redoc"): Rule(PUBLIC, ("own",)),
    ("GET", "/health"): Rule(PUBLIC, ("own",)),
    ("GET", "/metrics"): Rule(PUBLIC, ("own",)),
    # devices.py and readings.py do not check roles: an opendata token sees no device type, so
    # its list is empty and each device "not found".
    ("GET", "/v1/devices"): Rule(READERS, empty_for=OPENDATA),
    ("POST", "/v1/devices"): Rule(ADMIN),
    ("GET", "/v1/devices/{device_id}"): Rule(READERS, ITEMS, care_scoped=True, hidden_for=OPENDATA),
    ("GET", "/v1/devices/{device_id}/status"): Rule(READERS, ITEMS, care_scoped=True, hidden_for=OPENDATA),
    ("GET", "/v1/devices/{device_id}/readings"): Rule(READERS, ITEMS, care_scoped=True, hidden_for=OPENDATA),
    ("GET", "/v1/areas/{level}/{name}/readings"): Rule(ENERGY),
    ("GET", "/v1/rejected"): Rule(READERS),
    ("GET", "/v1/anomalies"): Rule(READERS),
    ("GET", "/v1/anomalies/{anomaly_id}"): Rule(READERS, ITEMS, care_scoped=True),
    ("GET", "/v1/alerts"): Rule(READERS),
    ("GET", "/v1/alerts/stats"): Rule(READERS),
    ("GET", "/v1/alerts/stream"): Rule(READERS),
    ("GET", "/v1/alerts/{alert_id:int}"): Rule(READERS, ITEMS, care_scoped=True),
    ("POST", "/v1/alerts/{alert_id:int}/ack"): Rule(READERS, ITEMS, care_scoped=True),
    ("POST", "/v1/alerts/{alert_id:int}/resolve"): Rule(READERS, ITEMS, care_scoped=True),
    ("POST", "/v1/alerts/{alert_id:int}/comments"): Rule(READERS, ITEMS, care_scoped=True),
    ("GET", "/v1/tokens"): Rule(ADMIN),
    ("POST", "/v1/tokens/{token_id:int}/revoke"): Rule(ADMIN, OWNED),
    ("GET", "/v1/access-log"): Rule(ADMIN),
    # Open data: the tenants of this world did not opt in to anonymous reads (401 without a token).
    ("GET", "/v1/opendata"): Rule(OPEN_DATA_READERS),
    ("GET", "/v1/opendata/lighting-consumption"): Rule(OPEN_DATA_READERS),
    ("GET", "/v1/opendata/public-buildings-consumption"): Rule(OPEN_DATA_READERS),
    ("GET", "/v1/opendata/residential-consumption"): Rule(OPEN_DATA_READERS),
    ("GET", "/v1/opendata/lighting-savings"): Rule(OPEN_DATA_READERS),
    ("GET", "/v1/opendata/streetlights"): Rule(OPEN_DATA_READERS),
    ("GET", "/ngsi-ld/v1/entities"): Rule(OPEN_DATA_READERS),
    ("GET", "/ngsi-ld/v1/entities/{entity_id}"): Rule(OPEN_DATA_READERS),
    ("GET", "/v1/me"): Rule(ANY_ROLE, ("own",)),
    ("GET", "/v1/savings"): Rule(ENERGY),
    ("GET", "/v1/savings/projects"): Rule(ENERGY),
    ("POST", "/v1/savings/projects"): Rule(ENERGY),
    ("GET", "/v1/savings/report"): Rule(ENERGY),
    ("POST", "/v1/devices/{device_id}/commands"): Rule(ENERGY, ITEMS, care_scoped=True,
                                                       care_denied=True),
    ("POST", "/v1/groups/{group_id}/commands"): Rule(ENERGY),
    ("GET", "/v1/commands"): Rule(ENERGY),
    ("GET", "/v1/commands/{command_id:int}"): Rule(ENERGY, OWNED),
    ("GET", "/v1/lighting/rules"): Rule(ENERGY),
    ("POST", "/v1/lighting/rules"): Rule(ENERGY),
    ("DELETE", "/v1/lighting/rules/{rule_id:int}"): Rule(ENERGY, OWNED),
    ("GET", "/v1/peak-windows"): Rule(ENERGY),
    ("POST", "/v1/peak-windows"): Rule(ENERGY),
    ("GET", "/v1/peak-windows/{window_id:int}"): Rule(ENERGY, OWNED),
    ("GET", "/v1/savings/retrofit"): Rule(ENERGY),
    ("GET", "/v1/peaks"): Rule(ENERGY),
}

NOT_A_CARE_READ = {"/v1/access-log"}
"""The access log names care devices (who looked at which); reading it is not logged again."""

KNOWN_GAPS: dict[tuple[str, str, str], str] = {
    ("GET", "/v1/devices", "root"): "routes/devices.py logs a care device list only for tenant "
                                   "tokens (`p.tenant is not None`): an all-tenants admin's list "
                                   "of a tenant's care devices leaves no line",
}
"""Cells that break an invariant today, each with why: the test fails once one is fixed (then
delete its line), and fails on any other."""


def _routes() -> list[tuple[str, str]]:
    app = create_app("postgresql://unused/routes-only")  # never started: no connection made
    found = set()
    for ctx in iter_route_contexts(app.routes):
        methods = getattr(ctx, "methods", None)
        if ctx.path and methods:  # the static web page's mount has neither
            found |= {(m, ctx.path) for m in methods if m != "HEAD"}
    return sorted(found)


ROUTES = _routes()


def test_every_route_is_in_the_table() -> None:
    """Each route of the app has a rule (and no rule names a route that is gone)."""
    assert sorted(RULES) == ROUTES


@dataclass
class Matrix:
    """The world and the served API."""

    world: World
    url: str
    db_url: str
    anomalies: dict[str, str]
    communes: dict[str, str]
    http: httpx.Client
    conn: psycopg.Connection


def _us(t: Any) -> int:
    return int(t.timestamp() * 1_000_000)


@pytest.fixture(scope="module")
def matrix(db_url: str) -> Iterator[Matrix]:
    """Two tenants with devices, anomalies, alerts and tokens; the API on a real HTTP server
    (device registration goes to the database only: no broker here)."""
    w = make_world(db_url)
    communes = {"own": f"ville-{w.a}", "other": f"ville-{w.b}"}
    devices = {w.a: [("meter-1", "meter"), ("care-bed-1", "care_bed"), ("lamp-1", "streetlight")],
               w.b: [("meter-9", "meter"), ("care-bed-9", "care_bed"), ("lamp-9", "streetlight")]}
    anomalies: dict[str, str] = {}
    with psycopg.connect(db_url, autocommit=True) as conn:
        # Streetlights get a location: the NGSI-LD view serves only located equipment.
        register(conn, [(t, DeviceSpec(device_id=d, type=ty, commune=f"ville-{t}",
                                       lat=48.11 if ty == "streetlight" else None,
                                       lon=-1.68 if ty == "streetlight" else None))
                        for t, ds in devices.items() for d, ty in ds], dynsec=None)
        made = {
            "own_energy": (Anomaly(tenant=w.a, device_id="meter-1", kind=Kind.SPIKE,
                                   severity=Severity.WARNING, score=0.5, start_us=_us(T0),
                                   end_us=None, evidence={}, group=None), False),
            "own_care": (Anomaly(tenant=w.a, device_id="care-bed-1", kind=Kind.FALL,
                                 severity=Severity.CRITICAL, score=1.0, start_us=_us(T0),
                                 end_us=None, evidence={}, group=None), True),
            "other_energy": (Anomaly(tenant=w.b, device_id="meter-9", kind=Kind.SPIKE,
                                     severity=Severity.WARNING, score=0.5, start_us=_us(T0),
                                     end_us=None, evidence={}, group=None), False),
            "other_care": (Anomaly(tenant=w.b, device_id="care-bed-9", kind=Kind.FALL,
                                   severity=Severity.CRITICAL, score=1.0, start_us=_us(T0),
                                   end_us=None, evidence={}, group=None), True),
        }
        with conn.transaction():
            record_transitions(conn=conn, transitions=[Transition(a, "open") for a, _ in
                                                       made.values()],
                               care=[c for _, c in made.values()])
        anomalies = {k: a.id for k, (a, _) in made.items()}

    def register_devices(tenant: str, specs: Any) -> list[DeviceCredentials]:
        with psycopg.connect(db_url, autocommit=True) as conn:
            return register(conn, [(tenant, s) for s in specs], dynsec=None)

    app = create_app(db_url, register_devices=register_devices, sse_heartbeat_s=0.2)
    with serve(app) as url, httpx.Client(base_url=url, timeout=10) as http, \
            psycopg.connect(db_url, autocommit=True) as conn:
        yield Matrix(w, url, db_url, anomalies, communes, http, conn)


# -- building each cell's request -------------------------------------------------------------------

DEVICES = {"own_energy": "meter-1", "own_care": "care-bed-1", "other_energy": "meter-9",
           "other_care": "care-bed-9"}
ALERTS = {"own_energy": "spike", "own_care": "fall", "other_energy": "b_spike",
          "other_care": "b_fall"}


def _tenant_of(m: Matrix, target: str) -> str:
    return m.world.a if target.startswith("own") else m.world.b


def _fresh_alert(m: Matrix, target: str) -> int:
    care = target.endswith("care")
    return insert_alert(m.conn, tenant=_tenant_of(m, target), kind="fall" if care else "spike",
                        device="care-bed-1" if care else "meter-1", care=care)


def _fresh_token(m: Matrix, target: str) -> int:
    create_token(m.conn, tenant=_tenant_of(m, target), role="opendata", label="to revoke")
    row = m.conn.execute("SELECT max(id) FROM api_tokens").fetchone()
    assert row is not None
    return int(row[0])


def _request(m: Matrix, method: str, path: str, target: str,
             who: str) -> tuple[str, dict[str, str], Any]:
    """The URL path, query and JSON body of one cell."""
    params: dict[str, str] = {}
    body: Any = None
    if "{" not in path or path.startswith("/v1/areas"):
        # Lists: another tenant is asked for by name (the all-tenants admin names its own too).
        if target == "other" or who == "root":
            params["tenant"] = _tenant_of(m, target)
    if "{device_id}" in path:
        path = path.replace("{device_id}", DEVICES[target])
        if who == "root":
            params["tenant"] = _tenant_of(m, target)
    if "{anomaly_id}" in path:
        path = path.replace("{anomaly_id}", m.anomalies[target])
    if "{alert_id:int}" in path:
        alert_id = _fresh_alert(m, target) if method == "POST" else m.world.ids[ALERTS[target]]
        path = path.replace("{alert_id:int}", str(alert_id))
    if "{token_id:int}" in path:
        path = path.replace("{token_id:int}", str(_fresh_token(m, target)))
    if path.startswith("/v1/areas"):
        path = path.replace("{level}", "commune").replace("{name}", m.communes[target])
        params["bucket"] = "1d"
    if path == "/v1/devices" and method == "POST":
        body = {"device_id": f"new-{uuid.uuid4().hex[:8]}", "type": "meter"}
    if path.endswith("/comments"):
        body = {"text": "on my way"}
    if path == "/v1/savings/projects" and method == "POST":
        meter = "meter-1" if target == "own" else "meter-9"
        body = {"name": f"p-{uuid.uuid4().hex[:8]}", "meter": meter,
                "baseline_start": "2026-01-01", "baseline_end": "2026-06-01",
                "reporting_start": "2026-07-01", "temperature_station": "station-1"}
    if path == "/v1/savings/report":
        params.update(commune=m.communes[target], month="2026-11")
    if path.startswith("/ngsi-ld/"):
        if "{entity_id}" in path:
            lamp = "lamp-1" if target == "own" else "lamp-9"
            path = path.replace("{entity_id}", f"urn:ngsi-ld:Streetlight:{lamp}")
            if who == "root":
                params["tenant"] = _tenant_of(m, target)
        else:
            params["type"] = "Streetlight"
    if path == "/v1/savings/retrofit":
        params["lamp_cost_eur"] = "400"
    if path == "/v1/peaks":
        params.update(area="commune", name=m.communes[target])
    path, params, body = _control_request(m, method, path, target, who, params, body)
    return path, params, body


def _control_request(m: Matrix, method: str, path: str, target: str, who: str,
                     params: dict[str, str], body: Any) -> tuple[str, dict[str, str], Any]:
    """Commands, lighting rules and peak windows: a fresh row (or lamp) of the target's tenant."""
    tenant = _tenant_of(m, target)
    lamp = "lamp-1" if tenant == m.world.a else "lamp-9"
    if path.endswith("/commands") and method == "POST":
        body = {"cmd": "dim", "level": 50}
    if "{group_id}" in path:
        path = path.replace("{group_id}", f"commune:{m.communes[target]}")
        if who == "root":
            params["tenant"] = tenant
    if "{command_id:int}" in path:
        command_id = create_command_sync(conn=m.conn, tenant=tenant, target=f"device:{lamp}",
                                         cmd="on", level=None, params={}, devices=[lamp],
                                         issued_by="test")
        path = path.replace("{command_id:int}", str(command_id))
    if path == "/v1/lighting/rules" and method == "POST":
        street = f"rue-{uuid.uuid4().hex[:8]}"  # one rule per street: a fresh street each time
        register(m.conn, [(tenant, DeviceSpec(device_id=f"lamp-{street}", type="streetlight",
                                              meta={"street": street}))], dynsec=None)
        body = {"area": "street", "name": street, "level": 100, "night_level": 20, "hold_s": 60}
    if "{rule_id:int}" in path:
        row = m.conn.execute(
            "INSERT INTO lighting_rules (tenant_id, area, name, level, night_level, hold_s, "
            "created_by) VALUES (%s, 'street', %s, 100, 20, 60, 'test') RETURNING id",
            (tenant, f"rue-{uuid.uuid4().hex[:8]}")).fetchone()
        assert row is not None
        path = path.replace("{rule_id:int}", str(row[0]))
    if path == "/v1/peak-windows" and method == "POST":
        body = {"area": "commune", "name": m.communes[target], "level": 50,
                "start": "2030-01-01T18:00:00Z", "end": "2030-01-01T19:00:00Z"}
    if "{window_id:int}" in path:
        row = m.conn.execute(
            "INSERT INTO peak_windows (tenant_id, area, name, start_ts, end_ts, level, created_by) "
            "VALUES (%s, 'commune', %s, now() - interval '2 hours', now() - interval '1 hour', "
            "50, 'test') RETURNING id", (tenant, m.communes[target])).fetchone()
        assert row is not None
        path = path.replace("{window_id:int}", str(row[0]))
    return path, params, body


def _expected(rule: Rule, who: str, target: str, is_list: bool) -> str:
    """ok (2xx), empty (2xx, nothing), deny, or scoped (denied, or 2xx with nothing of the other
    tenant: some lists answer with the caller's own tenant)."""
    if rule.roles == PUBLIC:
        return "ok"
    if who in ("expired", "revoked", "anonymous"):
        return "unauthenticated"
    role = "admin" if who == "root" else who
    if role in rule.empty_for:
        return "empty"
    if role in rule.hidden_for:
        return "deny"
    if role not in rule.roles:
        return "forbidden"
    if rule.care_denied and target.endswith("care"):
        return "deny"
    if target.startswith("other") and who != "root":
        return "scoped" if is_list else "deny"
    if rule.care_scoped and (role == "energy_manager" and target.endswith("care")
                             or role == "care_coordinator" and target.endswith("energy")):
        return "deny"
    return "ok"


def _headers(m: Matrix, who: str) -> dict[str, str]:
    return {} if who == "anonymous" else m.world.headers(who)


def _call(m: Matrix, method: str, path: str, params: dict[str, str], body: Any,
          who: str) -> tuple[int, str]:
    """Status and body; a stream is read for a moment from its first event (Last-Event-ID 0)."""
    headers = _headers(m, who)
    if path == "/v1/alerts/stream":
        with m.http.stream("GET", path, params=params,
                           headers={**headers, "Last-Event-ID": "0"}) as r:
            if r.status_code != 200:
                r.read()
                return r.status_code, r.text
            lines: list[str] = []
            deadline = time.monotonic() + 0.8
            for line in r.iter_lines():  # heartbeats every 0.2 s keep this loop turning
                lines.append(line)
                if time.monotonic() > deadline:
                    break
            return 200, "\n".join(lines)
    r = m.http.request(method, path, params=params, json=body, headers=headers)
    return r.status_code, r.text


def _care_reads(m: Matrix, who: str) -> int:
    if who not in m.world.token_ids:
        return 0
    row = m.conn.execute("SELECT count(*) FROM care_access_log WHERE token_id = %s",
                         (m.world.token_ids[who],)).fetchone()
    return int(row[0]) if row else 0


CARE_TYPES = tuple(f'"{t.value}"' for t in DeviceType if t.is_care)


def _carries_care(text: str) -> bool:
    """Care data in an answer: a care device of the world (ids `care-…`) or a care device type."""
    return "care-" in text or any(t in text for t in CARE_TYPES)


CELLS = [(method, path, who) for (method, path), who in itertools.product(ROUTES, CALLERS)]


@pytest.mark.parametrize(("method", "path", "who"), CELLS,
                         ids=[f"{m} {p} {w}" for m, p, w in CELLS])
def test_cell(matrix: Matrix, method: str, path: str, who: str) -> None:
    """One endpoint x one caller, on each of its targets: see the module docstring."""
    rule = RULES[(method, path)]
    broken: list[str] = []
    for target in rule.targets:
        url, params, body = _request(matrix, method, path, target, who)
        before = _care_reads(matrix, who)
        status, text = _call(matrix, method, url, params, body, who)
        expect = _expected(rule, who, target, "{" not in path or path.startswith("/v1/areas"))
        where = f"{method} {url} {params} as {who} ({target}): {status} {text[:300]}"
        if expect == "unauthenticated":
            assert status == 401, where
            continue
        if expect == "forbidden":
            assert status == 403, where
            continue
        if expect == "deny":
            assert status == 404, where
            continue
        if expect in ("ok", "empty"):
            assert 200 <= status < 300, where
        if expect == "scoped":
            assert status in (404,) or 200 <= status < 300, where
        if not 200 <= status < 300 or rule.roles == PUBLIC:
            continue
        if expect == "empty":
            assert json.loads(text)["items"] == [], where
        if who != "root":
            assert matrix.world.b not in text, f"another tenant's data: {where}"
        if who in ("energy_manager", "opendata"):
            assert not _carries_care(text), f"care data: {where}"
        if _carries_care(text) and url not in NOT_A_CARE_READ:
            if _care_reads(matrix, who) <= before:
                broken.append(where)
    gap = KNOWN_GAPS.get((method, path, who))
    if gap is not None:
        assert broken, f"fixed? drop it from KNOWN_GAPS: {gap}"
    else:
        assert broken == [], f"care data read without an access-log line: {broken}"


def test_table_covers_each_care_endpoint_for_each_role() -> None:
    """Sanity of the table: every /v1 data route names its roles, and the care rule is on for
    every route returning one device's, anomaly's or alert's data."""
    for (method, path), rule in RULES.items():
        if any(k in path for k in ("{device_id}", "{anomaly_id}", "{alert_id:int}")):
            assert rule.care_scoped and rule.targets == ITEMS, (method, path)
