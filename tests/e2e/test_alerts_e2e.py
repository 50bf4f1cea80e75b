"""Acceptance 1 on a real `maillage up`: a fall published over MQTT reaches a real local webhook
receiver (signature checked), a real local SMTP server (aiosmtpd) and, where the API serves
`/v1/alerts/stream`, a care coordinator's SSE client, each within 2 s; left unacknowledged it
escalates to level 1 after T (3 s here); acknowledged, it escalates no further."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import psycopg
import pytest

from maillage.db import alerting as db
from tests.e2e.conftest import Device, Publisher, Stack, running_stack, wait_until
from tests.processors.alerting.receivers import SmtpReceiver, WebhookReceiver

T_LEVEL1_S, T_LEVEL2_S = 3, 8


class SseClient:
    """Reads `/v1/alerts/stream` in a thread; notes when each snapshot arrived."""

    def __init__(self, api: str, token: str) -> None:
        self.seen: list[tuple[float, dict[str, Any]]] = []
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(api, token), daemon=True)
        self._thread.start()
        assert self.ready.wait(20), "the stream did not open"

    def _run(self, api: str, token: str) -> None:
        with httpx.stream("GET", api + "/v1/alerts/stream", timeout=httpx.Timeout(10, read=None),
                          headers={"Authorization": f"Bearer {token}"}) as resp:
            assert resp.status_code == 200, resp.read()
            self.ready.set()
            for line in resp.iter_lines():
                if self._stop.is_set():
                    return
                if line.startswith("data:"):
                    self.seen.append((time.time(), orjson.loads(line[5:].strip())))

    def first(self, device_id: str) -> tuple[float, dict[str, Any]] | None:
        return next(((t, d) for t, d in self.seen if d.get("device_id") == device_id), None)

    def close(self) -> None:
        self._stop.set()


def _fall(pub: Publisher) -> float:
    ts = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    sent = time.time()
    assert not pub.publish("up/event", orjson.dumps({"ts": ts, "event": "fall_detected"})).is_failure
    return sent


def _for(hook: WebhookReceiver, device: Device, event: str = "opened") -> list[Any]:
    return [h for h in hook.received()
            if h.doc["alert"]["device_id"] == device.device_id and h.doc["event"] == event]


def _has_stream(stack: Stack) -> bool:
    paths = httpx.get(stack.api + "/openapi.json", timeout=10).json().get("paths", {})
    return "/v1/alerts/stream" in paths and "/v1/alerts/{alert_id}/ack" in paths


def _ack(stack: Stack, token: str, alert_id: int, api: bool) -> None:
    """Acknowledge through the API when it has the endpoint, else as it does (db/alerts.py)."""
    if api:
        r = httpx.post(f"{stack.api}/v1/alerts/{alert_id}/ack", timeout=10,
                       headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        return
    with psycopg.connect(stack.db(), autocommit=True) as conn, conn.transaction():
        db.lock_events(conn=conn)
        conn.execute("UPDATE alerts SET state = 'acknowledged', acknowledged_at = now(), "
                     "acknowledged_by = 'e2e', next_escalation_at = NULL, "
                     "version = version + 1, updated_at = now() WHERE id = %s", (alert_id,))
        db.add_event(conn=conn, alert_id=alert_id, action="acknowledged", actor="e2e")


@pytest.mark.slow
def test_fall_notified_within_2s_escalates_then_stops_once_acknowledged() -> None:
    secret = "e2e-secret"
    hooks = [WebhookReceiver(secret).start() for _ in range(3)]  # levels 0, 1, 2
    smtp = SmtpReceiver().start()
    env = {"MAILLAGE_SMTP_HOST": "127.0.0.1", "MAILLAGE_SMTP_PORT": str(smtp.port),
           "MAILLAGE_SMTP_FROM": "alerts@maillage.test", "MAILLAGE_ALERT_ESCALATION_TICK_S": "0.2"}
    try:
        with running_stack("maillage-alerts-", env_extra=env) as (data_dir, status):
            stack = Stack(data_dir, status)
            tenant = stack.tenant()
            warm, pendant = stack.device(tenant, "care_button"), stack.device(tenant, "care_button")
            stack.cli("alerts", "policy", "set", "--tenant", tenant, "--levels",
                      f"{T_LEVEL1_S},{T_LEVEL2_S}")
            for level, hook in enumerate(hooks):
                stack.cli("alerts", "subscribe", "--tenant", tenant, "--channel", "webhook",
                          "--target", hook.url, "--secret", secret, "--level", str(level), "--care")
            stack.cli("alerts", "subscribe", "--tenant", tenant, "--channel", "email",
                      "--target", "coordinator@maillage.test", "--care")
            token = stack.token(tenant, "care_coordinator")
            api = _has_stream(stack)
            sse = SseClient(stack.api, token) if api else None
            pubs = [Publisher(stack, warm), Publisher(stack, pendant)]
            try:
                # Warm-up: the processors may still be joining their consumer groups.
                _fall(pubs[0])
                assert wait_until(lambda: bool(_for(hooks[0], warm)), 90), "warm-up fall not notified"
                sent = _fall(pubs[1])
                assert wait_until(lambda: bool(_for(hooks[0], pendant)) and any(
                    pendant.device_id in str(m["Subject"]) for _, m, _ in smtp.received())
                    and (sse is None or sse.first(pendant.device_id) is not None), 10)
                [hook] = _for(hooks[0], pendant)
                mail_at = next(at for _, m, at in smtp.received()
                               if pendant.device_id in str(m["Subject"]))
                # The receivers note time.monotonic(); convert to the wall clock of `sent`.
                shift = time.time() - time.monotonic()
                delays = {"webhook": hook.at + shift - sent, "email": mail_at + shift - sent}
                if sse is not None:
                    seen = sse.first(pendant.device_id)
                    assert seen is not None and seen[1]["kind"] == "fall"
                    delays["sse"] = seen[0] - sent
                print("fall -> notification delays, s:",  # noqa: T201
                      {k: round(v, 3) for k, v in delays.items()})
                assert all(d < 2.0 for d in delays.values()), delays
                assert hook.signature_ok and hook.doc["alert"]["kind"] == "fall"
                alert_id = int(hook.doc["alert"]["id"])

                # Unacknowledged: level 1 is told after T.
                assert wait_until(lambda: bool(_for(hooks[1], pendant, "escalated")),
                                  T_LEVEL1_S + 5), "not escalated to level 1"
                [esc] = _for(hooks[1], pendant, "escalated")
                assert esc.signature_ok and esc.doc["level"] == 1
                assert esc.doc["alert"]["id"] == alert_id
                _ack(stack, token, alert_id, api)
                # Acknowledged: level 2 (due 8 s after opening) never comes.
                time.sleep(max(0.0, sent + T_LEVEL2_S + 2 - time.time()))
                assert not _for(hooks[2], pendant, "escalated")
                with psycopg.connect(stack.db()) as conn:
                    row = conn.execute("SELECT state, escalation_level, next_escalation_at "
                                       "FROM alerts WHERE id = %s", (alert_id,)).fetchone()
                assert row == ("acknowledged", 1, None)
            finally:
                for p in pubs:
                    p.close()
                if sse is not None:
                    sse.close()
    finally:
        for h in hooks:
            h.stop()
        smtp.stop()
