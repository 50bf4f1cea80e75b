"""Load mode: N meters (100,000 and more) behind K data concentrators, at a target rate.

Each concentrator is a registered device with its own MQTT credentials and session; it relays
the readings of its meters as SenML packs, one name prefix per meter
(`urn:dev:maillage:<meter id>:`), the way a PLC or LoRa concentrator forwards what its meters
said. The meters are registered in the registry (so their readings can be stored and queried)
but hold no MQTT account: see docs/simulators.md for why one account per meter does not scale on
Mosquitto's dynamic-security plugin.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Sequence
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

MIN_BATCH = 2  # a pack naming several meters is what tells the parser it is relayed


@dataclass(slots=True)
class LoadMeter:
    """The little state a load-mode meter needs: its index and its size."""

    device_id: str
    index_wh: float
    base_w: float
    last: float


def fleet(n: int, relays: int, seed: int) -> tuple[list[DeviceSpec], list[DeviceSpec],
                                                   list[list[LoadMeter]]]:
    """Relay specs, meter specs, and each relay's meters (round-robin, deterministic)."""
    rng = random.Random(f"{seed}/load")
    relay_specs = [DeviceSpec(device_id=f"conc-{k:04d}", type=DeviceType.METER,
                              meta={"role": "concentrator"}) for k in range(relays)]
    meter_specs: list[DeviceSpec] = []
    groups: list[list[LoadMeter]] = [[] for _ in range(relays)]
    now = time.time()
    for i in range(n):
        device_id = f"lm-{i:07d}"
        relay = relay_specs[i % relays].device_id
        meter_specs.append(DeviceSpec(device_id=device_id, type=DeviceType.METER,
                                      meta={"relay": relay, "load": True}))
        groups[i % relays].append(LoadMeter(device_id, float(rng.randrange(10**6, 5 * 10**7)),
                                            rng.uniform(250, 1500), now))
    return relay_specs, meter_specs, groups


def shape(hour: float) -> float:
    """A household day in one curve: low at night, peaks at 8 h and 20 h."""
    return (0.5 + 0.6 * math.exp(-0.5 * ((hour - 8) / 1.2) ** 2)
            + 1.0 * math.exp(-0.5 * ((hour - 20) / 1.5) ** 2))


def pack(meters: Sequence[LoadMeter], now: float, rng: random.Random) -> bytes:
    """One SenML pack with a reading of each meter (index, power, voltage)."""
    hour = (now / 3600 + 1) % 24  # close enough to French local time for a load shape
    records: list[dict[str, object]] = []
    bt = round(now, 3)
    for m in meters:
        power = m.base_w * shape(hour) * rng.uniform(0.85, 1.15)
        m.index_wh += power * (now - m.last) / 3600
        m.last = now
        records.append({"bn": f"urn:dev:maillage:{m.device_id}:", "bt": bt,
                        "n": "energy_import_wh", "u": "Wh", "v": round(m.index_wh)})
        records.append({"n": "active_power_w", "u": "W", "v": round(power, 1)})
        records.append({"n": "voltage_v", "u": "V", "v": round(rng.gauss(231, 1.5), 1)})
    return orjson.dumps(records)


def run_load(*, settings: Settings, tenant: str, devices: int, rate: float, connections: int,
             batch: int, duration_s: float, seed: int, registration_file: Path | None,
             stop: threading.Event) -> dict[str, object]:
    """Register the fleet, then publish `rate` meter readings per second until stopped."""
    if batch < MIN_BATCH:
        raise MaillageError(f"--batch must be at least {MIN_BATCH} (a relayed pack names several meters)")
    relays = max(1, min(connections, devices // batch))
    relay_specs, meter_specs, groups = fleet(devices, relays, seed)
    if registration_file is not None:
        write_import_file(registration_file, tenant, [*relay_specs, *meter_specs])
        return {"registration_file": str(registration_file), "devices": devices, "relays": relays}
    from maillage.stack.state import database_url, mqtt_admin, running_state

    t0 = time.monotonic()
    creds = register(database_url=database_url(settings), mqtt_admin=mqtt_admin(settings),
                     tenant=tenant, tenant_name="Load test", timezone="Europe/Paris",
                     specs=relay_specs, relayed=meter_specs)
    registration_s = time.monotonic() - t0
    state = running_state(settings)
    stats = Stats(devices=devices)
    sink = MqttSink(state.mqtt_host, state.mqtt_port, creds, stats=stats)
    sink.open()
    status_acks = stats.acked  # the relays' retained `online`, not load
    stats.started = time.monotonic()
    msg_rate = rate / batch
    cursors = [0] * relays
    rng = random.Random(seed)
    sent = 0
    turn = 0
    deadline = time.monotonic() + duration_s if duration_s > 0 else None
    with LiveView(stats, title=f"maillage simulate --load - {devices:,} meters via {relays} relays",
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
                                          "up/senml", pack(chosen, now, rng)))
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
        "tenant": tenant, "relays": relays, "batch": batch, "registration_s": round(registration_s, 1),
        "elapsed_s": round(elapsed, 2), "packs_acknowledged": data_acked,
        "target_msgs_per_s": round(msg_rate, 1), "target_readings_per_s": rate,
        "achieved_msgs_per_s": round(data_acked / elapsed, 1),
        "achieved_readings_per_s": round(data_acked * batch / elapsed, 1),
    })
    return result
