"""`maillage dashboards build|publish|reader`: Grafana dashboards as code (docs/dashboards.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import psycopg
import typer

from maillage.cli.common import DataDir, clean_errors, fail, print_json, settings_for

dashboards_app = typer.Typer(help="Grafana dashboards as code: build the JSON, publish it.",
                             no_args_is_help=True)

DEFAULT_OUT = Path("deploy/grafana/provisioning")


@dashboards_app.command("build")
@clean_errors
def dashboards_build(out: Annotated[Path, typer.Option(
        "--out", help="Provisioning folder to write (datasources/, dashboards/).")] = DEFAULT_OUT,
                     json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Write every dashboard's JSON and the Grafana provisioning files under --out."""
    from maillage.dashboards.build import provisioning_files, write

    settings_for(None)
    changed = write(out)
    files = sorted(str(out / rel) for rel in provisioning_files())
    if json:
        print_json({"out": str(out), "files": files, "changed": [str(p) for p in changed]})
    else:
        typer.echo(f"{len(files)} files under {out}, {len(changed)} changed")


@dashboards_app.command("publish")
@clean_errors
def dashboards_publish(
        url: Annotated[str, typer.Option(help="Grafana's base URL, e.g. http://localhost:3000")],
        token: Annotated[str, typer.Option(
            envvar="GRAFANA_TOKEN", help="A service-account token (Editor or Admin); $GRAFANA_TOKEN.")],
        db_host: Annotated[str, typer.Option(
            help="host:port of PostgreSQL as Grafana reaches it.")] = "timescaledb:5432",
        db_name: Annotated[str, typer.Option(help="Database name.")] = "maillage",
        db_user: Annotated[str, typer.Option(help="Role the data source logs in with.")] = "grafana_reader",
        db_password: Annotated[str | None, typer.Option(
            envvar="MAILLAGE_GRAFANA_DB_PASSWORD",
            help="That role's password (sent on creation or change); $MAILLAGE_GRAFANA_DB_PASSWORD.")] = None,
        timescaledb: Annotated[bool, typer.Option(
            "--timescaledb/--no-timescaledb",
            help="Whether the database runs TimescaleDB ($__timeGroup becomes time_bucket).")] = True,
        rotate_password: Annotated[bool, typer.Option(
            "--rotate-password", help="Send the password even when nothing else changed.")] = False,
        json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Create or update the data source, the folder and the dashboards; a second run writes nothing."""
    from maillage.dashboards.build import dashboards, datasource
    from maillage.dashboards.publish import connect, publish

    settings_for(None)
    if not url.startswith(("http://", "https://")):
        fail(f"--url must start with http:// or https://, not {url!r}")
    report = publish(connect(url, token),
                     datasource=datasource(url=db_host, database=db_name, user=db_user,
                                           timescaledb=timescaledb),
                     dashboards=dashboards(), password=db_password, rotate_password=rotate_password)
    if json:
        print_json(report.as_dict())
    else:
        typer.echo(f"created {len(report.created)}, updated {len(report.updated)}, "
                   f"unchanged {len(report.unchanged)}")


@dashboards_app.command("reader")
@clean_errors
def dashboards_reader(
        role: Annotated[str, typer.Option(help="Login role to create, e.g. grafana_vitre.")],
        tenant: Annotated[str, typer.Option(help="The tenant it reads, or '*' for every tenant.")],
        password: Annotated[str, typer.Option(
            envvar="MAILLAGE_GRAFANA_READER_PASSWORD", prompt=True, hide_input=True,
            help="Its password; $MAILLAGE_GRAFANA_READER_PASSWORD, else asked.")],
        data_dir: DataDir = None) -> None:
    """A database role for one tenant's Grafana data source: it reads that tenant's rows only."""
    from maillage.db.dashboards import add_reader
    from maillage.stack.state import database_url

    settings = settings_for(data_dir)
    with psycopg.connect(database_url(settings)) as conn:
        try:
            add_reader(conn=conn, role=role, tenant=None if tenant == "*" else tenant, password=password)
        except ValueError as exc:
            fail(str(exc))
    typer.echo(f"role {role} reads {'every tenant' if tenant == '*' else tenant}")
