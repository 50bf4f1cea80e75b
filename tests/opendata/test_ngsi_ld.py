"""The NGSI-LD view (issue 17, acceptance 4): entities valid against the Smart Data Models JSON
schemas (vendored under schemas/, `$ref`s resolved locally), NGSI-LD representation rules,
content negotiation, pagination and ProblemDetails errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from maillage.opendata.ngsi_ld import CONTEXT, SDM_CONTEXT, key_values
from tests.opendata.conftest import LAMP_WH, Territory

SCHEMAS = Path(__file__).parent / "schemas"
ENTITIES = "/ngsi-ld/v1/entities"
JSON_LD = "application/ld+json"


def _load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((SCHEMAS / name).read_text())
    return doc


def _validator(model: str) -> Draft7Validator:
    """The model's schema with its common definitions served from the vendored copy."""
    common = _load("common-schema.json")
    registry: Registry[Any] = Registry().with_resource(
        common["$id"], Resource.from_contents(common, default_specification=DRAFT7))
    return Draft7Validator(_load(f"{model}/schema.json"), registry=registry,
                           format_checker=Draft7Validator.FORMAT_CHECKER)


VALIDATORS = {m: _validator(m) for m in ("Streetlight", "StreetlightControlCabinet")}


def _errors(entity: dict[str, Any]) -> list[str]:
    body = {k: v for k, v in entity.items() if k != "@context"}
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in VALIDATORS[entity["type"]].iter_errors(body)]


def _query(t: Territory, who: str = "opendata", headers: dict[str, str] | None = None,
           **params: Any) -> Any:
    return t.client.get(ENTITIES, params=params, headers={**t.headers(who), **(headers or {})})


def test_every_entity_validates_against_its_smart_data_model(territory: Territory) -> None:
    """Streetlights and the cabinet, simplified form, against the vendored schemas."""
    r = _query(territory, type="Streetlight,StreetlightControlCabinet", options="keyValues")
    assert r.status_code == 200, r.text
    entities = r.json()
    assert sorted(e["type"] for e in entities) == ["Streetlight"] * 4 + [
        "StreetlightControlCabinet"]
    for entity in entities:
        assert _errors(entity) == [], entity["id"]


def test_the_schema_check_can_fail() -> None:
    """A status outside the model's enum, a missing location: both reported."""
    entity = {"id": "urn:ngsi-ld:Streetlight:x", "type": "Streetlight", "status": "broken"}
    found = _errors(entity)
    assert any("status" in e for e in found) and any("location" in e for e in found), found


def test_streetlight_state_from_stored_readings(territory: Territory) -> None:
    """powerState, illuminanceLevel, powerConsumption from the latest readings; status from the
    open lamp failure; the cabinet as a Relationship; location [lon, lat]."""
    r = territory.client.get(f"{ENTITIES}/urn:ngsi-ld:Streetlight:lamp-b2",
                             headers=territory.headers("opendata"))
    assert r.status_code == 200, r.text
    e = r.json()
    assert e["id"] == "urn:ngsi-ld:Streetlight:lamp-b2" and e["type"] == "Streetlight"
    assert e["location"] == {"type": "GeoProperty",
                             "value": {"type": "Point", "coordinates": [-1.6802, 48.1102]}}
    assert e["status"] == {"type": "Property", "value": "ok"}
    assert e["powerState"]["value"] == "low" and e["illuminanceLevel"]["value"] == 0.4
    assert e["powerState"]["observedAt"] == "2026-10-10T16:00:00Z"
    assert e["powerConsumption"] == {"type": "Property", "value": 24.0, "unitCode": "WTT",
                                     "observedAt": "2026-10-10T16:00:00Z"}
    assert e["refStreetlightControlCabinet"] == {
        "type": "Relationship", "object": "urn:ngsi-ld:StreetlightControlCabinet:cab-b"}
    assert e["dateServiceStarted"]["value"] == {"@type": "DateTime",
                                                "@value": "2019-03-01T00:00:00Z"}
    failed = territory.client.get(f"{ENTITIES}/urn:ngsi-ld:Streetlight:lamp-h2",
                                  headers=territory.headers("opendata")).json()
    assert failed["status"]["value"] == "defectiveLamp"
    assert "refStreetlightControlCabinet" not in failed  # not on a cabinet
    full = territory.client.get(f"{ENTITIES}/urn:ngsi-ld:Streetlight:lamp-b1",
                                headers=territory.headers("opendata")).json()
    assert full["powerState"]["value"] == "on" and full["illuminanceLevel"]["value"] == 1.0


