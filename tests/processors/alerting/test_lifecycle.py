"""The alerting sink on the real PostgreSQL: grouping, repeats, flapping, auto-resolve, replay,
a person's ack kept, and who is notified."""

from __future__ import annotations

import psycopg
import pytest

from maillage.db import alerting as db
from maillage.processors.alerting.lifecycle import AlertingSink
from maillage.processors.alerting.settings import AlertingSettings
from tests.processors.alerting.conftest import MIN, T0, alerts, events, records, transition


def _sink(db_url: str, **kw: float) -> AlertingSink:
    return AlertingSink(db_url, AlertingSettings(**kw))  # type: ignore[arg-type]


def _run(sink: AlertingSink, transitions: list) -> None:  # type: ignore[type-arg]
    for r in records(transitions):
        sink.add(r)
    sink.flush()


def test_a_thousand_repeats_are_one_alert_without_a_thousand_events(db_url: str,
                                                                  al_tenant: str) -> None:
    """1,000 spikes of one meter (each a new anomaly, still open): one alert counting 1,000,
    a couple of stream events; a replay of them all changes nothing."""
    sink = _sink(db_url)
    spikes = [transition(al_tenant, "m1", "spike", T0 + i * MIN) for i in range(1000)]
    _run(sink, spikes)
    [a] = alerts(db_url, al_tenant)
    assert (a["count"], a["state"], a["kind"], a["group_key"]) == (1000, "open", "spike", "spike|m1")
    assert a["care"] is False and a["last_anomaly_id"] == spikes[-1].anomaly.id
    assert len(events(db_url, al_tenant)) <= 2
    version = a["version"]
    _run(_sink(db_url), spikes)  # a replay, by a new process (no memory of the first)
    [b] = alerts(db_url, al_tenant)
    assert (b["count"], b["version"]) == (1000, version)


def test_other_device_or_kind_is_another_alert_and_group_anomalies_share_one(
        db_url: str, al_tenant: str) -> None:
    sink = _sink(db_url)
    _run(sink, [transition(al_tenant, "m1", "spike", T0),
                transition(al_tenant, "m2", "spike", T0),
                transition(al_tenant, "m1", "night_overconsumption", T0),
                transition(al_tenant, "m1", "device_offline", T0, group="district:a"),
                transition(al_tenant, "m2", "device_offline", T0 + MIN, group="district:a")])
    keys = sorted((a["group_key"], a["count"]) for a in alerts(db_url, al_tenant))
    assert keys == [("device_offline|district:a", 2), ("night_overconsumption|m1", 1),
                    ("spike|m1", 1), ("spike|m2", 1)]


def test_clears_by_itself_and_flapping_reopens_the_same_alert(db_url: str, al_tenant: str) -> None:
    sink = _sink(db_url)
    first = transition(al_tenant, "m1", "voltage_out_of_range", T0)
    _run(sink, [first, transition(al_tenant, "m1", "voltage_out_of_range", T0, "close")])
    [a] = alerts(db_url, al_tenant)
    assert (a["state"], a["resolved_by"], a["next_escalation_at"]) == ("resolved", "system", None)
    _run(sink, [transition(al_tenant, "m1", "voltage_out_of_range", T0 + 5 * MIN, severity="critical")])
    [b] = alerts(db_url, al_tenant)
    assert (b["id"], b["state"], b["count"], b["severity"], b["resolved_by"]) == (
        a["id"], "open", 2, "critical", None)
    assert [e for _, e in events(db_url, al_tenant)] == ["opened", "resolved", "reopened"]


def test_cleared_after_the_hold_time_is_a_new_alert(db_url: str, al_tenant: str) -> None:
    sink = _sink(db_url, alert_flap_hold_s=0.0)
    _run(sink, [transition(al_tenant, "m1", "spike", T0),
                transition(al_tenant, "m1", "spike", T0, "close")])
    _run(sink, [transition(al_tenant, "m1", "spike", T0 + 5 * MIN)])
    assert [(a["state"], a["count"]) for a in alerts(db_url, al_tenant)] == [
        ("resolved", 1), ("open", 1)]


@pytest.mark.parametrize("kind", ["fall", "panic_button"])
def test_a_fall_or_panic_is_never_resolved_by_the_system(db_url: str, al_tenant: str,
                                                         kind: str) -> None:
    sink = _sink(db_url)
    _run(sink, [transition(al_tenant, "h1", kind, T0, severity="critical"),
                transition(al_tenant, "h1", kind, T0, "close", severity="critical")])
    [a] = alerts(db_url, al_tenant)
    assert (a["state"], a["care"], a["severity"]) == ("open", True, "critical")


def test_a_close_of_an_older_anomaly_leaves_the_alert_open(db_url: str, al_tenant: str) -> None:
    sink = _sink(db_url)
    _run(sink, [transition(al_tenant, "m1", "spike", T0),
                transition(al_tenant, "m1", "spike", T0 + MIN),
                transition(al_tenant, "m1", "spike", T0, "close")])
    [a] = alerts(db_url, al_tenant)
    assert (a["state"], a["count"]) == ("open", 2)


def _act(db_url: str, alert_id: int, action: str) -> None:
    """A person's ack or resolve, written as the API does (db/alerts.py)."""
    col = "acknowledged" if action == "acknowledged" else "resolved"
    with psycopg.connect(db_url, autocommit=True) as conn, conn.transaction():
        db.lock_events(conn=conn)
        conn.execute(f"UPDATE alerts SET state = %s, {col}_at = now(), {col}_by = 'token:7', "
                     "next_escalation_at = NULL, version = version + 1 WHERE id = %s",
                     (action, alert_id))
        db.add_event(conn=conn, alert_id=alert_id, action=action, actor="token:7")


