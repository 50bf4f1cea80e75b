"""The detection stage's writes (`maillage/db/detection.py`) on the real PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import psycopg

from maillage.db import detection as db
from maillage.processors.detection.model import Anomaly, Kind, Severity, Transition
from tests.processors.detection.conftest import MIN, T0


def _rows(conn: psycopg.Connection, tenant: str) -> list[tuple[Any, ...]]:
    return conn.execute("SELECT severity, score, end_ts IS NULL, care, evidence FROM anomalies "
                        "WHERE tenant_id = %s", (tenant,)).fetchall()


def test_record_transitions_upserts_once_and_never_reopens(db_url: str, det_tenant: str) -> None:
    a = Anomaly(det_tenant, "m1", Kind.SPIKE, Severity.WARNING, 0.4, T0, None, {"w": 1})
    opened = Transition(a, "open")
    updated = Transition(replace(a, severity=Severity.CRITICAL, score=0.9, evidence={"w": 2}),
                         "update", T0 + MIN)
    closed = Transition(replace(a, severity=Severity.CRITICAL, score=0.9, end_us=T0 + 2 * MIN,
                                evidence={"w": 3}), "close")
    late_update = Transition(replace(a, score=0.1, evidence={"w": 4}), "update", T0 + 3 * MIN)
    with psycopg.connect(db_url) as conn:
        with conn.transaction():
            n = db.record_transitions(conn=conn, transitions=[opened, updated, closed], care=[False] * 3)
        assert n == 3
        assert _rows(conn, det_tenant) == [("critical", 0.9, False, False, {"w": 3})]
        with conn.transaction():  # a replay: nothing new, the closed row stays as it is
            n = db.record_transitions(conn=conn, transitions=[opened, updated, closed, late_update],
                                      care=lambda t: False)
        assert n == 1  # only the update never seen before is queued
        assert _rows(conn, det_tenant) == [("critical", 0.9, False, False, {"w": 3})]
        events = conn.execute("SELECT event_id FROM anomaly_outbox WHERE kafka_key = %s ORDER BY seq",
                              (f"{det_tenant}/m1",)).fetchall()
    assert [e[0] for e in events] == [t.event_id for t in (opened, updated, closed, late_update)]


def test_rows_of_a_deleted_tenant_are_skipped(db_url: str) -> None:
    a = Anomaly("no-such-tenant", "x", Kind.FALL, Severity.CRITICAL, 1.0, T0, None, {})
    with psycopg.connect(db_url) as conn, conn.transaction():
        assert db.record_transitions(conn=conn, transitions=[Transition(a, "open")], care=[True]) == 0
        db.save_device_states(conn=conn, rows=[("no-such-tenant", "x", b"{}", None, None, None)])


def test_states_offsets_round_trip(db_url: str, det_tenant: str) -> None:
    with psycopg.connect(db_url) as conn:
        with conn.transaction():
            db.save_device_states(conn=conn, rows=[(det_tenant, "m1", b'{"m": {"a": 1}}', T0, T0 + 5, 60.0),
                                                   (det_tenant, "h1", b'{}', None, None, None)])
            db.save_group_states(conn=conn, rows=[(det_tenant, "cabinet:c1", b'{"m": {}}')])
            db.save_offsets(conn=conn, consumer_group=f"g-{det_tenant}",
                            offsets={("maillage.readings", 0): 12, ("maillage.events", 1): 3})
        got = db.load_device_states(conn=conn, keys=[(det_tenant, "m1"), (det_tenant, "zz")])
        assert list(got) == [(det_tenant, "m1")]
        row = conn.execute("SELECT extract(epoch FROM last_ts) * 1e6, interval_s FROM detection_state "
                           "WHERE tenant_id = %s AND device_id = 'm1'", (det_tenant,)).fetchone()
        assert row == (T0, 60.0)
        assert db.load_group_states(conn=conn, keys=[(det_tenant, "cabinet:c1")])
        assert db.load_offsets(conn=conn, consumer_group=f"g-{det_tenant}") == {
            ("maillage.readings", 0): 12, ("maillage.events", 1): 3}
        info = db.device_rows(conn=conn, keys=[(det_tenant, "l1")])
    assert dict(zip(db.DEVICE_COLUMNS, info[0], strict=True))["meta"] == {"cabinet": "c1"}


def test_detector_states_are_kept_apart(db_url: str, det_tenant: str) -> None:
    with psycopg.connect(db_url) as conn:
        with conn.transaction():
            db.save_series(conn=conn, rows=[(det_tenant, "m1", "online:active_power_w", b'{"n": 1}')])
            db.save_series(conn=conn, rows=[(det_tenant, "m1", "online:active_power_w", b'{"n": 2}'),
                                            (det_tenant, "c1", "online:active_power_w", b'{"n": 5}')])
        got = db.load_series(conn=conn, keys=[(det_tenant, "m1"), (det_tenant, "h1")])
    assert got == {(det_tenant, "m1"): {"online:active_power_w": b'{"n": 2}'}}


def test_relay_resumes_after_the_row_produced_last(db_url: str, det_tenant: str) -> None:
    """Per partition, the offset of the last row produced (by commit order) and pruning keeps it."""
    a = Anomaly(det_tenant, "m1", Kind.SPIKE, Severity.WARNING, 0.4, T0 + 7, None, {})
    ts = [Transition(a, "open"), Transition(replace(a, end_us=T0 + MIN), "close")]
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("DELETE FROM anomaly_outbox")  # this test owns the relay's view
        with conn.transaction():
            db.record_transitions(conn=conn, transitions=ts, care=[False, False])
        # The broker restarted empty: the second row landed at a lower offset than the first.
        assert db.mark_produced(conn=conn, produced=[(ts[0].event_id, 0, 500), (ts[1].event_id, 0, 2)]) == 2
        assert db.last_produced_offsets(conn=conn) == {0: 2}
        conn.execute("UPDATE anomaly_outbox SET produced_at = now() - interval '8 days'")
        assert db.prune_outbox(conn=conn) == 1
        assert db.last_produced_offsets(conn=conn) == {0: 2}
