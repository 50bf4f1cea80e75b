"""Load mode: N devices (100,000 and more) behind K relays, at a target rate.

Each relay is a registered device with its own MQTT credentials and session; it forwards the
readings of its devices as SenML packs, one name prefix per device
(`urn:dev:maillage:<device id>:`), the way a building gateway, a lighting segment controller or a
LoRaWAN network server forwards what its devices said. The relayed devices are registered in the
registry (so their readings are stored and queried under their own ids) but hold no MQTT account:
see docs/simulators.md for why one broker account per device does not scale on Mosquitto's
dynamic-security plugin.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson

from maillage.config import Settings
from maillage.errors import MaillageError
from maillage.registry.models import DeviceSpec, DeviceType
from maillage.simulators.engine import Publication
from maillage.simulators.progress import LiveView, summary
from maillage.simulators.publisher import MAX_UNACKED, MqttSink, Stats
from maillage.simulators.registration import register, write_import_file
from maillage.stack.state import database_url, file_auth, mqtt_admin, running_state


@dataclass(slots=True)
class LoadDevice:
    """The little state a load-mode device needs: a counter, a size, when it last spoke."""

    device_id: str
    type: DeviceType
    counter: float
    size: float
    last: float


Records = Callable[[LoadDevice, float, float, random.Random], list[dict[str, object]]]


def shape(hour: float) -> float:
    """A day in one curve: low at night, peaks at 8 h and 20 h."""
    return (0.5 + 0.6 * math.exp(-0.5 * ((hour - 8) / 1.2) ** 2)
            + 1.0 * math.exp(-0.5 * ((hour - 20) / 1.5) ** 2))


def _meter(d: LoadDevice, now: float, hour: float, rng: random.Random) -> list[dict[str, object]]:
    power = d.size * shape(hour) * rng.uniform(0.85, 1.15)
    d.counter += power * (now - d.last) / 3600
    return [{"n": "energy_import_wh", "u": "Wh", "v": round(d.counter)},
            {"n": "active_power_w", "u": "W", "v": round(power, 1)},
            {"n": "voltage_v", "u": "V", "v": round(rng.gauss(231, 1.5), 1)}]


def _lamp(d: LoadDevice, now: float, hour: float, rng: random.Random) -> list[dict[str, object]]:
    on = hour >= 17.5 or hour < 7.5  # a winter night, roughly
    power = d.size if on else 0.0
    d.counter += power * (now - d.last) / 3600
    return [{"n": "lamp_on", "v": 1 if on else 0}, {"n": "lamp_power_w", "u": "W", "v": power},
            {"n": "energy_import_wh", "u": "Wh", "v": round(d.counter, 1)}]


def _care(d: LoadDevice, now: float, hour: float, rng: random.Random) -> list[dict[str, object]]:
    battery = {"n": "battery_pct", "u": "%EL", "v": round(d.size, 1)}
    if d.type == DeviceType.CARE_ENV:
        return [{"n": "temperature_c", "u": "Cel", "v": round(rng.gauss(20.5, 0.6), 1)},
                {"n": "humidity_pct", "u": "%RH", "v": round(rng.gauss(50, 4), 1)}, battery]
    if d.type == DeviceType.CARE_BED:
        return [{"n": "bed_occupied", "v": 1 if (hour >= 22 or hour < 7) else 0}, battery]
    return [{"n": "motion", "v": 1 if rng.random() < 0.2 * shape(hour) else 0}, battery]


@dataclass(frozen=True)
class RelayKind:
    """What relays what: the relay's type, the relayed types, and their readings."""

    relay: DeviceType
    relayed: tuple[DeviceType, ...]
    records: Records
    size: tuple[float, float]


RELAYS: dict[str, RelayKind] = {
    # A senior residence's building gateway relaying every flat's sensors.
    "care_hub": RelayKind(DeviceType.CARE_HUB, (DeviceType.CARE_ENV, DeviceType.CARE_MOTION,
                                                DeviceType.CARE_MOTION, DeviceType.CARE_BED),
                          _care, (40, 100)),
    # A lighting segment controller relaying its lamp nodes.
    "lighting_cabinet": RelayKind(DeviceType.LIGHTING_CABINET, (DeviceType.STREETLIGHT,), _lamp,
                                  (30, 150)),
    # A data concentrator relaying electricity meters.
    "meter": RelayKind(DeviceType.METER, (DeviceType.METER,), _meter, (250, 1500)),
}


