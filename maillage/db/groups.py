"""Groups of lamps a command can target, derived from the registry (no table of their own).

Group ids: `cabinet:<cabinet device id>` (the streetlights whose `meta.cabinet` names it),
`street:<name>` (`meta.street`, else the site), `district:<name>` or `district:<commune>/<name>`
(district names repeat across communes), `commune:<name>`, and `all` (every streetlight of the
tenant). Only streetlights are members: a cabinet is commanded by its device id.
"""

from __future__ import annotations

from typing import Any

import psycopg

KINDS = ("cabinet", "street", "district", "commune", "all")

_MEMBERS = (
    "SELECT device_id FROM devices WHERE tenant_id = %(tenant)s AND type = 'streetlight' AND "
    "CASE %(kind)s "
    " WHEN 'cabinet' THEN meta->>'cabinet' = %(name)s "
    " WHEN 'street' THEN coalesce(meta->>'street', site) = %(name)s "
    " WHEN 'district' THEN district = %(name)s "
    "   AND (%(commune)s::text IS NULL OR commune = %(commune)s) "
    " WHEN 'commune' THEN commune = %(commune)s "
    " WHEN 'all' THEN true ELSE false END "
    "ORDER BY device_id")


class GroupError(ValueError):
    """A group id that is not one of the forms above."""


def parse(group_id: str) -> dict[str, Any]:
    """The query parameters of a group id (raises GroupError)."""
    if group_id == "all":
        return {"kind": "all", "name": None, "commune": None}
    kind, sep, name = group_id.partition(":")
    if not sep or kind not in KINDS or kind == "all" or not name.strip():
        raise GroupError(f"group id {group_id[:80]!r}: one of cabinet:<id>, street:<name>, "
                         "district:<name>, district:<commune>/<name>, commune:<name>, all")
    commune = None
    if kind == "district" and "/" in name:
        commune, name = name.split("/", 1)
    if kind == "commune":
        commune = name
    return {"kind": kind, "name": name, "commune": commune}


def area_group(area: str, name: str | None) -> str:
    """The group id of a rule's or a peak window's area (`tenant` is every lamp: `all`)."""
    return "all" if area == "tenant" else f"{area}:{name}"


async def members(*, conn: psycopg.AsyncConnection, tenant: str, group_id: str) -> list[str]:
    """The streetlights of a group, by device id (empty when none)."""
    cur = await conn.execute(_MEMBERS, {"tenant": tenant, **parse(group_id)})
    return [r[0] for r in await cur.fetchall()]


def members_sync(*, conn: psycopg.Connection, tenant: str, group_id: str) -> list[str]:
    """`members` for the processors (synchronous)."""
    return [r[0] for r in conn.execute(_MEMBERS, {"tenant": tenant, **parse(group_id)}).fetchall()]
