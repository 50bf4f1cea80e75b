"""The verification of a run: rows counted per device and metric against what was sent, the losses."""

from __future__ import annotations

from collections import Counter
from typing import Any

import psycopg

from maillage.bench import queries
from maillage.bench.fleet import Archetype
from maillage.bench.probes import LatencyProbe
from maillage.bench.progress import Progress
from maillage.bench.publish import Session, WorkerResult
from maillage.bench.report import Dashboard


def expected(*, worker_results: list[WorkerResult], sessions: list[list[Session]],
             mix: list[Archetype], probe: LatencyProbe | None,
             run_id: str) -> tuple[Counter[tuple[str, str]], Counter[str], int, int]:
    """Rows expected per (device, metric), events per device, readings and messages published."""
    exp: Counter[tuple[str, str]] = Counter()
    events: Counter[str] = Counter()
    by_user = {s.username: s for w in sessions for s in w}
    messages = 0
    for r in worker_results:
        for user, per_template in r.sent.items():
            s = by_user[user]
            did = user.split("/", 1)[1]
            a = mix[s.archetype]
            for k, n in enumerate(per_template):
                if not n:
                    continue
                messages += n
                t = a.templates[k]
                for m in t.metrics:
                    exp[(did, m)] += n
                if t.events:
                    events[did] += n * t.events
    if probe is not None:
        did = f"{run_id}-probe"
        for m in ("energy_import_wh", "active_power_w", "voltage_v", "current_a"):
            exp[(did, m)] += probe.acked
        messages += probe.acked
    return exp, events, sum(exp.values()), messages


def count_rows(device_ids: list[str], *, db_url: str,
               device_pks: dict[str, int]) -> tuple[Counter[tuple[str, str]], Counter[str]]:
    """Rows stored per (device, metric) and events per device, of these devices."""
    pks = [device_pks[d] for d in device_ids if d in device_pks]
    with psycopg.connect(db_url, autocommit=True) as conn:
        rows = queries.readings_by_device_metric(conn=conn, device_pks=pks)
        ev = queries.events_by_device(conn=conn, device_pks=pks)
    return rows, ev


def compare(exp: Counter[Any], got: Counter[Any], *, lost_detail: list[str]) -> tuple[int, int]:
    """Lost and unexpected counts; the first 20 shortfalls are noted in `lost_detail`."""
    lost = sum(max(0, n - got.get(k, 0)) for k, n in exp.items())
    extra = sum(max(0, n - exp.get(k, 0)) for k, n in got.items())
    for k, n in exp.items():
        if n > got.get(k, 0) and len(lost_detail) < 20:
            lost_detail.append(f"{k}: expected {n}, stored {got.get(k, 0)}")
    return lost, extra


def verify(*, ui: Dashboard, progress: Progress, worker_results: list[WorkerResult],
           sessions: list[list[Session]], mix: list[Archetype], probe: LatencyProbe | None,
           run_id: str, feed_counts: Counter[tuple[str, str]], failures: list[str],
           lost_detail: list[str]) -> dict[str, Any]:
    """Everything counted against what was sent; a failure noted for each loss or rejection."""
    ui.phase("verification", None)
    exp, exp_events, published, messages = expected(worker_results=worker_results, sessions=sessions,
                                                    mix=mix, probe=probe, run_id=run_id)
    mqtt_devices = sorted({d for d, _ in exp} | set(exp_events))
    got, got_events = count_rows(mqtt_devices, db_url=progress.db_url, device_pks=progress.device_pks)
    lost, extra = compare(exp, got, lost_detail=lost_detail)
    ev_lost, ev_extra = compare(exp_events, got_events, lost_detail=lost_detail)
    feed_got, _ = count_rows(sorted({d for d, _ in feed_counts}), db_url=progress.db_url,
                             device_pks=progress.device_pks)
    feed_lost, feed_extra = compare(feed_counts, feed_got, lost_detail=lost_detail)
    end = progress.snap()
    assert progress.base is not None
    dup = end.duplicate_readings - progress.base.duplicate_readings
    rejected = end.rejected_messages - progress.base.rejected_messages
    if lost:
        failures.append(f"{lost} readings published over MQTT were not stored")
    if ev_lost:
        failures.append(f"{ev_lost} events published over MQTT were not stored")
    if feed_lost:
        failures.append(f"{feed_lost} readings of the storage feed were not stored")
    if rejected:
        failures.append(f"the gateway rejected {rejected:.0f} bench messages (see maillage.dlq)")
    ui.finish(f"lost {lost}, unexpected {extra}, duplicates absorbed {dup:.0f}")
    return {"published": published, "stored": sum(min(n, got.get(k, 0)) for k, n in exp.items()),
            "lost": lost, "unexpected": extra, "duplicated": int(dup), "messages_published": messages,
            "events_published": sum(exp_events.values()), "events_lost": ev_lost, "events_unexpected": ev_extra,
            "rejected": int(rejected), "feed_lost": feed_lost, "feed_unexpected": feed_extra}
