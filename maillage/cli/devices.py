"""`maillage devices …`: register devices one by one or in bulk, with their MQTT credentials."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import psycopg
import typer

from maillage.cli.common import DataDir, clean_errors, print_json, settings_for
from maillage.config import Settings
from maillage.db.devices import tenant_devices
from maillage.errors import RegistryError
from maillage.registry.models import DeviceCredentials, DeviceSpec
from maillage.registry.secret_files import write_secret

devices_app = typer.Typer(help="Devices and their MQTT credentials.", no_args_is_help=True)


def broker_registrar(settings: Settings) -> Callable[[str, Sequence[DeviceSpec]], list[DeviceCredentials]]:
    """A function registering devices in the database and the broker."""

    def register_one_tenant(tenant: str, specs: Sequence[DeviceSpec]) -> list[DeviceCredentials]:
        return register_everywhere(settings, [(tenant, s) for s in specs])

    return register_one_tenant


def register_everywhere(settings: Settings, items: Sequence[tuple[str, DeviceSpec]]) -> list[DeviceCredentials]:
    """Register devices with broker credentials: the embedded broker's files, else dynsec."""
    # Imported here: only this command needs it, and every `maillage` process loads the CLI.
    from maillage.registry.devices import register
    from maillage.registry.dynsec import DynsecClient
    from maillage.stack.state import database_url, file_auth, mqtt_admin

    broker = file_auth(settings)
    with psycopg.connect(database_url(settings)) as conn:
        if broker is not None:
            return register(conn, items, dynsec=None, broker=broker)
        host, port, user, password = mqtt_admin(settings)
        with DynsecClient(host, port, user, password) as dyn:
            return register(conn, items, dynsec=dyn)


def _meta(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise RegistryError(f"--meta {pair!r}: expected key=value")
        key, value = pair.split("=", 1)
        out[key.strip()] = _scalar(value.strip())
    return out


def _scalar(text: str) -> Any:
    """`k=v` values: numbers and booleans as such, the rest as text."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


@devices_app.command("add")
@clean_errors
def devices_add(
    tenant: Annotated[str, typer.Option(help="Tenant id.")],
    id: Annotated[str, typer.Option("--id", help="Device id, unique in the tenant.")],
    type: Annotated[str, typer.Option("--type", help="meter, streetlight, care_motion, …")],
    lat: float | None = None, lon: float | None = None,
    site: str | None = None, commune: str | None = None, district: str | None = None,
    building: str | None = None, dwelling: str | None = None,
    expected_interval: Annotated[int | None, typer.Option(help="Expected seconds between messages.")] = None,
    meta: Annotated[list[str] | None, typer.Option(help="Metadata key=value (repeatable).")] = None,
    json: Annotated[bool, typer.Option("--json")] = False,
    data_dir: DataDir = None,
) -> None:
    """Register one device and print its MQTT credentials (shown once)."""
    settings = settings_for(data_dir)
    spec = DeviceSpec(device_id=id, type=type, lat=lat, lon=lon, site=site,  # type: ignore[arg-type]  # pydantic parses the str
                      commune=commune, district=district, building=building, dwelling=dwelling,
                      meta=_meta(meta or []), expected_interval_s=expected_interval)
    cred = broker_registrar(settings)(tenant, [spec])[0]
    if json:
        print_json(cred.model_dump())
    else:
        for key, value in cred.model_dump().items():
            typer.echo(f"{key:14} {value}")


@devices_app.command("import")
@clean_errors
def devices_import(
    file: Annotated[Path, typer.Argument(help="CSV or GeoJSON file of devices.", exists=True,
                                         dir_okay=False)],
    tenant: Annotated[str | None, typer.Option(help="Tenant for rows without a tenant column.")] = None,
    credentials_out: Annotated[Path | None, typer.Option(help="Write the MQTT credentials (CSV) here.")] = None,
    data_dir: DataDir = None,
) -> None:
    """Bulk registration from CSV or GeoJSON: all rows or none."""
    # Imported here: only this command needs it, and every `maillage` process loads the CLI.
    from maillage.registry.importer import load_devices

    settings = settings_for(data_dir)
    items = load_devices(file, default_tenant=tenant)
    creds = register_everywhere(settings, items)
    if credentials_out is not None:
        out = io.StringIO(newline="")
        w = csv.writer(out)
        w.writerow(["tenant", "device_id", "mqtt_username", "mqtt_password", "topic_prefix"])
        for c in creds:
            w.writerow([c.tenant, c.device_id, c.mqtt_username, c.mqtt_password, c.topic_prefix])
        write_secret(credentials_out, out.getvalue())  # 0600 from creation: it holds passwords
    typer.echo(f"imported {len(creds)} devices"
               + (f"; credentials in {credentials_out}" if credentials_out else ""))


@devices_app.command("list")
@clean_errors
def devices_list(tenant: str, data_dir: DataDir = None) -> None:
    """List a tenant's devices as JSON."""
    # Imported here: only this command needs it, and every `maillage` process loads the CLI.
    from maillage.stack.state import database_url

    with psycopg.connect(database_url(settings_for(data_dir))) as conn:
        items = tenant_devices(conn=conn, tenant=tenant)
    print_json({"items": items})
