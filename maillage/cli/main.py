"""The `maillage` command line."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any

import prometheus_client
import psycopg
import typer

from maillage.cli.alerts import alerts_app
from maillage.cli.bench import bench
from maillage.cli.broker import broker_app
from maillage.cli.common import DataDir, clean_errors, print_json, settings_for
from maillage.cli.dashboards import dashboards_app
from maillage.cli.devices import devices_app
from maillage.cli.dlq import dlq_app
from maillage.cli.eval import eval_app
from maillage.cli.lighting import lighting_app
from maillage.cli.opendata import opendata_app
from maillage.cli.savings import savings_app
from maillage.cli.simulate import simulate
from maillage.cli.tokens import tokens_app
from maillage.config import Settings

if TYPE_CHECKING:  # the processors are imported by their commands only: a fast CLI start
    from maillage.processors.runner import Runner

log = logging.getLogger(__name__)

app = typer.Typer(help="maillage: IoT data backbone for smart territories.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
tenants_app = typer.Typer(help="Tenants: communes, EPCI, social landlords.", no_args_is_help=True)
processor_app = typer.Typer(help="Run one async processor (started by `maillage up`).",
                            no_args_is_help=True)
app.add_typer(tenants_app, name="tenants")
app.add_typer(tokens_app, name="tokens")
app.add_typer(devices_app, name="devices")
app.add_typer(processor_app, name="processor")
app.add_typer(dlq_app, name="dlq")
app.add_typer(broker_app, name="broker")
app.add_typer(eval_app, name="eval")
app.add_typer(alerts_app, name="alerts")
app.add_typer(lighting_app, name="lighting")
app.add_typer(savings_app, name="savings")
app.add_typer(opendata_app, name="opendata")
app.add_typer(dashboards_app, name="dashboards")


def _db(settings: Settings) -> str:
    from maillage.stack.state import database_url

    return database_url(settings)


@app.command()
@clean_errors
def up(simulate: Annotated[bool, typer.Option("--simulate", help="Also run the demo territory simulator.")] = False,
       kafka: Annotated[str | None, typer.Option(
           "--kafka", help="Embedded Kafka: apache (durable, Apache Kafka KRaft) or tansu "
           "(in memory). Default: $MAILLAGE_KAFKA_KIND, else the README's.")] = None,
       data_dir: DataDir = None) -> None:
    """Start the whole stack (brokers, database, migrations, gateway, processors, API) until Ctrl-C."""
    from maillage.stack.supervisor import run_up

    settings = settings_for(data_dir, "up")
    if kafka is not None:
        if kafka not in ("apache", "tansu"):
            raise typer.BadParameter("--kafka must be apache or tansu")
        settings = settings.model_copy(update={"kafka_kind": kafka})
    raise typer.Exit(run_up(settings, simulate=simulate, print_fn=typer.echo))


@app.command()
@clean_errors
def status(json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
           data_dir: DataDir = None) -> None:
    """Where each part of the running stack listens, and whether it is up."""
    from maillage.stack.state import read_state

    settings = settings_for(data_dir)
    state = read_state(settings.data_dir)
    running = state is not None and state.running()
    parts = state.parts_up() if state is not None and running else {}
    doc = {
        "running": running,
        "api_url": state.api_url if state else None,
        "mqtt_host": state.mqtt_host if state else None,
        "mqtt_port": state.mqtt_port if state else None,
        "kafka_bootstrap": state.kafka_bootstrap if state else None,
        "kafka_kind": state.kafka_kind if state else None,
        "database_url": state.database_url if state else None,
        "parts": parts,
        "up": {name: ok for name, ok in parts.items()},
    }
    if json:
        print_json(doc)
    else:
        if not running:
            typer.echo(f"not running (data dir {settings.data_dir})")
        for key in ("api_url", "mqtt_host", "mqtt_port", "kafka_bootstrap", "kafka_kind",
                    "database_url"):
            typer.echo(f"{key:16} {doc[key]}")
        for name, ok in parts.items():
            typer.echo(f"{name:16} {'up' if ok else 'DOWN'}")
    if not running:
        raise typer.Exit(1)


@app.command()
@clean_errors
def migrate(target: Annotated[str | None, typer.Option(help="Stop at this migration id.")] = None,
            data_dir: DataDir = None) -> None:
    """Apply the database schema migrations."""
    from maillage.db.migrate import migrate as run

    settings = settings_for(data_dir)
    applied = run(_db(settings), target=target, grafana_password=settings.grafana_db_password)
    typer.echo(f"applied: {', '.join(applied)}" if applied else "schema is up to date")


@tenants_app.command("add")
@clean_errors
def tenants_add(tenant: Annotated[str, typer.Argument(help="Tenant id, e.g. vitre or rennes-metropole.")],
                name: Annotated[str | None, typer.Option(help="Display name.")] = None,
                timezone: str = "Europe/Paris", data_dir: DataDir = None) -> None:
    """Create a tenant."""
    from maillage.registry.tenants import add_tenant

    with psycopg.connect(_db(settings_for(data_dir))) as conn:
        add_tenant(conn, tenant_id=tenant, name=name, timezone=timezone)
    typer.echo(f"tenant {tenant} created")


@tenants_app.command("list")
@clean_errors
def tenants_list(data_dir: DataDir = None) -> None:
    """List tenants as JSON."""
    from maillage.registry.tenants import list_tenants

    with psycopg.connect(_db(settings_for(data_dir))) as conn:
        print_json({"items": list_tenants(conn)})


def _serve(coro_factory: Callable[[asyncio.Event], Awaitable[None]], component: str,
           settings: Settings) -> None:
    """Run an async service until SIGTERM/SIGINT; its Prometheus metrics on
    `MAILLAGE_METRICS_PORT` when set (a container's own /metrics, as docker-compose runs them)."""
    if settings.metrics_port:
        prometheus_client.start_http_server(settings.metrics_port, addr=settings.metrics_host)
        log.info("%s: Prometheus metrics on %s:%d/metrics", component, settings.metrics_host,
                 settings.metrics_port)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await coro_factory(stop)

    asyncio.run(main())


@app.command()
@clean_errors
def gateway(instance: Annotated[int | None, typer.Option(
                help="Instance number, the MQTT client id's suffix (default: this host's name, "
                "so replicas of a container get distinct ids).")] = None,
            data_dir: DataDir = None) -> None:
    """Run one ingest gateway process (MQTT -> Kafka)."""
    from datetime import timedelta

    from maillage.ingest.gateway import Gateway, GatewayConfig
    from maillage.stack.mosquitto import GATEWAY_USER
    from maillage.stack.state import (
        database_url,
        gateway_client_id,
        kafka_bootstrap,
        kafka_idempotence,
        mqtt_endpoint,
        mqtt_gateway_password,
    )

    settings = settings_for(data_dir, "gateway" if instance is None else f"gateway-{instance}")
    host, port = mqtt_endpoint(settings)
    config = GatewayConfig(
        mqtt_host=host, mqtt_port=port, mqtt_username=GATEWAY_USER,
        mqtt_password=mqtt_gateway_password(settings), kafka_bootstrap=kafka_bootstrap(settings),
        database_url=database_url(settings), client_id=gateway_client_id(instance),
        max_future=timedelta(seconds=settings.max_future_s),
        kafka_idempotence=kafka_idempotence(settings),
        # The only gateway of `maillage up` holds a plain subscription: Mosquitto 2.0 restores it
        # from its store after a restart, not a shared one (docs/reliability.md, fault suite).
        shared=instance is None or settings.gateway_processes > 1,
    )
    _serve(Gateway(config).run, "gateway", settings)


def _reachable_database(settings: Settings, component: str) -> str:
    """The database URL once the database answers (a processor started by the supervisor during
    an outage waits for it rather than exiting again and again)."""
    from maillage.db.health import wait_until_reachable
    from maillage.stack.state import database_url

    url = database_url(settings)
    wait_until_reachable(url, log=logging.getLogger(f"maillage.{component}").warning)
    return url


@processor_app.command("storage")
@clean_errors
def processor_storage(data_dir: DataDir = None) -> None:
    """Run the storage processor (Kafka -> PostgreSQL)."""
    from maillage.processors.runner import Runner
    from maillage.processors.storage import GROUP, TOPICS, StorageSink
    from maillage.stack.state import kafka_bootstrap, kafka_fetch_wait_ms

    settings = settings_for(data_dir, "storage")
    sink = StorageSink(_reachable_database(settings, "storage"), max_rows=settings.storage_batch_rows)
    runner = Runner(bootstrap=kafka_bootstrap(settings), topics=TOPICS, group_id=GROUP, sink=sink,
                    flush_ms=settings.storage_batch_ms, fetch_wait_ms=kafka_fetch_wait_ms(settings))
    try:
        _serve(runner.run, "storage", settings)
    finally:
        sink.close()


@processor_app.command("detection")
@clean_errors
def processor_detection(
        data_dir: DataDir = None,
        rules: Annotated[str | None, typer.Option(
            envvar="MAILLAGE_DETECTION_RULES",
            help="Comma-separated rule modules instead of the built-in ones (experiments, tests).")] = None,
        silent: Annotated[bool, typer.Option(help="Also run the silent-device job.")] = True,
        checkpoint_s: Annotated[float, typer.Option(
            envvar="MAILLAGE_DETECTION_CHECKPOINT_S",
            help="Seconds between checkpoints of states and offsets (a crash replays at most this).")] = 5.0,
) -> None:
    """Run the detection processor (Kafka -> anomalies, outbox relay -> maillage.anomalies)."""
    from maillage.processors.detection.engine import Engine, load_tables
    from maillage.processors.detection.processor import GROUP, TOPICS, DetectionSink
    from maillage.processors.runner import Runner
    from maillage.stack.state import kafka_bootstrap, kafka_fetch_wait_ms

    settings = settings_for(data_dir, "detection")
    db_url, bootstrap = _reachable_database(settings, "detection"), kafka_bootstrap(settings)
    engine = None
    if rules:
        t = load_tables([m.strip() for m in rules.split(",") if m.strip()])
        engine = Engine(t.rules, t.group_rules, quality=t.quality, on_rejected=t.on_rejected)
    sink = DetectionSink(db_url, engine, checkpoint_s=checkpoint_s)
    runner = Runner(bootstrap=bootstrap, topics=TOPICS, group_id=GROUP, sink=sink, flush_ms=20,
                    fetch_wait_ms=kafka_fetch_wait_ms(settings))
    try:
        _serve(lambda stop: _detection(runner, db_url, bootstrap, stop, silent), "detection",
               settings)
    finally:
        sink.close()


async def _detection(runner: Runner, db_url: str, bootstrap: str, stop: asyncio.Event,
                     silent: bool) -> None:
    """The runner, the outbox relay and the silent-device job: one failing stops the others."""
    from maillage.processors.detection.outbox import Relay
    from maillage.processors.tasks import together

    tasks = [asyncio.create_task(runner.run(stop)), asyncio.create_task(Relay(db_url, bootstrap).run(stop))]
    if silent:
        from maillage.processors.detection import silent_job

        tasks.append(asyncio.create_task(silent_job.watch(database_url=db_url, stop=stop)))
    await together(tasks, stop)


@processor_app.command("alerting")
@clean_errors
def processor_alerting(
        data_dir: DataDir = None,
        group_id: Annotated[str | None, typer.Option(
            envvar="MAILLAGE_ALERTING_GROUP",
            help="Consumer group (default maillage-alerting; tests use their own).")] = None,
) -> None:
    """Run the alerting processor (maillage.anomalies -> alerts, escalation, notifications)."""
    from maillage.processors.alerting.lifecycle import GROUP, TOPICS, AlertingSink
    from maillage.processors.alerting.settings import AlertingSettings
    from maillage.processors.runner import Runner
    from maillage.stack.state import kafka_bootstrap, kafka_fetch_wait_ms

    settings = settings_for(data_dir, "alerting")
    db_url = _reachable_database(settings, "alerting")
    alerting = AlertingSettings()
    sink = AlertingSink(db_url, alerting)
    runner = Runner(bootstrap=kafka_bootstrap(settings), topics=TOPICS, group_id=group_id or GROUP,
                    sink=sink, flush_ms=20, fetch_wait_ms=kafka_fetch_wait_ms(settings))
    try:
        _serve(lambda stop: _alerting(runner, db_url, alerting, stop), "alerting", settings)
    finally:
        sink.close()


async def _alerting(runner: Runner, db_url: str, alerting: Any, stop: asyncio.Event) -> None:
    """The runner, the escalation tick and the notification sender: one failing stops the others."""
    from maillage.processors.alerting import escalation
    from maillage.processors.alerting.outbox import Sender
    from maillage.processors.tasks import together

    tasks = [asyncio.create_task(runner.run(stop)),
             asyncio.create_task(escalation.run(db_url, stop, tick_s=alerting.alert_escalation_tick_s)),
             asyncio.create_task(Sender(db_url, alerting).run(stop))]
    await together(tasks, stop)


@processor_app.command("commands")
@clean_errors
def processor_commands(data_dir: DataDir = None) -> None:
    """Run the commands processor (outbox -> maillage.commands -> MQTT down/cmd; acks, retries)."""
    from maillage.processors.commands.dispatch import MqttAccount
    from maillage.processors.commands.process import run
    from maillage.processors.commands.settings import CommandSettings
    from maillage.stack.mosquitto import GATEWAY_USER
    from maillage.stack.state import (
        kafka_bootstrap,
        kafka_fetch_wait_ms,
        mqtt_endpoint,
        mqtt_gateway_password,
    )

    settings = settings_for(data_dir, "commands")
    host, port = mqtt_endpoint(settings)
    # The gateway's service account: the one allowed to publish on devices' down/#.
    account = MqttAccount(host, port, GATEWAY_USER, mqtt_gateway_password(settings))
    db_url, bootstrap = _reachable_database(settings, "commands"), kafka_bootstrap(settings)
    cs = CommandSettings()
    _serve(lambda stop: run(database_url=db_url, bootstrap=bootstrap, account=account,
                            settings=cs, stop=stop, fetch_wait_ms=kafka_fetch_wait_ms(settings)),
           "commands", settings)


@processor_app.command("control")
@clean_errors
def processor_control(data_dir: DataDir = None) -> None:
    """Run the lighting control processor (adaptive lighting, demand response)."""
    from maillage.processors.control.process import run
    from maillage.stack.state import kafka_bootstrap, kafka_fetch_wait_ms

    settings = settings_for(data_dir, "control")
    db_url, bootstrap = _reachable_database(settings, "control"), kafka_bootstrap(settings)
    wait_ms = kafka_fetch_wait_ms(settings)
    _serve(lambda stop: run(database_url=db_url, bootstrap=bootstrap, stop=stop,
                            fetch_wait_ms=wait_ms), "control", settings)


@processor_app.command("maintenance")
@clean_errors
def processor_maintenance(data_dir: DataDir = None) -> None:
    """Run the maintenance processor (rollups, partitions, retention)."""
    from maillage.processors.maintenance import Maintenance

    settings = settings_for(data_dir, "maintenance")
    _serve(Maintenance(_reachable_database(settings, "maintenance")).run, "maintenance", settings)


@processor_app.command("savings")
@clean_errors
def processor_savings(
        data_dir: DataDir = None,
        every: Annotated[float, typer.Option(
            envvar="MAILLAGE_SAVINGS_EVERY_S",
            help="Seconds between passes of the savings job.")] = 900.0,
) -> None:
    """Run the savings job periodically (metered projects whose data changed, then lighting)."""
    from maillage.processors.savings.job import SavingsJob

    settings = settings_for(data_dir, "savings")
    _serve(SavingsJob(_reachable_database(settings, "savings"), every_s=every).run, "savings", settings)


@app.command()
@clean_errors
def api(host: str = "127.0.0.1", port: int = 8000, data_dir: DataDir = None) -> None:
    """Serve the HTTP API and the web page."""
    import uvicorn

    from maillage.api.app import create_app
    from maillage.cli.devices import broker_registrar
    from maillage.stack.state import database_url

    settings = settings_for(data_dir, "api")
    app_ = create_app(database_url(settings), register_devices=broker_registrar(settings),
                      opendata_min_households=settings.opendata_min_households)
    uvicorn.run(app_, host=host, port=port, log_level="warning")


app.command("simulate")(simulate)
app.command("bench")(bench)
