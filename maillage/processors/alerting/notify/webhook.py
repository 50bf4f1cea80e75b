"""Webhook delivery: POST the notification as JSON, signed with the subscription's secret.

Headers: `X-Maillage-Signature: sha256=<hex HMAC-SHA256 of the raw body>` (when the
subscription has a secret), `X-Maillage-Notification-Id` (stable across retries: receivers drop
repeats with it). Any 2xx is a delivery; anything else, or no answer, is retried.
"""

from __future__ import annotations

import hashlib
import hmac

import httpx

from maillage.processors.alerting.notify import Outcome

SIGNATURE_HEADER = "X-Maillage-Signature"
ID_HEADER = "X-Maillage-Notification-Id"


def signature(secret: str, body: bytes) -> str:
    """The signature header's value for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def send(client: httpx.AsyncClient, *, url: str, secret: str | None, body: bytes,
               notification_id: str) -> Outcome:
    """POST `body` to `url`."""
    headers = {"Content-Type": "application/json", ID_HEADER: notification_id,
               "User-Agent": "maillage-alerting"}
    if secret:
        headers[SIGNATURE_HEADER] = signature(secret, body)
    try:
        resp = await client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return Outcome(False, f"{type(exc).__name__}: {exc}"[:500])
    return Outcome(200 <= resp.status_code < 300, f"HTTP {resp.status_code}")