def fleet(n: int, relays: int, seed: int, kind: RelayKind) -> tuple[
        list[DeviceSpec], list[DeviceSpec], list[list[LoadDevice]]]:
    """Relay specs, relayed specs, and each relay's devices (round-robin, deterministic)."""
    rng = random.Random(f"{seed}/load")
    relay_specs = [DeviceSpec(device_id=f"relay-{k:04d}", type=kind.relay,
                              meta={"role": "relay"}) for k in range(relays)]
    specs: list[DeviceSpec] = []
    groups: list[list[LoadDevice]] = [[] for _ in range(relays)]
    now = time.time()
    for i in range(n):
        device_id = f"ld-{i:07d}"
        dtype = kind.relayed[i % len(kind.relayed)]
        relay = relay_specs[i % relays].device_id
        specs.append(DeviceSpec(device_id=device_id, type=dtype, meta={"relay": relay}))
        groups[i % relays].append(LoadDevice(device_id, dtype, float(rng.randrange(10**5, 10**7)),
                                             rng.uniform(*kind.size), now))
    return relay_specs, specs, groups


def pack(devices: Sequence[LoadDevice], now: float, kind: RelayKind, rng: random.Random) -> bytes:
    """One SenML pack holding a reading of each device, named by its id."""
    hour = (now / 3600 + 1) % 24  # close enough to French local time for a load shape
    bt = round(now, 3)
    records: list[dict[str, object]] = []
    for d in devices:
        recs = kind.records(d, now, hour, rng)
        d.last = now
        recs[0] = {"bn": f"urn:dev:maillage:{d.device_id}:", "bt": bt, **recs[0]}
        records += recs
    return orjson.dumps(records)


def run_load(*, settings: Settings, tenant: str, devices: int, rate: float, connections: int,
             batch: int, relay_type: str, duration_s: float, seed: int,
             registration_file: Path | None, stop: threading.Event) -> dict[str, object]:
    """Register the fleet, then publish `rate` device readings per second until stopped."""
    kind = RELAYS.get(relay_type)
    if kind is None:
        raise MaillageError(f"--relay-type: one of {', '.join(RELAYS)}")
    if batch < 1 or devices < 1:
        raise MaillageError("--batch and --devices must be at least 1")
    relays = max(1, min(connections, devices // batch))
    relay_specs, relayed_specs, groups = fleet(devices, relays, seed, kind)
    if registration_file is not None:
        write_import_file(registration_file, tenant, [*relay_specs, *relayed_specs])
        return {"registration_file": str(registration_file), "devices": devices, "relays": relays}
    t0 = time.monotonic()
    creds = register(database_url=database_url(settings), mqtt_admin=mqtt_admin(settings),
                     tenant=tenant, tenant_name="Load test", timezone="Europe/Paris",
                     specs=relay_specs, relayed=relayed_specs, broker=file_auth(settings))
    registration_s = time.monotonic() - t0
    state = running_state(settings)
    stats = Stats(devices=devices)
    sink = MqttSink(state.mqtt_host, state.mqtt_port, creds, stats=stats)
    sink.open()
    sink.drain(10)
    status_acks = stats.acked  # the relays' retained `online`, not load
    stats.devices = devices
    stats.started = time.monotonic()
    msg_rate = rate / batch
    cursors = [0] * relays
    rng = random.Random(seed)
    sent = 0
    turn = 0
    deadline = time.monotonic() + duration_s if duration_s > 0 else None
    with LiveView(stats, title=f"maillage simulate --load - {devices:,} devices via {relays} relays",
                  target_rate=msg_rate) as view:
        last_tick = 0.0
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            now_m = time.monotonic()
            due = int((now_m - stats.started) * msg_rate) - sent
            if due <= 0 or sink.backlog() >= MAX_UNACKED:
                sink.pump(0.002)
            else:
                now = time.time()
                for _ in range(min(due, 500)):
                    k = turn % relays
                    turn += 1
                    group = groups[k]
                    i = cursors[k]
                    chosen = [group[(i + j) % len(group)] for j in range(min(batch, len(group)))]
                    cursors[k] = (i + len(chosen)) % len(group)
                    sink.send(Publication(datetime.fromtimestamp(now, UTC), relay_specs[k].device_id,
                                          "up/senml", pack(chosen, now, kind, rng)))
                    sent += 1
                sink.pump(0)
            if now_m - last_tick >= 0.25:
                last_tick = now_m
                view.tick()
        sink.drain(10)
    elapsed = stats.elapsed
    data_acked = stats.acked - status_acks
    sink.close()
    result = summary(stats)
    result.update({
        "tenant": tenant, "relay_type": relay_type, "relays": relays, "batch": batch, "registration_s": round(registration_s, 1),
        "elapsed_s": round(elapsed, 2), "packs_acknowledged": data_acked,
        "target_msgs_per_s": round(msg_rate, 1), "target_readings_per_s": rate,
        "achieved_msgs_per_s": round(data_acked / elapsed, 1),
        "achieved_readings_per_s": round(data_acked * batch / elapsed, 1),
    })
    return result
