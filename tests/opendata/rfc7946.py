"""RFC 7946 checks the `geojson` package leaves out (it checks structure and position sizes).

`problems(doc)` lists what breaks the RFC: a `crs` member anywhere (section 4: WGS 84 only),
positions outside longitude [-180, 180] / latitude [-90, 90] (section 3.1.1; the lon, lat order
itself is checked by the tests against the registry), members that change an object's kind (section
7.1), a Feature whose `geometry` or `properties` is missing, an `id` neither string nor number
(section 3.2), a `bbox` of the wrong length (section 5).
"""

from __future__ import annotations

from typing import Any

GEOMETRIES = {"Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon",
              "GeometryCollection"}
FORBIDDEN = {  # section 7.1
    "FeatureCollection": {"coordinates", "geometries", "geometry", "properties"},
    "Feature": {"coordinates", "geometries", "features"},
    **{g: {"geometry", "properties", "features"} for g in GEOMETRIES},
}


def _positions(geometry: dict[str, Any]) -> list[list[float]]:
    coords = geometry.get("coordinates")
    depth = {"Point": 0, "MultiPoint": 1, "LineString": 1, "MultiLineString": 2, "Polygon": 2,
             "MultiPolygon": 3}[geometry["type"]]
    items: list[Any] = [coords]
    for _ in range(depth):
        items = [p for item in items for p in item]
    return items


def problems(doc: Any, where: str = "$") -> list[str]:
    """Every RFC 7946 problem of a GeoJSON object and its members (empty: none found)."""
    out: list[str] = []
    if not isinstance(doc, dict):
        return [f"{where}: not an object"]
    if "crs" in doc:
        out.append(f"{where}: a crs member (RFC 7946 section 4: coordinates are WGS 84, no crs)")
    kind = doc.get("type")
    out += [f"{where}: {kind} has a {m!r} member (section 7.1)"
            for m in sorted(FORBIDDEN.get(str(kind), set()) & doc.keys())]
    if "bbox" in doc and (not isinstance(doc["bbox"], list) or len(doc["bbox"]) not in (4, 6)):
        out.append(f"{where}: bbox of {doc['bbox']!r} (section 5)")
    if kind == "FeatureCollection":
        for i, feature in enumerate(doc.get("features", [])):
            out += problems(feature, f"{where}.features[{i}]")
    elif kind == "Feature":
        if "geometry" not in doc or "properties" not in doc:
            out.append(f"{where}: a Feature needs geometry and properties (null allowed)")
        if "id" in doc and not isinstance(doc["id"], (str, int, float)):
            out.append(f"{where}: id {doc['id']!r} is neither a string nor a number (3.2)")
        if doc.get("geometry") is not None:
            out += problems(doc["geometry"], f"{where}.geometry")
    elif kind == "GeometryCollection":
        for i, g in enumerate(doc.get("geometries", [])):
            out += problems(g, f"{where}.geometries[{i}]")
    elif kind in GEOMETRIES:
        for pos in _positions(doc):
            if not (2 <= len(pos) <= 3 and all(isinstance(c, (int, float)) for c in pos)):
                out.append(f"{where}: position {pos!r}")
            elif not (-180 <= pos[0] <= 180 and -90 <= pos[1] <= 90):
                out.append(f"{where}: position {pos!r} outside [lon, lat] WGS 84 ranges")
    else:
        out.append(f"{where}: unknown type {kind!r}")
    return out
