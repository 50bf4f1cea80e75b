"""`maillage opendata publish|unpublish`: whether a tenant's open data is served without a token.

A tenant's open data (`/v1/opendata/…`, `/ngsi-ld/v1/entities`) always needs an opendata,
energy_manager or admin token, unless the tenant opted in here (docs/opendata.md).
"""

from __future__ import annotations

from typing import Annotated

import psycopg
import typer

from maillage.cli.common import DataDir, clean_errors, print_json, settings_for
from maillage.db.opendata import set_public
from maillage.errors import RegistryError
from maillage.stack.state import database_url

opendata_app = typer.Typer(help="Open data: anonymous publication per tenant.",
                           no_args_is_help=True)
TenantOpt = Annotated[str, typer.Option(help="Tenant id.")]


def _set(tenant: str, public: bool, data_dir: DataDir) -> None:
    with psycopg.connect(database_url(settings_for(data_dir)), autocommit=True) as conn:
        if not set_public(conn=conn, tenant=tenant, public=public):
            raise RegistryError(f"tenant {tenant!r} not found")
    print_json({"tenant": tenant, "opendata_public": public})


@opendata_app.command("publish")
@clean_errors
def opendata_publish(tenant: TenantOpt, data_dir: DataDir = None) -> None:
    """Serve this tenant's open data to anyone (no token needed; `tenant=` names it)."""
    _set(tenant, True, data_dir)


@opendata_app.command("unpublish")
@clean_errors
def opendata_unpublish(tenant: TenantOpt, data_dir: DataDir = None) -> None:
    """Serve this tenant's open data to token holders only (the default)."""
    _set(tenant, False, data_dir)
