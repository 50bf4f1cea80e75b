"""`maillage dlq …`: look at rejected messages and replay them once the cause is fixed."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Annotated, Any

import psycopg
import typer

from maillage.cli.common import DataDir, clean_errors, print_json, settings_for
from maillage.errors import MaillageError

dlq_app = typer.Typer(help="Rejected messages (the dead-letter queue).", no_args_is_help=True)

Tenant = Annotated[str | None, typer.Option(help="Only this tenant.")]
Device = Annotated[str | None, typer.Option(help="Only this device id.")]
Reason = Annotated[str | None, typer.Option(help="Only this reason, e.g. unknown_device.")]
Since = Annotated[str | None, typer.Option(help="Received at or after (ISO 8601 with zone).")]
Until = Annotated[str | None, typer.Option(help="Received before (ISO 8601 with zone).")]


def _time(name: str, text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise MaillageError(f"--{name}: {text!r} is not an ISO 8601 time") from exc
    if ts.tzinfo is None:
        raise MaillageError(f"--{name}: give a time zone (e.g. {text}Z or {text}+01:00)")
    return ts


@dlq_app.command("list")
@clean_errors
def dlq_list(tenant: Tenant = None, device: Device = None, reason: Reason = None,
             since: Since = None, until: Until = None,
             limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 100,
             data_dir: DataDir = None) -> None:
    """Rejected messages as JSON, newest first."""
    # Imported here: only this command needs it, and every `maillage` process loads the CLI.
    from maillage.ingest.replay import ReplayFilter, payload_view, where_clause
    from maillage.stack.state import database_url

    selection = ReplayFilter(tenant=tenant, device_id=device, reason=reason,
                             since=_time("since", since), until=_time("until", until), again=True)
    where, params = where_clause(selection)
    with psycopg.connect(database_url(settings_for(data_dir))) as conn:
        rows = conn.execute(
            "SELECT id, received_at, mqtt_topic, tenant_id, device_id, reason, detail, payload, "
            f"replayed_at FROM rejected WHERE {where} ORDER BY id DESC LIMIT %s",
            [*params, limit]).fetchall()
    items: list[dict[str, Any]] = []
    for rid, rx, topic, t, d, r, detail, payload, replayed in rows:
        text, encoding = payload_view(bytes(payload))
        items.append({"id": rid, "received_at": rx, "topic": topic, "tenant": t, "device_id": d,
                      "reason": r, "detail": detail, "payload": text,
                      "payload_encoding": encoding, "replayed_at": replayed})
    print_json({"items": items})


@dlq_app.command("replay")
@clean_errors
def dlq_replay(tenant: Tenant = None, device: Device = None, reason: Reason = None,
               since: Since = None, until: Until = None,
               again: Annotated[bool, typer.Option(help="Also messages already replayed.")] = False,
               limit: Annotated[int | None, typer.Option(help="At most this many.")] = None,
               data_dir: DataDir = None) -> None:
    """Run rejected messages through the gateway's checks again; accepted ones go on to storage.

    Prints a JSON report; messages still bad stay in the DLQ and are listed with their reason.
    """
    # Imported here: only this command needs it, and every `maillage` process loads the CLI.
    from maillage.ingest.replay import ReplayFilter, replay
    from maillage.stack.state import database_url, kafka_bootstrap

    settings = settings_for(data_dir)
    selection = ReplayFilter(tenant=tenant, device_id=device, reason=reason,
                             since=_time("since", since), until=_time("until", until),
                             again=again, limit=limit)
    report = asyncio.run(replay(database_url=database_url(settings),
                                kafka_bootstrap=kafka_bootstrap(settings), selection=selection,
                                max_future=timedelta(seconds=settings.max_future_s)))
    print_json(report.to_dict())
