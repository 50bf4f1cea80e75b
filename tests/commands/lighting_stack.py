"""One `maillage up` stack with a simulated lit street network, shared by tests/commands and
tests/control (started by whichever asks first, stopped at the end of the session).

The simulated commune sits at the longitude where it is night now (picked with the simulator's
own astronomical schedule), so its LED lamps burn all night at 100 % while the tests run at any
hour; they report every half second. Command delivery is tuned short (ack wait 0.6 s, three
attempts, back-off x2) so a silent device fails within seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest

from maillage.registry.devices import register
from maillage.registry.models import DeviceSpec
from maillage.registry.tokens import create_token
from maillage.simulators.scenario import LightingPolicy
from maillage.simulators.streetlights import Schedule
from tests.e2e.conftest import Stack, maillage_cmd, running_stack, wait_until

COMMUNE = "Nuitville"
ENV = {"MAILLAGE_COMMAND_ACK_TIMEOUT_S": "0.6", "MAILLAGE_COMMAND_MAX_ATTEMPTS": "3",
       "MAILLAGE_COMMAND_BACKOFF": "2"}


def night_longitude(now: datetime, minutes: int = 30) -> float:
    """A longitude on the equator where the lamps stay lit from `now` for `minutes`."""
    policy = LightingPolicy(mode="all_night", presence_boost_s=0)
    utc = ZoneInfo("UTC")
    hour = now.hour + now.minute / 60
    for shift in range(0, 24):  # start from local solar midnight, then around it
        lon = ((-15 * (hour + shift / 4) + 180) % 360) - 180
        sched = Schedule(0.0, lon, policy, utc, 0)
        if all(sched.is_dark(now + timedelta(minutes=m)) for m in range(0, minutes + 1, 5)):
            return round(lon, 3)
    raise AssertionError("no dark longitude found")


def lamp_power_w(nominal_w: float, level: float) -> float:
    """The simulated LED lamp's power at a level (its model: 8 % + 92 % x level)."""
    return 0.0 if level <= 0 else round(nominal_w * (0.08 + 0.92 * level / 100), 1)


@dataclass
class LightingWorld:
    """The stack, the simulated tenant, its admin token, and its lamps by street."""

    stack: Stack
    tenant: str
    token: str
    streets: dict[str, list[str]]
    nominal_w: dict[str, float]
    extra: dict[str, Any] = field(default_factory=dict)

    def add_device(self, device_id: str, type_: str, **meta: Any) -> None:
        """Register a device straight in the registry (no MQTT access: it never connects)."""
        with psycopg.connect(self.stack.db(), autocommit=True) as conn:
            register(conn, [(self.tenant, DeviceSpec(device_id=device_id, type=type_, meta=meta))],
                     None)

    def make_token(self, role: str) -> str:
        """A token of the tenant, straight from the registry."""
        with psycopg.connect(self.stack.db(), autocommit=True) as conn:
            return create_token(conn, tenant=self.tenant, role=role)

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}

    def post(self, path: str, body: Any, token: str | None = None, **params: Any) -> httpx.Response:
        return httpx.post(self.stack.api + path, json=body, params=params,
                          headers=self.headers(token), timeout=30)

    def get(self, path: str, token: str | None = None, **params: Any) -> httpx.Response:
        return httpx.get(self.stack.api + path, params=params, headers=self.headers(token),
                         timeout=30)

    def command(self, command_id: int) -> dict[str, Any]:
        r = self.get(f"/v1/commands/{command_id}")
        assert r.status_code == 200, r.text
        doc: dict[str, Any] = r.json()
        return doc

    def wait_command(self, command_id: int, states: tuple[str, ...] = ("done", "failed"),
                     timeout: float = 30) -> dict[str, Any]:
        """Poll a command until it reaches one of `states`; returns it."""
        last: dict[str, Any] = {}

        def reached() -> bool:
            nonlocal last
            last = self.command(command_id)
            return last["state"] in states

        assert wait_until(reached, timeout, 0.05), f"command {command_id} stuck: {last}"
        return last

    def readings(self, device: str, metric: str, since: datetime) -> list[dict[str, Any]]:
        r = self.get(f"/v1/devices/{device}/readings", metric=metric, **{"from": since.isoformat()})
        assert r.status_code == 200, r.text
        items: list[dict[str, Any]] = r.json()["items"]
        return items

    def wait_level(self, devices: list[str], level: float, since: datetime,
                   timeout: float = 20) -> None:
        """Wait until each device's readings after `since` show `level` and its power."""
        for d in devices:
            def shows(d: str = d) -> bool:
                dims = [x for x in self.readings(d, "dimming_pct", since) if x["value"] == level]
                power = [x for x in self.readings(d, "lamp_power_w", since)
                         if x["value"] == lamp_power_w(self.nominal_w[d], level)]
                return bool(dims) and bool(power)

            assert wait_until(shows, timeout, 0.2), (
                f"{d}: no reading at {level} % since {since}: "
                f"{self.readings(d, 'dimming_pct', since)[-5:]}")


