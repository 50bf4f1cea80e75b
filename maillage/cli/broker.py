"""`maillage broker`: set up an MQTT broker maillage does not run itself (docker-compose, a VM).

`maillage up` does all of this for its embedded Mosquitto. For another Mosquitto 2 with the
dynamic-security plugin, two idempotent steps, both driven by `MAILLAGE_MQTT_URL`
(`mqtt://ADMIN:PASSWORD@HOST:PORT`) and `MAILLAGE_MQTT_GATEWAY_PASSWORD`:
- `init FILE` (broker stopped): write the plugin's file with the admin account, once, and the TLS
  listener's certificates in `certs/` beside it when missing (`tls` below);
- `accounts` (broker running): create the gateway's role and client, or update its password.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Annotated

import typer

from maillage.cli.common import DataDir, clean_errors, fail, settings_for
from maillage.errors import StackError

broker_app = typer.Typer(help="Set up an external MQTT broker (dynamic-security accounts).",
                         no_args_is_help=True)


@broker_app.command("init")
@clean_errors
def init(dynsec_file: Annotated[Path, typer.Argument(help="The plugin's JSON file (plugin_opt_config_file).")],
         owner: Annotated[str | None, typer.Option(help="uid:gid to give the file (the broker's user).")] = None,
         tls_host: Annotated[list[str] | None, typer.Option(
             help="Names devices reach the broker by, for its TLS certificate (repeat).")] = None,
         data_dir: DataDir = None) -> None:
    """Create the dynamic-security file with the admin account of MAILLAGE_MQTT_URL (once), and
    the TLS certificates in `certs/` beside it when missing."""
    # Imported here: only this command needs it, and every `maillage` process loads the CLI.
    from maillage.stack.state import mqtt_admin
    from maillage.stack.tls import TlsFiles, generate

    settings = settings_for(data_dir)
    certs = dynsec_file.parent / "certs"
    if not TlsFiles.of(certs).exist():
        generate(certs, tls_host or ["mosquitto", "localhost", "127.0.0.1"], owner=_ids(owner))
        typer.echo(f"wrote the TLS listener's certificates in {certs} (devices trust ca.crt)")
    if dynsec_file.exists():
        typer.echo(f"{dynsec_file} exists: left as it is")
        return
    _, _, user, password = mqtt_admin(settings)
    if shutil.which("mosquitto_ctrl") is None:
        fail("mosquitto_ctrl is not installed (Debian package mosquitto-clients)")
    dynsec_file.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mosquitto_ctrl", "dynsec", "init", str(dynsec_file), user, password],
                          capture_output=True, text=True)
    if done.returncode != 0:
        fail(f"mosquitto_ctrl could not write {dynsec_file}: {done.stderr.strip() or done.stdout.strip()}")
    if owner:
        uid, _, gid = owner.partition(":")
        os.chown(dynsec_file, int(uid), int(gid or uid))
    typer.echo(f"wrote {dynsec_file} with the admin account {user}")


@broker_app.command("accounts")
@clean_errors
def accounts(wait: Annotated[float, typer.Option(help="Seconds to wait for the broker.")] = 60.0,
             data_dir: DataDir = None) -> None:
    """Create (or update the password of) the gateway's account through dynamic security."""
    # Imported here: only this command needs it, and every `maillage` process loads the CLI.
    from maillage.registry.dynsec import DynsecClient
    from maillage.stack.mosquitto import GATEWAY_ROLE, GATEWAY_USER, gateway_acl
    from maillage.stack.state import mqtt_admin

    settings = settings_for(data_dir)
    if not settings.mqtt_url:
        fail("MAILLAGE_MQTT_URL is not set: `maillage up` sets up its own broker")
    if not settings.mqtt_gateway_password:
        fail("MAILLAGE_MQTT_GATEWAY_PASSWORD is not set")
    host, port, user, password = mqtt_admin(settings)
    deadline = time.monotonic() + wait
    while True:
        try:
            with DynsecClient(host, port, user, password) as dyn:
                dyn.run([{"command": "createRole", "rolename": GATEWAY_ROLE, "acls": gateway_acl()}],
                        ignore=("already exists",))
                dyn.run([{"command": "createClient", "username": GATEWAY_USER,
                          "password": settings.mqtt_gateway_password,
                          "roles": [{"rolename": GATEWAY_ROLE}]}], ignore=("already exists",))
                dyn.run([{"command": "setClientPassword", "username": GATEWAY_USER,
                          "password": settings.mqtt_gateway_password}])
            break
        except (OSError, StackError) as exc:
            if time.monotonic() > deadline:
                fail(f"could not set up the gateway account on {host}:{port}: {exc}")
            time.sleep(2)
    typer.echo(f"gateway account {GATEWAY_USER} ready on {host}:{port}")


@broker_app.command("tls")
@clean_errors
def tls(out: Annotated[Path, typer.Option(help="Folder for ca.crt, ca.key, server.crt, server.key.")],
        host: Annotated[list[str], typer.Option(
            help="A name or IP address devices connect to (repeat; the first is the subject).")],
        days: Annotated[int, typer.Option(help="Validity of the server certificate.")] = 825,
        owner: Annotated[str | None, typer.Option(help="uid:gid to give the files (the broker's user).")] = None) -> None:
    """Generate a private CA (kept when it exists) and a server certificate for the TLS listener."""
    # Imported here: only this command needs it, and every `maillage` process loads the CLI.
    from maillage.stack.tls import generate

    files = generate(out, host, days=days, owner=_ids(owner))
    typer.echo(f"wrote {files.cert} and {files.key} (CA {files.ca}: give it to the devices)")


def _ids(owner: str | None) -> tuple[int, int] | None:
    """`uid:gid` (or `uid`) as numbers."""
    if not owner:
        return None
    uid, _, gid = owner.partition(":")
    return int(uid), int(gid or uid)
