"""The fault suite of issue 15: every part of a real `maillage up` killed mid-load, rounds of it.

One stack (embedded PostgreSQL, Mosquitto, Apache Kafka; real gateway, storage, detection,
alerting and API processes), one steady QoS 1 load of meters and fall pendants on persistent
sessions, and the faults one after another in the same stream: SIGKILL of the gateway, the
storage, detection and alerting processors and the API; PostgreSQL stopped at once (immediate
shutdown: crash recovery at its next start); Mosquitto restarted (SIGTERM: it saves its store;
its SIGKILL loss bound is `test_broker_autosave.py`'s). `maillage up` starts each again.

After each fault (cheap): the part runs again under a new pid (the API answers, PostgreSQL accepts
a connection, devices are acknowledged again after Mosquitto's restart); the next fault follows at
once. After each round: the pipeline has caught up with everything acknowledged so far (readings
stored, falls counted on alerts). At the end (row by row): every acknowledged reading stored exactly
once, nothing stored that was not acknowledged; every acknowledged fall one anomaly, and one
alert per pendant whose count is its number of falls.

`MAILLAGE_FAULT_ROUNDS` (default 3) sets how many times each fault runs; a long run, e.g.
`MAILLAGE_FAULT_ROUNDS=20 .venv/bin/pytest tests/reliability/test_fault_suite.py -o log_cli=true`,
logs a line per fault (seconds until the part is back), per round (seconds to catch up) and the totals.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import psycopg
import pytest

from tests.e2e.conftest import Stack, wait_until
from tests.reliability.load import Load, fall_alerts, fall_anomalies, progress, stored_readings

log = logging.getLogger(__name__)

ROUNDS = int(os.environ.get("MAILLAGE_FAULT_ROUNDS", "3"))
RECOVER_S = 120.0
"""A part must be back and the pipeline caught up within this (a loaded CI machine)."""

pytestmark = pytest.mark.timeout(300 + ROUNDS * 200)


@dataclass(frozen=True)
class Fault:
    """What is done to which child of `maillage up` (its name in state.json)."""

    name: str
    child: str
    sig: signal.Signals


FAULTS = (
    Fault("gateway SIGKILL", "gateway-0", signal.SIGKILL),
    Fault("storage SIGKILL", "storage-0", signal.SIGKILL),
    Fault("detection SIGKILL", "detection", signal.SIGKILL),
    Fault("alerting SIGKILL", "alerting", signal.SIGKILL),
    Fault("API SIGKILL", "api", signal.SIGKILL),
    Fault("PostgreSQL restart (immediate shutdown)", "postgres", signal.SIGQUIT),
    Fault("Mosquitto restart", "mosquitto", signal.SIGTERM),
)


def _pids(stack: Stack) -> dict[str, int]:
    return dict(json.loads((stack.data_dir / "state.json").read_text())["pids"])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _safe(check: Callable[[], bool]) -> Callable[[], bool]:
    """A check that is simply false while the database (or the API) is still away."""
    def run() -> bool:
        try:
            return check()
        except (psycopg.OperationalError, httpx.HTTPError):
            return False
    return run


def _api_ok(stack: Stack) -> bool:
    return httpx.get(stack.api + "/health", timeout=2).status_code == 200


def _db_ok(stack: Stack) -> bool:
    with psycopg.connect(stack.db(), connect_timeout=3) as conn:
        return conn.execute("SELECT 1").fetchone() == (1,)


def _inflict(stack: Stack, load: Load, fault: Fault) -> float:
    """Do the fault; wait until the part runs again (cheap checks only). Seconds taken."""
    began = time.monotonic()
    old = _pids(stack)[fault.child]
    os.kill(old, fault.sig)
    assert wait_until(lambda: _pids(stack)[fault.child] != old and _alive(_pids(stack)[fault.child]),
                      timeout=RECOVER_S), f"{fault.name}: {fault.child} was not started again"
    if fault.child == "api":
        assert wait_until(_safe(lambda: _api_ok(stack)), timeout=RECOVER_S), "the API did not answer"
    if fault.child == "postgres":
        assert wait_until(_safe(lambda: _db_ok(stack)), timeout=RECOVER_S), "PostgreSQL did not answer"
    if fault.child == "mosquitto":  # the devices reconnected and are acknowledged again
        fresh = len(load.readings()) + len(load.meters)
        assert wait_until(lambda: len(load.readings()) >= fresh, timeout=RECOVER_S), (
            "devices got no acknowledgement since Mosquitto restarted")
    return time.monotonic() - began


def _catch_up(stack: Stack, load: Load, tenant: str) -> float:
    """Wait until what was acknowledged so far is stored and alerted (counts). Seconds taken."""
    began = time.monotonic()
    readings, falls = len(load.readings()), len(load.falls())
    caught_up = _safe(lambda: all(
        got >= want for got, want in zip(progress(stack.db(), tenant), (readings, falls), strict=True)))
    assert wait_until(caught_up, timeout=RECOVER_S, interval=0.5), (
        f"not caught up ({progress(stack.db(), tenant)} of {(readings, falls)})")
    return time.monotonic() - began


def test_every_fault_during_a_steady_load_loses_nothing_and_doubles_nothing(up: Stack) -> None:
    stack = up
    tenant = stack.tenant()
    meters = [stack.device(tenant, "meter") for _ in range(8)]
    pendants = [stack.device(tenant, "care_button") for _ in range(4)]
    load = Load(stack, meters, pendants, ticks_per_s=5.0, fall_every=5).start()
    taken: dict[str, list[float]] = {}
    try:
        assert wait_until(_safe(lambda: min(progress(stack.db(), tenant)) > 0), timeout=60), \
            "the load never reached the database"
        for round_ in range(ROUNDS):
            for fault in FAULTS:
                seconds = _inflict(stack, load, fault)
                taken.setdefault(fault.name, []).append(seconds)
                log.warning("round %d %s: back in %.1f s", round_ + 1, fault.name, seconds)
            log.warning("round %d: the pipeline caught up in %.1f s", round_ + 1,
                        _catch_up(stack, load, tenant))
    finally:
        load.stop()
    assert load.refused == 0

    # Every acknowledged reading stored once; nothing stored that was not acknowledged.
    want = load.readings()
    assert wait_until(_safe(lambda: len(stored_readings(stack.db(), tenant)) >= len(want)),
                      timeout=RECOVER_S, interval=1.0)
    rows = stored_readings(stack.db(), tenant)
    missing = want - set(rows)
    assert not missing, f"{len(missing)} acknowledged readings lost, e.g. {sorted(missing)[:5]}"
    doubled = [k for k, n in Counter(rows).items() if n > 1]
    assert not doubled, f"{len(doubled)} readings stored twice, e.g. {doubled[:5]}"
    assert set(rows) == want

    # Every acknowledged fall: one anomaly, counted once on its pendant's one alert.
    falls = load.falls()
    per_pendant = Counter(device for device, _ in falls)
    assert wait_until(_safe(lambda: {d: sum(c) for d, c in fall_alerts(stack.db(), tenant).items()}
                            == dict(per_pendant)), timeout=RECOVER_S, interval=1.0)
    anomalies = fall_anomalies(stack.db(), tenant)
    assert Counter(anomalies) == Counter(falls), "a fall was lost or detected twice"
    assert fall_alerts(stack.db(), tenant) == {d: [n] for d, n in per_pendant.items()}
    log.warning("%d rounds of %d faults: %d readings and %d falls acknowledged, 0 lost, 0 doubled; "
                "slowest return per fault: %s", ROUNDS, len(FAULTS), len(want), len(falls),
                "; ".join(f"{k} {max(v):.1f} s" for k, v in taken.items()))
