"""`maillage lighting rules …`: adaptive-lighting rules (the same as `/v1/lighting/rules`)."""

from __future__ import annotations

from typing import Annotated, Any

import psycopg
import typer

from maillage.cli.common import DataDir, clean_errors, print_json, settings_for
from maillage.db import groups
from maillage.db import lighting_rules as db
from maillage.errors import MaillageError

lighting_app = typer.Typer(help="Lighting control: adaptive rules (docs/telegestion.md).",
                           no_args_is_help=True)
rules_app = typer.Typer(help="Presence raises a street or district, then back to night level.",
                        no_args_is_help=True)
lighting_app.add_typer(rules_app, name="rules")


def _connect(data_dir: DataDir) -> psycopg.Connection:
    from maillage.stack.state import database_url

    return psycopg.connect(database_url(settings_for(data_dir)), autocommit=True)


def _show(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}


@rules_app.command("add")
@clean_errors
def rules_add(tenant: Annotated[str, typer.Option(help="The tenant.")],
              area: Annotated[str, typer.Option(help="street or district")],
              name: Annotated[str, typer.Option(help="The street, or district (<commune>/<name>)")],
              level: Annotated[float, typer.Option(help="Level (%) while someone is there.")],
              night_level: Annotated[float, typer.Option(help="Level (%) otherwise.")],
              hold: Annotated[float, typer.Option(help="Seconds after the last presence.")] = 120,
              data_dir: DataDir = None) -> None:
    """Add a rule; prints it as JSON."""
    if area not in ("street", "district"):
        raise MaillageError("--area: street or district")
    if not (0 <= night_level < level <= 100) or hold <= 0:
        raise MaillageError("need 0 <= --night-level < --level <= 100 and --hold > 0")
    with _connect(data_dir) as conn:
        group = groups.area_group(area, name)
        if not groups.members_sync(conn=conn, tenant=tenant, group_id=group):
            raise MaillageError(f"no streetlight in {group!r} of tenant {tenant!r}")
        row = db.create_rule_sync(conn=conn, tenant=tenant, area=area, name=name, level=level,
                                  night_level=night_level, hold_s=hold, created_by="cli")
    if row is None:
        raise MaillageError(f"{group!r} already has a rule")
    print_json(_show(row))


@rules_app.command("list")
@clean_errors
def rules_list(tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
               data_dir: DataDir = None) -> None:
    """The rules as JSON."""
    with _connect(data_dir) as conn:
        print_json([_show(r) for r in db.list_rules_sync(conn=conn, tenant=tenant)])


@rules_app.command("delete")
@clean_errors
def rules_delete(rule_id: int, data_dir: DataDir = None) -> None:
    """Delete a rule (its lamps keep their current level)."""
    with _connect(data_dir) as conn:
        if not db.delete_rule_sync(conn=conn, rule_id=rule_id):
            raise MaillageError(f"rule {rule_id} not found")
