"""`maillage dlq …`: look at rejected messages and replay them once the cause is fixed."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Annotated, Any

import psycopg
import typer

from maillage.cli.common import DataDir, clean_errors, print_json, settings_for
from maillage.db.rejected import recent_rejected
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
    from maillage.ingest.replay import payload_view
    from maillage.stack.state import database_url

    start, end = _time("since", since), _time("until", until)
    with psycopg.connect(database_url(settings_for(data_dir))) as conn:
        rows = recent_rejected(conn=conn, tenant=tenant, device_id=device, reason=reason,
                               since=start, until=end, limit=limit)
    items: list[dict[str, Any]] = []
    for row in rows:
        text, encoding = payload_view(bytes(row["payload"]))
        items.append({"id": row["id"], "received_at": row["received_at"],
                      "topic": row["mqtt_topic"], "tenant": row["tenant_id"],
                      "device_id": row["device_id"], "reason": row["reason"],
                      "detail": row["detail"], "payload": text, "payload_encoding": encoding,
                      "replayed_at": row["replayed_at"]})
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
