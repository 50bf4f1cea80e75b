"""`maillage tokens create|list|revoke`: API tokens, their expiry, last use and revocation.

Default lifetime of a new token: `MAILLAGE_TOKEN_TTL_DAYS` (`Settings.token_ttl_days`, 90).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Any

import psycopg
import typer

from maillage.cli.common import DataDir, clean_errors, print_json, settings_for
from maillage.registry.tokens import create_token, list_tokens, revoke_token
from maillage.stack.state import database_url

log = logging.getLogger(__name__)

tokens_app = typer.Typer(help="API tokens: create, list, revoke.", no_args_is_help=True)


@tokens_app.command("create")
@clean_errors
def tokens_create(tenant: Annotated[str, typer.Option(help="Tenant id, or '*' (admin only).")],
                  role: Annotated[str, typer.Option(help="admin, energy_manager, care_coordinator, opendata")],
                  label: str | None = None,
                  ttl_days: Annotated[int | None, typer.Option(
                      "--ttl-days", help="Days until it expires; 0: never. Default "
                      "$MAILLAGE_TOKEN_TTL_DAYS, else 90.")] = None,
                  json: Annotated[bool, typer.Option("--json")] = False,
                  data_dir: DataDir = None) -> None:
    """Create an API token (printed once)."""
    settings = settings_for(data_dir)
    ttl = settings.token_ttl_days if ttl_days is None else ttl_days
    with psycopg.connect(database_url(settings)) as conn:
        token = create_token(conn, tenant=tenant, role=role, label=label, ttl_days=ttl)
    if json:
        print_json({"token": token, "tenant": tenant, "role": role, "ttl_days": ttl})
    else:
        typer.echo(token)


def _json(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}


@tokens_app.command("list")
@clean_errors
def tokens_list(tenant: Annotated[str | None, typer.Option(
                    help="Only this tenant's tokens ('*': the all-tenants ones).")] = None,
                json: Annotated[bool, typer.Option("--json")] = False,
                data_dir: DataDir = None) -> None:
    """Tokens with role, expiry, last use and revocation (never the secrets)."""
    with psycopg.connect(database_url(settings_for(data_dir))) as conn:
        rows = [_json(r) for r in list_tokens(conn, tenant=tenant)]
    if json:
        print_json({"items": rows})
        return
    for r in rows:
        state = "revoked" if r["revoked_at"] else "active"
        typer.echo(f"{r['id']:>6}  {r['tenant']:<20} {r['role']:<17} {state:<8} "
                   f"expires {r['expires_at'] or 'never'}  last used {r['last_used_at'] or 'never'}"
                   f"  {r['label'] or ''}")


@tokens_app.command("revoke")
@clean_errors
def tokens_revoke(token_id: Annotated[int, typer.Argument(help="The token's id (tokens list).")],
                  json: Annotated[bool, typer.Option("--json")] = False,
                  data_dir: DataDir = None) -> None:
    """Revoke a token: refused (401) from its next request on."""
    with psycopg.connect(database_url(settings_for(data_dir))) as conn:
        row = _json(revoke_token(conn, token_id=token_id))
    log.info("token %d revoked", token_id)
    if json:
        print_json(row)
    else:
        typer.echo(f"token {token_id} revoked at {row['revoked_at']}")
