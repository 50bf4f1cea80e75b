"""Escalation: levels from the policy, quiet hours, an ack stops it; the tick on the real database."""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import psycopg

from maillage.db import alerting as db
from maillage.processors.alerting.escalation import delay_to, escalate_due, may_wait, quiet_until
from maillage.processors.alerting.lifecycle import AlertingSink
from tests.processors.alerting.conftest import T0, alerts, events, records, transition


def test_delay_to_each_level() -> None:
    assert [delay_to([300, 900], lvl) for lvl in range(3)] == [300.0, 600.0, None]
    assert delay_to([], 0) is None


def test_quiet_hours_across_midnight_in_local_time() -> None:
    q = (time(22, 0), time(7, 0))
    # 23:30 in Paris (UTC+1 in December) -> quiet until 07:00 Paris the next morning.
    assert quiet_until(datetime(2026, 12, 6, 22, 30, tzinfo=UTC), "Europe/Paris", *q) == \
        datetime(2026, 12, 7, 6, 0, tzinfo=UTC)
    assert quiet_until(datetime(2026, 12, 7, 5, 0, tzinfo=UTC), "Europe/Paris", *q) == \
        datetime(2026, 12, 7, 6, 0, tzinfo=UTC)
    assert quiet_until(datetime(2026, 12, 7, 12, 0, tzinfo=UTC), "Europe/Paris", *q) is None
    assert quiet_until(datetime(2026, 12, 7, 12, 0, tzinfo=UTC), "Europe/Paris", None, None) is None
    assert may_wait("warning", False) and not may_wait("critical", False)
    assert not may_wait("info", True)


def _due_now(db_url: str, alert_id: int) -> None:
    """Make the alert's escalation due (instead of waiting for it on the wall clock)."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE alerts SET next_escalation_at = now() - interval '1 second' "
                     "WHERE id = %s AND next_escalation_at IS NOT NULL", (alert_id,))


def _outbox_levels(db_url: str, alert_id: int) -> list[int]:
    with psycopg.connect(db_url) as conn:
        return [r[0] for r in conn.execute(
            "SELECT (payload->>'level')::int FROM notification_outbox WHERE alert_id = %s "
            "ORDER BY id", (alert_id,)).fetchall()]


def test_unacknowledged_alert_climbs_the_levels_then_stops(db_url: str, al_tenant: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        db.set_policy(conn=conn, tenant=al_tenant, kind="*", levels_s=[300, 900],
                      quiet_from=None, quiet_to=None)
        for level in (0, 1, 2):
            db.add_subscription(conn=conn, tenant=al_tenant, channel="email",
                                target=f"l{level}@example.org", secret=None, level=level,
                                care=True, kinds=None)
    sink = AlertingSink(db_url)
    for r in records([transition(al_tenant, "h1", "fall", T0, severity="critical")]):
        sink.add(r)
    sink.flush()
    [a] = alerts(db_url, al_tenant)
    assert a["escalation_level"] == 0 and a["next_escalation_at"] is not None
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert escalate_due(conn) == 0  # not due yet
        _due_now(db_url, a["id"])
        assert escalate_due(conn) == 1
        [b] = alerts(db_url, al_tenant)
        assert b["escalation_level"] == 1 and b["next_escalation_at"] is not None
        _due_now(db_url, a["id"])
        assert escalate_due(conn) == 1
        [c] = alerts(db_url, al_tenant)
        assert (c["escalation_level"], c["next_escalation_at"]) == (2, None)
        assert escalate_due(conn) == 0
    assert _outbox_levels(db_url, a["id"]) == [0, 1, 2]
    assert [e for _, e in events(db_url, al_tenant)] == ["opened", "escalated", "escalated"]


def test_an_acknowledged_alert_does_not_escalate(db_url: str, al_tenant: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        db.set_policy(conn=conn, tenant=al_tenant, kind="fall", levels_s=[60],
                      quiet_from=None, quiet_to=None)
    sink = AlertingSink(db_url)
    for r in records([transition(al_tenant, "h1", "fall", T0, severity="critical")]):
        sink.add(r)
    sink.flush()
    [a] = alerts(db_url, al_tenant)
    _due_now(db_url, a["id"])
    with psycopg.connect(db_url, autocommit=True) as conn:
        # As the API acknowledges: state, who, and nothing more to escalate.
        conn.execute("UPDATE alerts SET state = 'acknowledged', acknowledged_at = now(), "
                     "acknowledged_by = 'token:1', next_escalation_at = NULL WHERE id = %s",
                     (a["id"],))
        assert escalate_due(conn) == 0
    assert alerts(db_url, al_tenant)[0]["escalation_level"] == 0


def test_quiet_hours_delay_energy_alerts_not_care_ones(db_url: str, al_tenant: str) -> None:
    # Quiet all day but one hour, twelve hours from now: whenever the test runs, it is quiet.
    with psycopg.connect(db_url, autocommit=True) as conn:
        tz = conn.execute("SELECT timezone FROM tenants WHERE id = %s", (al_tenant,)).fetchone()
        assert tz is not None
        end = (datetime.now(ZoneInfo(tz[0])).hour + 12) % 24
        db.set_policy(conn=conn, tenant=al_tenant, kind="*", levels_s=[60],
                      quiet_from=time((end + 1) % 24, 0), quiet_to=time(end, 0))
        db.add_subscription(conn=conn, tenant=al_tenant, channel="webhook",
                            target="http://127.0.0.1:9/", secret="s", level=0, care=False,
                            kinds=None)
    sink = AlertingSink(db_url)
    for r in records([transition(al_tenant, "m1", "spike", T0),
                      transition(al_tenant, "h1", "fall", T0, severity="critical")]):
        sink.add(r)
    sink.flush()
    spike, fall = alerts(db_url, al_tenant)
    with psycopg.connect(db_url, autocommit=True) as conn:
        waits = conn.execute("SELECT next_attempt_at > now() + interval '1 hour' FROM "
                             "notification_outbox WHERE alert_id = %s", (spike["id"],)).fetchone()
        assert waits == (True,)  # the level-0 notification waits for the end of quiet hours
        _due_now(db_url, spike["id"])
        _due_now(db_url, fall["id"])
        assert escalate_due(conn) == 1  # the fall (care, critical); the spike is postponed
    spike, fall = alerts(db_url, al_tenant)
    assert (spike["escalation_level"], fall["escalation_level"]) == (0, 1)
    assert spike["next_escalation_at"] > datetime.now(UTC)