@contextmanager
def lit_stack() -> Iterator[Stack]:
    """A fresh `maillage up` with the short command settings; `MAILLAGE_TEST_LIGHTING_STACK`
    names the data dir of one already running instead (started with ENV, for quick reruns)."""
    existing = os.environ.get("MAILLAGE_TEST_LIGHTING_STACK")
    if existing:
        out = maillage_cmd(Path(existing), "status", "--json")
        yield Stack(Path(existing), json.loads(out.stdout))
        return
    with running_stack("maillage-lighting-", env_extra=ENV) as (data_dir, status):
        yield Stack(data_dir, status)


def _scenario(tenant: str, lon: float) -> str:
    return json.dumps({
        "tenant": tenant, "timezone": "UTC", "seed": 7,
        "communes": [{"name": COMMUNE, "lat": 0.0, "lon": lon, "districts": ["centre"],
                      "lighting": {"mode": "all_night", "presence_boost_s": 0}}],
        "fleet": {"streetlights": 6, "lamps_per_cabinet": 3, "led_share": 1.0,
                  "presence_share": 0.0, "luminosity_per_commune": 0},
        "intervals": {"streetlight_s": 0.5, "cabinet_s": 5},
        "anomalies": {"enabled": False},
    })


@contextmanager
def lighting_world() -> Iterator[LightingWorld]:
    """The stack, then the simulator of a small lit commune (see the module docstring)."""
    with ExitStack() as es:
        stack = es.enter_context(lit_stack())
        data_dir = stack.data_dir
        tenant = f"l{uuid.uuid4().hex[:10]}"
        scenario = data_dir.parent / "lighting.yaml"
        scenario.write_text(_scenario(tenant, night_longitude(datetime.now(UTC))))
        env = dict(os.environ, MAILLAGE_DATA_DIR=str(data_dir))
        env.pop("MAILLAGE_DATABASE_URL", None)
        log = es.enter_context(open(data_dir.parent / "simulator.log", "wb"))
        sim = subprocess.Popen([sys.executable, "-m", "maillage", "simulate", "--scenario",
                                str(scenario)], stdout=log, stderr=subprocess.STDOUT, env=env)

        def stop_sim() -> None:
            sim.send_signal(signal.SIGINT)
            try:
                sim.wait(20)
            except subprocess.TimeoutExpired:
                sim.kill()

        es.callback(stop_sim)
        token = ""
        deadline = time.time() + 90
        while not token and time.time() < deadline:  # the simulator creates the tenant
            assert sim.poll() is None, (data_dir.parent / "simulator.log").read_text()
            made = stack.cli("tokens", "create", "--tenant", tenant, "--role", "admin", "--json",
                             check=False)
            if made.returncode == 0:
                token = str(json.loads(made.stdout)["token"])
            else:
                time.sleep(0.5)
        assert token, "the simulator did not create its tenant"
        devices: list[dict[str, Any]] = []

        def registered() -> bool:
            nonlocal devices
            r = httpx.get(stack.api + "/v1/devices", params={"limit": 100},
                          headers={"Authorization": f"Bearer {token}"}, timeout=10)
            devices = [d for d in r.json()["items"] if d["type"] == "streetlight"]
            return len(devices) == 6

        assert wait_until(registered, 60, 0.5), devices
        streets: dict[str, list[str]] = {}
        for d in devices:
            streets.setdefault(d["meta"]["street"], []).append(d["device_id"])
        world = LightingWorld(stack, tenant, token, streets,
                              {d["device_id"]: float(d["meta"]["nominal_power_w"]) for d in devices})
        since = datetime.now(UTC) - timedelta(seconds=5)
        world.wait_level(sorted(world.nominal_w), 100.0, since, timeout=60)
        yield world


_SHARED: dict[str, LightingWorld] = {}
_STOP: list[Callable[[], None]] = []
USERS = ("commands", "control")
"""The test folders sharing the world (next to each other in the run)."""


def shared_world(request: pytest.FixtureRequest) -> LightingWorld:
    """The world, started on first use and stopped once the run leaves its folders
    (`release_when_left`, called after each test) or at the end of the session."""
    if "world" not in _SHARED:
        cm = lighting_world()
        _SHARED["world"] = cm.__enter__()

        def stop() -> None:
            if _SHARED.pop("world", None) is not None:
                cm.__exit__(None, None, None)

        _STOP[:] = [stop]
        request.config.add_cleanup(stop)
    return _SHARED["world"]


def release_when_left(nextitem: pytest.Item | None) -> None:
    """Stop the world when the next test is not in one of its folders: an idle stack left
    running burns a good part of a core (Kafka's JVM, the processors' polls) for the rest of
    the run."""
    if not _STOP or (nextitem is not None and nextitem.path.parent.name in USERS):
        return
    _STOP.pop()()
