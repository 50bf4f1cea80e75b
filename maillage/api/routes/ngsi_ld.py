"""A read-only NGSI-LD view of public lighting for FIWARE platforms (`/ngsi-ld/v1/entities`).

`GET /ngsi-ld/v1/entities?type=Streetlight|StreetlightControlCabinet` (comma-separated types or
`id`s, `limit` ≤ 1000, `offset`, `count=true`, `options=keyValues`) and
`GET /ngsi-ld/v1/entities/{id}`. `Accept: application/ld+json` puts `@context` in the body;
`application/json` (the default) sends it as a Link header. Access as for the open data exports
(`routes/opendata.py`); the tenant is the token's, else the `NGSILD-Tenant` header or `tenant`.
Every error is an NGSI-LD ProblemDetails body. Shaping in `maillage.opendata.ngsi_ld`.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from maillage.api.deps import ConnDep
from maillage.api.routes.opendata import opendata_tenant
from maillage.db import opendata as db_opendata
from maillage.opendata import ngsi_ld

MAX_LIMIT = 1000
DEFAULT_LIMIT = 20
UNSUPPORTED = ("q", "attrs", "pick", "omit", "georel", "geometry", "coordinates", "geoproperty",
               "csf", "scopeQ", "lang", "idPattern", "local", "join")
"""Query features of NGSI-LD this read-only view does not implement (501 OperationNotSupported)."""


class ProblemRoute(APIRoute):
    """A route whose errors (its dependencies' too) are NGSI-LD ProblemDetails bodies."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except HTTPException as exc:
                return _problem(exc.status_code, str(exc.detail), exc.headers)
            except RequestValidationError as exc:
                detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                                   for e in exc.errors())
                return _problem(status.HTTP_400_BAD_REQUEST, detail)

        return handle


def _problem(code: int, detail: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(ngsi_ld.problem(code, detail), status_code=code,
                        headers=dict(headers) if headers else None)


router = APIRouter(prefix="/ngsi-ld/v1", tags=["ngsi-ld"], route_class=ProblemRoute)
_bearer = HTTPBearer(auto_error=False)


async def _tenant(conn: ConnDep,
                  creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
                  ngsild_tenant: Annotated[str | None, Header(alias="NGSILD-Tenant")] = None,
                  tenant: Annotated[str | None, Query(description="As NGSILD-Tenant")] = None,
                  ) -> str:
    if ngsild_tenant and tenant and ngsild_tenant != tenant:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "NGSILD-Tenant and tenant disagree")
    return await opendata_tenant(conn, creds, ngsild_tenant or tenant)


TenantDep = Annotated[str, Depends(_tenant)]


def _media(accept: str | None) -> str:
    """application/ld+json or application/json from the Accept header (406 for anything else)."""
    if not accept:
        return "application/json"
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(accept.split(",")):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        if q > 0:
            ranked.append((-q, i, media.lower()))
    for _, _, media in sorted(ranked):
        if media == "application/ld+json":
            return media
        if media in ("application/json", "application/*", "*/*"):
            return "application/json"
    raise HTTPException(status.HTTP_406_NOT_ACCEPTABLE,
                        "this view answers application/json or application/ld+json")


def _options(options: str | None, fmt: str | None) -> bool:
    """True for the simplified (keyValues) representation."""
    chosen = {o.strip() for o in (options or "").split(",") if o.strip()}
    unknown = chosen - {"keyValues", "simplified", "normalized", "sysAttrs"}
    if unknown or fmt not in (None, "keyValues", "simplified", "normalized"):
        raise HTTPException(status.HTTP_400_BAD_REQUEST,
                            f"options/format: unsupported {sorted(unknown) or fmt}")
    return bool(chosen & {"keyValues", "simplified"}) or fmt in ("keyValues", "simplified")


def _shape(rows: list[dict[str, Any]], media: str, simple: bool) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        ent = ngsi_ld.entity(row)
        if simple:
            ent = ngsi_ld.key_values(ent)
        out.append(ngsi_ld.with_context(ent) if media == "application/ld+json" else ent)
    return out


def _headers(media: str) -> dict[str, str]:
    return {} if media == "application/ld+json" else {"Link": ngsi_ld.LINK_HEADER}


