"""The state file of a running stack (`<data dir>/state.json`): where each part listens."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psutil
from pydantic import BaseModel, Field

from maillage.config import Settings
from maillage.errors import StackError
from maillage.registry.broker_auth import FileAuth
from maillage.registry.secret_files import write_secret
from maillage.stack.mosquitto import ADMIN_USER

STATE_FILE = "state.json"


class StackState(BaseModel):
    """Written by `maillage up` once everything listens; read by every other command."""

    api_url: str | None = None
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 0
    kafka_bootstrap: str = ""
    kafka_kind: str | None = None
    """`apache` or `tansu` when the stack started its own Kafka; None for an external one."""
    kafka_start_s: float | None = None
    """Seconds the embedded Kafka took to start and answer (None for an external one)."""
    database_url: str = ""
    up_pid: int = 0
    pids: dict[str, int] = Field(default_factory=dict)
    embedded: list[str] = Field(default_factory=list)

    def write(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        # 0600: the database URL it holds carries the embedded PostgreSQL's password.
        write_secret(data_dir / STATE_FILE, self.model_dump_json(indent=2))

    def running(self) -> bool:
        """True while the `maillage up` process that wrote this is alive."""
        return self.up_pid > 0 and psutil.pid_exists(self.up_pid)

    def parts_up(self) -> dict[str, bool]:
        """Whether each child process is alive."""
        out: dict[str, bool] = {}
        for name, pid in self.pids.items():
            try:
                out[name] = psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                out[name] = False
        return out


def read_state(data_dir: Path) -> StackState | None:
    """The state file, or None when there is none."""
    path = data_dir / STATE_FILE
    if not path.exists():
        return None
    return StackState.model_validate(json.loads(path.read_text()))


def running_state(settings: Settings) -> StackState:
    """The state of the running stack, or a StackError saying how to start it."""
    state = read_state(settings.data_dir)
    if state is None or not state.running():
        raise StackError(
            f"no running stack found in {settings.data_dir} (start it with `maillage up`, "
            "or pass --data-dir)"
        )
    return state


def database_url(settings: Settings) -> str:
    """MAILLAGE_DATABASE_URL, else the running stack's database."""
    if settings.database_url:
        return settings.database_url
    return running_state(settings).database_url


def kafka_bootstrap(settings: Settings) -> str:
    """MAILLAGE_KAFKA_BOOTSTRAP, else the running stack's broker."""
    if settings.kafka_bootstrap:
        return settings.kafka_bootstrap
    return running_state(settings).kafka_bootstrap


def gateway_client_id(instance: int | None) -> str:
    """The gateway's MQTT client id: stable across restarts (its persistent session resumes) and
    distinct per replica: the instance number when given, else the host's name (a container's)."""
    suffix = str(instance) if instance is not None else socket.gethostname()
    return f"maillage-gateway-{suffix}"


def kafka_idempotence(settings: Settings) -> bool:
    """Whether producers ask Kafka for idempotence: MAILLAGE_KAFKA_IDEMPOTENCE when set, else on
    for Apache Kafka (external or embedded) and off for the embedded Tansu, which lacks it."""
    if settings.kafka_idempotence is not None:
        return settings.kafka_idempotence
    if settings.kafka_bootstrap:
        return True
    return running_state(settings).kafka_kind != "tansu"


def kafka_fetch_wait_ms(settings: Settings) -> int:
    """How long a consumer's fetch may wait at the broker for a first record: 500 ms on Apache
    Kafka (a long poll, answered as soon as a record arrives: an idle consumer asks twice a second
    instead of twenty times), 50 ms on the embedded Tansu, which answers only when the wait ends."""
    if settings.kafka_bootstrap or running_state(settings).kafka_kind != "tansu":
        return 500
    return 50


def _mqtt_url(settings: Settings) -> tuple[str, int, str | None, str | None] | None:
    if not settings.mqtt_url:
        return None
    url = urlsplit(settings.mqtt_url)
    if url.scheme not in ("mqtt", "tcp") or not url.hostname:
        raise StackError(f"MAILLAGE_MQTT_URL must look like mqtt://user:password@host:1883, "
                         f"not {settings.mqtt_url!r}")
    return url.hostname, url.port or 1883, unquote(url.username or "") or None, unquote(url.password or "") or None


def mqtt_endpoint(settings: Settings) -> tuple[str, int]:
    """host and port of the MQTT broker."""
    given = _mqtt_url(settings)
    if given is not None:
        return given[0], given[1]
    state = running_state(settings)
    return state.mqtt_host, state.mqtt_port


def mqtt_admin(settings: Settings) -> tuple[str, int, str, str]:
    """host, port, admin user and password of the broker's dynamic-security control."""
    given = _mqtt_url(settings)
    if given is not None:
        host, port, user, password = given
        if not password:
            raise StackError("MAILLAGE_MQTT_URL has no admin password")
        return host, port, user or ADMIN_USER, password
    state = running_state(settings)
    return state.mqtt_host, state.mqtt_port, ADMIN_USER, _credentials(settings)["admin_password"]


def mqtt_gateway_password(settings: Settings) -> str:
    """The gateway service account's password."""
    if settings.mqtt_gateway_password:
        return settings.mqtt_gateway_password
    return _credentials(settings)["gateway_password"]


def _credentials(settings: Settings) -> dict[str, str]:
    creds_file = settings.data_dir / "mosquitto" / "credentials.json"
    if not creds_file.exists():
        raise StackError(f"no broker credentials in {creds_file}; set MAILLAGE_MQTT_URL and "
                         "MAILLAGE_MQTT_GATEWAY_PASSWORD for an external broker")
    return dict(json.loads(creds_file.read_text()))


def file_auth(settings: Settings) -> FileAuth | None:
    """The embedded broker's device-credential files, or None for an external broker (dynsec)."""
    if settings.mqtt_url:
        return None
    state = running_state(settings)
    pid = state.pids.get("mosquitto")
    if not pid:
        return None
    return FileAuth(settings.data_dir / "mosquitto", pid, state.mqtt_host, state.mqtt_port)