def test_a_persons_ack_and_resolve_are_kept(db_url: str, al_tenant: str) -> None:
    sink = _sink(db_url)
    _run(sink, [transition(al_tenant, "m1", "spike", T0)])
    [a] = alerts(db_url, al_tenant)
    _act(db_url, a["id"], "acknowledged")
    _run(sink, [transition(al_tenant, "m1", "spike", T0 + MIN)])
    [b] = alerts(db_url, al_tenant)
    assert (b["state"], b["count"], b["acknowledged_by"]) == ("acknowledged", 2, "token:7")
    _act(db_url, a["id"], "resolved")
    # Resolved by a person: the problem coming back is a new alert, never that one reopened.
    _run(sink, [transition(al_tenant, "m1", "spike", T0 + 2 * MIN)])
    got = [(x["id"] == a["id"], x["state"], x["resolved_by"]) for x in alerts(db_url, al_tenant)]
    assert got == [(True, "resolved", "token:7"), (False, "open", None)]


def test_outbox_rows_go_to_matching_subscriptions_in_the_same_transaction(
        db_url: str, al_tenant: str) -> None:
    """Care alerts only to care subscriptions, energy alerts to the others, kinds filtered,
    level 0 at opening; repeats notify nobody."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        energy = db.add_subscription(conn=conn, tenant=al_tenant, channel="webhook",
                                     target="http://127.0.0.1:9/e", secret="s", level=0,
                                     care=False, kinds=None)
        care = db.add_subscription(conn=conn, tenant=al_tenant, channel="email",
                                   target="coord@example.org", secret=None, level=0, care=True,
                                   kinds=None)
        db.add_subscription(conn=conn, tenant=al_tenant, channel="webhook",
                            target="http://127.0.0.1:9/l1", secret="s", level=1, care=True,
                            kinds=None)
        only_spikes = db.add_subscription(conn=conn, tenant=al_tenant, channel="webhook",
                                          target="http://127.0.0.1:9/s", secret="s", level=0,
                                          care=False, kinds=["spike"])
    sink = _sink(db_url)
    _run(sink, [transition(al_tenant, "m1", "spike", T0),
                transition(al_tenant, "m1", "spike", T0 + MIN),
                transition(al_tenant, "m1", "zero_consumption", T0),
                transition(al_tenant, "h1", "fall", T0, severity="critical"),
                transition(al_tenant, "h1", "battery_low", T0)])
    by_kind = {a["id"]: a["kind"] for a in alerts(db_url, al_tenant)}
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT alert_id, subscription_id, notification_id, payload "
                            "FROM notification_outbox WHERE alert_id = ANY(%s) ORDER BY id",
                            (list(by_kind),)).fetchall()
    got = sorted((by_kind[r[0]], r[1]) for r in rows)
    assert got == sorted([("spike", energy), ("spike", only_spikes),
                          ("zero_consumption", energy), ("fall", care), ("battery_low", care)])
    for alert_id, sub, nid, payload in rows:
        assert nid.startswith(f"{alert_id}:") and nid.endswith(f":{sub}")
        assert payload["notification_id"] == nid and payload["event"] == "opened"
        assert payload["alert"]["id"] == alert_id and payload["alert"]["state"] == "open"


def test_an_update_raises_the_severity_never_lowers_it(db_url: str, al_tenant: str) -> None:
    sink = _sink(db_url)
    t = transition(al_tenant, "m1", "over_subscribed_power", T0)
    up = transition(al_tenant, "m1", "over_subscribed_power", T0, "update", severity="critical")
    up = type(up)(up.anomaly, "update", at_us=T0 + MIN)
    down = type(up)(transition(al_tenant, "m1", "over_subscribed_power", T0, "update",
                               severity="info").anomaly, "update", at_us=T0 + 2 * MIN)
    _run(sink, [t, up, down])
    [a] = alerts(db_url, al_tenant)
    assert (a["severity"], a["count"]) == ("critical", 1)


def test_records_that_are_not_transitions_and_unknown_tenants_are_skipped(
        db_url: str, al_tenant: str) -> None:
    sink = _sink(db_url)
    good = records([transition(al_tenant, "m1", "spike", T0)])
    ghost = records([transition("nosuchtenant", "m1", "spike", T0)])
    junk = [type(good[0])(topic="maillage.anomalies", partition=0, offset=9, value=b"{not json"),
            type(good[0])(topic="maillage.anomalies", partition=0, offset=10, value=None)]
    for r in [*junk, *ghost, *good]:
        sink.add(r)
    sink.flush()
    assert sink.poison == 2 and len(alerts(db_url, al_tenant)) == 1
    assert alerts(db_url, "nosuchtenant") == []


def test_an_old_anomaly_opens_its_alert_without_paging_anyone(db_url: str, al_tenant: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        db.set_policy(conn=conn, tenant=al_tenant, kind="*", levels_s=[60], quiet_from=None,
                      quiet_to=None)
        db.add_subscription(conn=conn, tenant=al_tenant, channel="email", target="a@example.org",
                            secret=None, level=0, care=False, kinds=None)
    sink = _sink(db_url)
    _run(sink, [transition(al_tenant, "m1", "spike", T0 - 30 * 24 * 60 * MIN)])
    [a] = alerts(db_url, al_tenant)
    assert (a["state"], a["next_escalation_at"]) == ("open", None)
    with psycopg.connect(db_url) as conn:
        n = conn.execute("SELECT count(*) FROM notification_outbox WHERE alert_id = %s",
                         (a["id"],)).fetchone()
    assert n == (0,)