@router.get("/entities")
async def query_entities(
    request: Request, conn: ConnDep, tenant: TenantDep,
    type: Annotated[str | None, Query(description="Streetlight, StreetlightControlCabinet "
                                                  "(comma-separated)")] = None,
    id: Annotated[str | None, Query(description="Entity ids (comma-separated URIs)")] = None,
    limit: Annotated[int, Query(ge=0, description=f"At most {MAX_LIMIT}")] = DEFAULT_LIMIT,
    offset: Annotated[int, Query(ge=0)] = 0,
    count: Annotated[bool, Query(description="NGSILD-Results-Count header")] = False,
    options: Annotated[str | None, Query(description="keyValues for the simplified form")] = None,
    format: Annotated[str | None, Query(description="simplified or normalized")] = None,
    accept: Annotated[str | None, Header()] = None,
) -> Response:
    """Streetlights and cabinets of the tenant, ordered by type then id."""
    unsupported = sorted(k for k in request.query_params if k in UNSUPPORTED)
    if unsupported:
        return _problem_not_supported(f"not supported by this read-only view: {unsupported}")
    if type is None and id is None:
        raise HTTPException(status.HTTP_400_BAD_REQUEST,
                            "give type (Streetlight, StreetlightControlCabinet) or id")
    if limit > MAX_LIMIT:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"limit: at most {MAX_LIMIT}")
    media, simple = _media(accept), _options(options, format)
    types = list(ngsi_ld.DEVICE_TYPE)
    if type is not None:
        named = [ngsi_ld.entity_type(t.strip()) for t in type.split(",") if t.strip()]
        types = [t for t in named if t]  # an unknown type has no entity: an empty answer
    wanted: set[str] | None = None
    ids: list[str] | None = None
    if id is not None:
        wanted = {e.strip() for e in id.split(",") if e.strip()}
        bad = sorted(e for e in wanted if not ngsi_ld.is_uri(e))
        if bad:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, f"id: not URIs: {bad}")
        parsed = [p for p in map(ngsi_ld.parse_entity_id, wanted) if p and p[0] in types]
        types = sorted({t for t, _ in parsed})
        ids = sorted({d for _, d in parsed})
    device_types = [ngsi_ld.DEVICE_TYPE[t] for t in types]
    rows = await db_opendata.lighting_entities(conn=conn, tenant=tenant, types=device_types,
                                               ids=ids, limit=limit, offset=offset) \
        if device_types and limit else []
    if wanted is not None:  # an id names its type too: urn:ngsi-ld:Streetlight:X is no cabinet X
        rows = [r for r in rows if ngsi_ld.entity_id(ngsi_ld.NGSI_TYPE[r["type"]],
                                                     r["device_id"]) in wanted]
    headers = _headers(media)
    if count:
        total = await db_opendata.count_lighting_entities(
            conn=conn, tenant=tenant, types=device_types, ids=ids) if device_types else 0
        headers["NGSILD-Results-Count"] = str(total)
    return JSONResponse(_shape(rows, media, simple), media_type=media, headers=headers)


def _problem_not_supported(detail: str) -> JSONResponse:
    body = ngsi_ld.problem(501, detail)
    body["type"] = ngsi_ld.ERROR_BASE + "OperationNotSupported"
    body["title"] = "Operation not supported"
    return JSONResponse(body, status_code=501)


@router.get("/entities/{entity_id}")
async def get_entity(
    entity_id: str, conn: ConnDep, tenant: TenantDep,
    options: Annotated[str | None, Query(description="keyValues for the simplified form")] = None,
    format: Annotated[str | None, Query(description="simplified or normalized")] = None,
    accept: Annotated[str | None, Header()] = None,
) -> Response:
    """One streetlight or cabinet (404 ResourceNotFound otherwise)."""
    if not ngsi_ld.is_uri(entity_id):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"{entity_id!r} is not a URI")
    media, simple = _media(accept), _options(options, format)
    parsed = ngsi_ld.parse_entity_id(entity_id)
    rows = await db_opendata.lighting_entities(
        conn=conn, tenant=tenant, types=[ngsi_ld.DEVICE_TYPE[parsed[0]]], ids=[parsed[1]],
        limit=1, offset=0) if parsed else []
    if not rows:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"entity {entity_id} not found")
    return JSONResponse(_shape(rows, media, simple)[0], media_type=media, headers=_headers(media))
