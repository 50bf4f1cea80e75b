"""Shaping of the read-only NGSI-LD view: streetlights and cabinets as Smart Data Models entities.

Entities follow `dataModel.Streetlighting` (`Streetlight`, `StreetlightControlCabinet`); ids are
`urn:ngsi-ld:<Type>:<device_id>` within the caller's tenant (NGSI-LD tenant). Values come from the
registry and the latest stored readings; mapping in docs/opendata.md. `entity` builds the
normalized form, `key_values` the simplified one (`options=keyValues`), which is what the Smart
Data Models' JSON schemas describe.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

CORE_CONTEXT = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
SDM_CONTEXT = ("https://raw.githubusercontent.com/smart-data-models/dataModel.Streetlighting/"
               "master/context.jsonld")
CONTEXT: list[str] = [SDM_CONTEXT, CORE_CONTEXT]
LINK_HEADER = (f'<{SDM_CONTEXT}>; rel="http://www.w3.org/ns/json-ld#context"; '
               'type="application/ld+json"')

DEVICE_TYPE = {"Streetlight": "streetlight", "StreetlightControlCabinet": "lighting_cabinet"}
"""NGSI-LD entity type -> maillage device type."""
NGSI_TYPE = {v: k for k, v in DEVICE_TYPE.items()}
_SDM_IRI = "https://smartdatamodels.org/dataModel.Streetlighting/"

ERROR_BASE = "https://uri.etsi.org/ngsi-ld/errors/"
ERROR_TYPES = {400: "BadRequestData", 404: "ResourceNotFound", 422: "BadRequestData"}
STATUS_TITLES = {400: "Bad request data", 401: "Unauthorized", 403: "Forbidden",
                 404: "Resource not found", 406: "Not acceptable", 422: "Bad request data"}


def entity_type(name: str) -> str | None:
    """An entity type as the query names it (short name or Smart Data Models IRI), else None."""
    short = name.removeprefix(_SDM_IRI)
    return short if short in DEVICE_TYPE else None


def entity_id(ngsi_type: str, device_id: str) -> str:
    return f"urn:ngsi-ld:{ngsi_type}:{device_id}"


def parse_entity_id(eid: str) -> tuple[str, str] | None:
    """(NGSI-LD type, device id) of one of our entity ids; None for any other URI."""
    parts = eid.split(":", 3)
    if len(parts) != 4 or parts[0] != "urn" or parts[1] != "ngsi-ld":
        return None
    if parts[2] not in DEVICE_TYPE or not parts[3]:
        return None
    return parts[2], parts[3]


def is_uri(text: str) -> bool:
    """NGSI-LD ids are URIs: a scheme, a colon, something after it."""
    scheme, sep, rest = text.partition(":")
    return bool(sep and rest and scheme[:1].isalpha()
                and all(c.isalnum() or c in "+-." for c in scheme))


def problem(status: int, detail: str) -> dict[str, Any]:
    """An NGSI-LD ProblemDetails body (RFC 7807) for an HTTP status."""
    kind = ERROR_TYPES.get(status)
    return {"type": ERROR_BASE + kind if kind else "about:blank",
            "title": STATUS_TITLES.get(status, "Error"), "status": status, "detail": detail}


def _ts(value: Any) -> str:
    at = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _prop(value: Any, *, observed: Any = None, unit: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "Property", "value": value}
    if observed is not None:
        out["observedAt"] = _ts(observed)
    if unit:
        out["unitCode"] = unit
    return out


def _common(row: dict[str, Any], ngsi_type: str) -> dict[str, Any]:
    ent: dict[str, Any] = {"id": entity_id(ngsi_type, row["device_id"]), "type": ngsi_type}
    if row["lat"] is not None and row["lon"] is not None:
        ent["location"] = {"type": "GeoProperty", "value": {
            "type": "Point", "coordinates": [float(row["lon"]), float(row["lat"])]}}
    address = {k: v for k, v in (("streetAddress", row["street"]),
                                 ("addressLocality", row["commune"]),
                                 ("district", row["district"])) if v}
    if address:
        ent["address"] = _prop({**address, "addressCountry": "FR"})
    if row["installed_at"] is not None:
        ent["dateServiceStarted"] = _prop({"@type": "DateTime", "@value": _ts(row["installed_at"])})
    return ent


def _streetlight(row: dict[str, Any]) -> dict[str, Any]:
    ent = _common(row, "Streetlight")
    last: dict[str, list[Any]] = row["last"] or {}
    ent["status"] = _prop("defectiveLamp" if row["lamp_failure"] else "ok")
    if "lamp_on" in last:
        on, at = last["lamp_on"]
        level = last.get("dimming_pct", [100.0, at])[0]
        state = "off" if not on else ("low" if level < 100 else "on")
        ent["powerState"] = _prop(state, observed=at)
        ent["illuminanceLevel"] = _prop(round(min(max(level, 0.0), 100.0) / 100.0, 4) if on else 0.0,
                                        observed=at)
    if "lamp_power_w" in last:
        ent["powerConsumption"] = _prop(last["lamp_power_w"][0], observed=last["lamp_power_w"][1],
                                        unit="WTT")
    if row["nominal_power_w"] is not None:
        ent["powerRating"] = _prop(row["nominal_power_w"], unit="WTT")
    if row["cabinet"]:
        ent["refStreetlightControlCabinet"] = {
            "type": "Relationship", "object": entity_id("StreetlightControlCabinet", row["cabinet"])}
        ent["controllingMethod"] = _prop("group")
    return ent


def _cabinet(row: dict[str, Any]) -> dict[str, Any]:
    ent = _common(row, "StreetlightControlCabinet")
    last: dict[str, list[Any]] = row["last"] or {}
    # The lamps a cabinet feeds form one group (a circuit), named after the cabinet.
    ent["refStreetlightGroup"] = _prop([entity_id("StreetlightGroup", row["device_id"])])
    ent["workingMode"] = _prop("automatic")  # astronomical clock and the commune's night policy
    if "active_power_w" in last:
        ent["totalActivePower"] = _prop(max(last["active_power_w"][0], 0.0),
                                        observed=last["active_power_w"][1], unit="WTT")
    if "energy_import_wh" in last:
        ent["energyConsumed"] = _prop(round(max(last["energy_import_wh"][0], 0.0) / 1000.0, 3),
                                      observed=last["energy_import_wh"][1], unit="KWH")
    return ent


def entity(row: dict[str, Any]) -> dict[str, Any]:
    """The normalized NGSI-LD entity of a row of `db.opendata.lighting_entities`."""
    return _streetlight(row) if row["type"] == "streetlight" else _cabinet(row)


def key_values(ent: dict[str, Any]) -> dict[str, Any]:
    """The simplified (keyValues) form of a normalized entity."""
    out: dict[str, Any] = {}
    for name, attr in ent.items():
        if not isinstance(attr, dict):
            out[name] = attr
        elif attr.get("type") == "Relationship":
            out[name] = attr["object"]
        else:
            value = attr.get("value")
            if isinstance(value, dict) and "@value" in value:
                value = value["@value"]
            out[name] = value
    return out


def with_context(ent: dict[str, Any]) -> dict[str, Any]:
    """The entity as `application/ld+json` carries it: its own `@context` member."""
    return {**ent, "@context": CONTEXT}
