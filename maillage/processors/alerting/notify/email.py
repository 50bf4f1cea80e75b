"""E-mail delivery over SMTP (aiosmtplib). The message names the alert (id, kind, severity,
device pseudonym, times), never a resident: devices are known by their ids only."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

import aiosmtplib

from maillage.processors.alerting.notify import Outcome
from maillage.processors.alerting.settings import AlertingSettings

_FIELDS = ("id", "tenant", "kind", "severity", "state", "device_id", "group", "count",
           "first_at", "last_at", "escalation_level")


def message(*, payload: dict[str, Any], to: str, sender: str) -> EmailMessage:
    """The e-mail of one notification."""
    alert = payload["alert"]
    event = payload.get("event", "opened")
    msg = EmailMessage()
    msg["From"], msg["To"] = sender, to
    msg["Subject"] = (f"[maillage] {alert['severity']} {alert['kind']} on {alert['device_id']} "
                      f"(alert {alert['id']}, {event}"
                      + (f", level {payload['level']})" if payload.get("level") else ")"))
    msg["X-Maillage-Notification-Id"] = payload["notification_id"]
    lines = [f"Alert {alert['id']} {event}."]
    lines += [f"{k}: {alert.get(k)}" for k in _FIELDS if alert.get(k) is not None]
    lines += ["", f"notification id: {payload['notification_id']}"]
    msg.set_content("\n".join(lines) + "\n")
    return msg


async def send(settings: AlertingSettings, *, to: str, payload: dict[str, Any]) -> Outcome:
    """Send one notification by e-mail."""
    msg = message(payload=payload, to=to, sender=settings.smtp_from)
    try:
        _, reply = await aiosmtplib.send(
            msg, hostname=settings.smtp_host, port=settings.smtp_port,
            username=settings.smtp_username, password=settings.smtp_password,
            start_tls=settings.smtp_starttls, timeout=settings.alert_send_timeout_s)
    except (aiosmtplib.SMTPException, OSError) as exc:
        return Outcome(False, f"{type(exc).__name__}: {exc}"[:500])
    return Outcome(True, f"SMTP {reply}"[:500])