def test_normalized_form_and_its_simplified_twin(territory: Territory) -> None:
    """Every attribute is a Property (value), GeoProperty or Relationship (object); keyValues is
    the same entity simplified."""
    normal = _query(territory, type="Streetlight,StreetlightControlCabinet").json()
    simple = _query(territory, type="Streetlight,StreetlightControlCabinet",
                    options="keyValues").json()
    assert [key_values(e) for e in normal] == simple
    for entity in normal:
        for name, attr in entity.items():
            if name in ("id", "type"):
                continue
            assert attr["type"] in ("Property", "GeoProperty", "Relationship"), (name, attr)
            assert ("object" if attr["type"] == "Relationship" else "value") in attr, (name, attr)
    cabinet = next(e for e in normal if e["type"] == "StreetlightControlCabinet")
    assert cabinet["totalActivePower"]["value"] == 144.0
    assert cabinet["energyConsumed"] == {"type": "Property", "value": 12.0, "unitCode": "KWH",
                                         "observedAt": "2026-10-10T16:00:00Z"}


def test_content_negotiation(territory: Territory) -> None:
    """application/json: no @context, a JSON-LD Link header; application/ld+json: @context in
    the body, no Link; anything else: 406."""
    plain = _query(territory, type="Streetlight")
    assert plain.headers["content-type"].startswith("application/json")
    assert SDM_CONTEXT in plain.headers["link"]
    assert 'rel="http://www.w3.org/ns/json-ld#context"' in plain.headers["link"]
    assert all("@context" not in e for e in plain.json())
    ld = _query(territory, headers={"Accept": JSON_LD}, type="Streetlight")
    assert ld.headers["content-type"].startswith(JSON_LD) and "link" not in ld.headers
    assert all(e["@context"] == CONTEXT for e in ld.json())
    html = _query(territory, headers={"Accept": "text/html"}, type="Streetlight")
    assert html.status_code == 406 and html.json()["status"] == 406


def test_pagination_and_count(territory: Territory) -> None:
    """limit/offset pages cover every located streetlight once (lamp-b3 has no location: the
    model requires one); count=true gives NGSILD-Results-Count."""
    seen: list[str] = []
    for offset in (0, 3, 6):
        r = _query(territory, type="Streetlight", limit=3, offset=offset, count="true")
        assert r.headers["ngsild-results-count"] == "4"
        seen += [e["id"] for e in r.json()]
    assert seen == [f"urn:ngsi-ld:Streetlight:{d}" for d in sorted(LAMP_WH) if d != "lamp-b3"]
    by_id = _query(territory, id="urn:ngsi-ld:Streetlight:lamp-h1,"
                               "urn:ngsi-ld:StreetlightControlCabinet:lamp-h2").json()
    assert [e["id"] for e in by_id] == ["urn:ngsi-ld:Streetlight:lamp-h1"]
    assert _query(territory, type="Streetlight", limit=0, count="true").json() == []


@pytest.mark.parametrize(("params", "path", "status", "kind"), [
    ({}, "", 400, "BadRequestData"),
    ({"type": "Streetlight", "limit": "5000"}, "", 400, "BadRequestData"),
    ({"type": "Streetlight", "limit": "many"}, "", 400, "BadRequestData"),
    ({"type": "Streetlight", "options": "sideways"}, "", 400, "BadRequestData"),
    ({"type": "Streetlight", "q": "status==ok"}, "", 501, "OperationNotSupported"),
    ({"id": "not a uri"}, "", 400, "BadRequestData"),
    ({}, "/urn:ngsi-ld:Streetlight:nowhere", 404, "ResourceNotFound"),
    ({}, "/urn:ngsi-ld:Streetlight:lamp-x9", 404, "ResourceNotFound"),  # another tenant's
    ({}, "/urn:ngsi-ld:Streetlight:lamp-b3", 404, "ResourceNotFound"),  # no location
    ({}, "/not-a-uri", 400, "BadRequestData"),
])
def test_errors_are_problem_details(territory: Territory, params: dict[str, str], path: str,
                                    status: int, kind: str) -> None:
    r = territory.client.get(ENTITIES + path, params=params, headers=territory.headers("opendata"))
    assert r.status_code == status, r.text
    body = r.json()
    assert body["type"] == f"https://uri.etsi.org/ngsi-ld/errors/{kind}"
    assert body["title"] and body["detail"] and body["status"] == status


def test_access(territory: Territory) -> None:
    """As the exports: no token 401, care coordinators 403 (ProblemDetails too), the tenant of
    an all-tenants admin from NGSILD-Tenant; another tenant's entities never."""
    t = territory
    anonymous = t.client.get(ENTITIES, params={"type": "Streetlight"})
    assert anonymous.status_code == 401 and anonymous.json()["title"] == "Unauthorized"
    assert _query(t, "care_coordinator", type="Streetlight").status_code == 403
    root = _query(t, "root", headers={"NGSILD-Tenant": t.tenant}, type="Streetlight")
    assert root.status_code == 200 and len(root.json()) == 4
    other = _query(t, "opendata", headers={"NGSILD-Tenant": t.other}, type="Streetlight")
    assert other.status_code == 404
    assert all("lamp-x9" not in e["id"] for e in _query(t, type="Streetlight").json())
