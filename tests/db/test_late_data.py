"""Acceptance 2: late and duplicate readings give the rollups a from-scratch computation gives."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest

from maillage.db import rollups
from maillage.db.readings import metric_ids, query_area, query_readings

E, P = "energy_import_wh", "active_power_w"
T0 = datetime(2025, 6, 10, 21, 0, tzinfo=UTC)  # 23:00 in Paris: the data spans local midnights
Q = timedelta(minutes=15)
Series = list[tuple[datetime, float]]


def _final_data(rng: random.Random) -> tuple[Series, Series]:
    """Two days of an index (irregular times, varying rate, a 5-hour gap) and of a power."""
    index: Series = []
    ts, value = T0, 1_000_000.0
    while ts < T0 + timedelta(days=2):
        index.append((ts, value))
        step = timedelta(seconds=rng.randrange(60, 1500))
        if T0 + timedelta(hours=20) <= ts < T0 + timedelta(hours=21):
            step = timedelta(hours=5)  # the meter was silent for a while
        ts += step
        value += rng.uniform(0, 3000) * step.total_seconds() / 3600
    power = [(t, rng.uniform(100, 5000)) for t, _ in index]
    return index, power


def _reference(index: Series, start: datetime, end: datetime) -> float:
    """Energy in [start, end): each step between readings spread evenly over its interval."""
    total = 0.0
    for (t0, v0), (t1, v1) in zip(index, index[1:], strict=False):
        overlap = (min(t1, end) - max(t0, start)).total_seconds()
        if overlap > 0:
            total += (v1 - v0) * overlap / (t1 - t0).total_seconds()
    return total


def _rollup_rows(conn: psycopg.Connection, pk: int) -> dict[str, dict[tuple[str, datetime], tuple]]:
    out = {}
    for grain in rollups.GRAINS:
        rows = conn.execute(
            f"SELECT m.name, r.bucket, r.n, r.vsum, r.vmin, r.vmax, r.energy FROM rollup_{grain} r "
            "JOIN metrics m ON m.id = r.metric_id WHERE r.device_pk = %s", (pk,)).fetchall()
        out[grain] = {(r[0], r[1]): tuple(round(x, 6) if isinstance(x, float) else x for x in r[2:])
                      for r in rows}
    return out


def _area_rows(conn: psycopg.Connection, tenant: str, site: str) -> dict[tuple, tuple]:
    rows = conn.execute(
        "SELECT metric_id, grain, bucket, devices, n, vsum, vmin, vmax, energy FROM rollup_area "
        "WHERE tenant_id = %s AND level = 'site' AND name = %s", (tenant, site)).fetchall()
    return {r[:3]: tuple(round(x, 6) if isinstance(x, float) else x for x in r[3:]) for r in rows}


def _xmins(conn: psycopg.Connection, pk: int) -> dict[tuple[str, datetime], int]:
    out = {}
    for grain in rollups.GRAINS:
        for bucket, xmin in conn.execute(
                f"SELECT bucket, xmin::text::bigint FROM rollup_{grain} WHERE device_pk = %s", (pk,)):
            out[(grain, bucket)] = xmin
    return out


def test_late_and_duplicate_readings_match_a_rebuild(
    conn: psycopg.Connection, make_tenant: Callable[..., str], make_device: Callable[..., int],
    put: Callable[..., int], refresh: Callable[[], None],
) -> None:
    """Readings sent late, in batches, some twice with another value: same rollups as at once."""
    rng = random.Random(6)
    index, power = _final_data(rng)
    tenant = make_tenant()
    late_pk = make_device(tenant, site="late")
    once_pk = make_device(tenant, site="once")

    order = list(range(len(index)))
    rng.shuffle(order)
    batches = [sorted(order[: len(order) // 2])] + [sorted(order[i::3]) for i in range(3)]
    for n, batch in enumerate(batches):
        put(late_pk, E, [index[i] for i in batch])
        put(late_pk, P, [power[i] for i in batch])
        # Duplicates of stored readings with other values: the first value stays.
        put(late_pk, E, [(index[i][0], -1.0) for i in batch[::5]])
        put(late_pk, P, [(power[i][0], -1.0) for i in batch[::5]])
        if n == 1:
            rollups.refresh_rollups(conn, limit=7)  # a partial refresh between two batches
        else:
            refresh()

    put(once_pk, E, index)
    put(once_pk, P, power)
    refresh()

    stored = conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE value < 0) FROM readings WHERE device_pk = %s",
        (late_pk,)).fetchone()
    assert stored == (2 * len(index), 0)
    late, once = _rollup_rows(conn, late_pk), _rollup_rows(conn, once_pk)
    for grain in rollups.GRAINS:
        assert late[grain] == once[grain], grain
    assert _area_rows(conn, tenant, "late") == _area_rows(conn, tenant, "once")

    # And both equal the energy computed independently, per quarter-hour and per local day.
    quarters = {b: e for (m, b), (_n, _s, _lo, _hi, e) in late["15m"].items() if m == E}
    assert len(quarters) == (index[-1][0] - T0) // Q + 1
    for bucket, energy in quarters.items():
        assert energy == pytest.approx(_reference(index, bucket, bucket + Q), abs=1e-5)
    paris = ZoneInfo("Europe/Paris")
    for row in query_readings(conn, device_pk=late_pk, metric=E, bucket="1d"):
        day = datetime.fromisoformat(row["bucket"])
        end = datetime.combine(day.date() + timedelta(days=1), day.time(), paris)
        assert row["value"] == pytest.approx(_reference(index, day, end), rel=1e-9)
    site = query_area(conn, tenant=tenant, level="site", name="late", metric=E, start=None,
                      end=None, bucket="1d")
    assert [r["value"] for r in site] == pytest.approx(
        [r["value"] for r in query_readings(conn, device_pk=late_pk, metric=E, bucket="1d")])


def test_a_late_reading_recomputes_only_its_buckets(
    conn: psycopg.Connection, make_tenant: Callable[..., str], make_device: Callable[..., int],
    put: Callable[..., int], refresh: Callable[[], None],
) -> None:
    """Rollup rows far from the late reading are not rewritten (no full rebuild)."""
    pk = make_device(make_tenant())
    put(pk, E, [(T0 + i * Q, 100.0 * i) for i in range(4 * 72)])
    refresh()
    before = _xmins(conn, pk)
    late = T0 + timedelta(hours=30, minutes=7)
    put(pk, E, [(late, 100.0 * 120 + 40)])  # between the readings of 06:00 and 06:15 UTC
    refresh()
    after = _xmins(conn, pk)
    assert before.keys() == after.keys()
    changed = {key for key in before if before[key] != after[key]}
    paris = ZoneInfo("Europe/Paris")
    local = late.astimezone(paris)
    assert changed == {
        ("15m", late.replace(minute=0)),
        ("1h", late.replace(minute=0)),
        ("1d", datetime.combine(local.date(), datetime.min.time(), paris)),
        ("1mo", datetime(2025, 6, 1, tzinfo=paris)),
    }


def test_two_refreshers_and_a_writer_at_once(
    db_url: str, conn: psycopg.Connection, make_tenant: Callable[..., str],
    make_device: Callable[..., int], put: Callable[..., int], refresh: Callable[[], None],
) -> None:
    """Two workers refreshing while late data arrives end with the from-scratch rollups."""
    rng = random.Random(7)
    index, power = _final_data(rng)
    tenant = make_tenant()
    pks = [make_device(tenant, site="busy") for _ in range(4)]  # several shards
    twin = make_device(tenant, site="calm")
    stop = threading.Event()
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with psycopg.connect(db_url, autocommit=True) as own:
                while not stop.is_set():
                    rollups.refresh_rollups(own, limit=25)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        order = list(range(len(index)))
        rng.shuffle(order)
        for chunk in (order[i::6] for i in range(6)):
            for pk in pks:
                put(pk, E, [index[i] for i in chunk])
                put(pk, P, [power[i] for i in chunk])
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors
    put(twin, E, index)
    put(twin, P, power)
    refresh()
    expected = _rollup_rows(conn, twin)
    for pk in pks:
        assert _rollup_rows(conn, pk) == expected
    area = _area_rows(conn, tenant, "busy")
    mid = metric_ids(conn, [E])[E]
    day_rows = {k: v for k, v in area.items() if k[0] == mid and k[1] == "1d"}
    calm = {k: v for k, v in _area_rows(conn, tenant, "calm").items() if k[0] == mid and k[1] == "1d"}
    assert day_rows.keys() == calm.keys()
    for key, (devices, *_rest, energy) in day_rows.items():
        assert devices == 4
        assert energy == pytest.approx(4 * calm[key][-1])
