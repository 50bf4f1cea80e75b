"""`maillage alerts …`: escalation policies and notification subscriptions of a tenant."""

from __future__ import annotations

from datetime import time
from typing import Annotated

import psycopg
import typer

from maillage.cli.common import DataDir, clean_errors, print_json, settings_for
from maillage.db import alerting as db
from maillage.errors import MaillageError

alerts_app = typer.Typer(help="Alert escalation policies and notification subscriptions.",
                         no_args_is_help=True)
policy_app = typer.Typer(help="Escalation policies per tenant and kind.", no_args_is_help=True)
alerts_app.add_typer(policy_app, name="policy")

Tenant = Annotated[str, typer.Option(help="The tenant.")]
AnyTenant = Annotated[str | None, typer.Option("--tenant", help="Only this tenant.")]
Kind = Annotated[str, typer.Option(help="An anomaly kind, or '*' for the tenant's default.")]


def _connect(data_dir: DataDir) -> psycopg.Connection:
    from maillage.stack.state import database_url

    return psycopg.connect(database_url(settings_for(data_dir)), autocommit=True)


def _levels(text: str) -> list[int]:
    try:
        levels = [int(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise MaillageError(f"--levels: {text!r} is not a list of seconds, e.g. 300,900") from exc
    if not levels or any(x < 0 for x in levels) or levels != sorted(levels):
        raise MaillageError("--levels: give increasing seconds since opening, e.g. 300,900")
    return levels


def _time(name: str, text: str | None) -> time | None:
    if text is None:
        return None
    try:
        return time.fromisoformat(text)
    except ValueError as exc:
        raise MaillageError(f"--{name}: {text!r} is not a local time such as 22:00") from exc


@policy_app.command("set")
@clean_errors
def policy_set(tenant: Tenant,
               levels: Annotated[str, typer.Option(
                   help="Seconds unacknowledged after opening before level 1, 2, … is told, "
                   "e.g. 300,900.")],
               kind: Kind = "*",
               quiet_from: Annotated[str | None, typer.Option(
                   help="Quiet hours start (tenant local time, e.g. 22:00): non-critical energy "
                   "alerts wait.")] = None,
               quiet_to: Annotated[str | None, typer.Option(help="Quiet hours end, e.g. 07:00.")] = None,
               data_dir: DataDir = None) -> None:
    """Create or replace the escalation policy of a tenant (and kind)."""
    qf, qt = _time("quiet-from", quiet_from), _time("quiet-to", quiet_to)
    if (qf is None) != (qt is None):
        raise MaillageError("give both --quiet-from and --quiet-to, or neither")
    with _connect(data_dir) as conn:
        db.set_policy(conn=conn, tenant=tenant, kind=kind, levels_s=_levels(levels),
                      quiet_from=qf, quiet_to=qt)
        print_json({"items": db.list_policies(conn=conn, tenant=tenant)})


@policy_app.command("list")
@clean_errors
def policy_list(tenant: AnyTenant = None, data_dir: DataDir = None) -> None:
    """Escalation policies as JSON."""
    with _connect(data_dir) as conn:
        print_json({"items": db.list_policies(conn=conn, tenant=tenant)})


@policy_app.command("remove")
@clean_errors
def policy_remove(tenant: Tenant, kind: Kind = "*", data_dir: DataDir = None) -> None:
    """Remove the policy of a tenant and kind."""
    with _connect(data_dir) as conn:
        if not db.remove_policy(conn=conn, tenant=tenant, kind=kind):
            raise MaillageError(f"no policy for tenant {tenant!r} and kind {kind!r}")
    print_json({"removed": {"tenant": tenant, "kind": kind}})


@alerts_app.command("subscribe")
@clean_errors
def subscribe(tenant: Tenant,
              channel: Annotated[str, typer.Option(help="webhook or email.")],
              target: Annotated[str, typer.Option(help="The URL or the e-mail address.")],
              secret: Annotated[str | None, typer.Option(
                  help="Webhook: the HMAC-SHA256 key of X-Maillage-Signature.")] = None,
              level: Annotated[int, typer.Option(
                  help="Escalation level (0: told at opening).")] = 0,
              care: Annotated[bool, typer.Option(
                  "--care", help="Receives care alerts (else energy alerts only).")] = False,
              kinds: Annotated[str | None, typer.Option(
                  help="Comma-separated kinds (default: every kind).")] = None,
              data_dir: DataDir = None) -> None:
    """Tell a webhook or an e-mail address of a tenant's alerts; prints the subscription."""
    if channel not in ("webhook", "email"):
        raise MaillageError("--channel: webhook or email")
    if channel == "webhook" and not target.startswith(("http://", "https://")):
        raise MaillageError("--target: a webhook is an http:// or https:// URL")
    if channel == "email" and "@" not in target:
        raise MaillageError("--target: an e-mail address")
    if level < 0:
        raise MaillageError("--level: 0 or more")
    kind_list = [k.strip() for k in kinds.split(",") if k.strip()] if kinds else None
    with _connect(data_dir) as conn:
        try:
            sid = db.add_subscription(conn=conn, tenant=tenant, channel=channel, target=target,
                                      secret=secret, level=level, care=care, kinds=kind_list)
        except psycopg.errors.ForeignKeyViolation as exc:
            raise MaillageError(f"unknown tenant {tenant!r}") from exc
        rows = [r for r in db.list_subscriptions(conn=conn, tenant=tenant) if r["id"] == sid]
    print_json(rows[0])


@alerts_app.command("subscriptions")
@clean_errors
def subscriptions(tenant: AnyTenant = None, data_dir: DataDir = None) -> None:
    """Subscriptions as JSON (secrets are not shown)."""
    with _connect(data_dir) as conn:
        print_json({"items": db.list_subscriptions(conn=conn, tenant=tenant)})


@alerts_app.command("unsubscribe")
@clean_errors
def unsubscribe(subscription_id: Annotated[int, typer.Argument(help="The subscription id.")],
                data_dir: DataDir = None) -> None:
    """Stop a subscription (its notifications stay in the outbox for the audit)."""
    with _connect(data_dir) as conn:
        if not db.remove_subscription(conn=conn, subscription_id=subscription_id):
            raise MaillageError(f"no active subscription {subscription_id}")
    print_json({"removed": subscription_id})
