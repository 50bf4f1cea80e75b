"""The simulated clock: steps every device model in time order and yields its publications.

Nothing here reads the wall clock: for one scenario, seed and start, the stream of
`Publication`s is always the same, whatever the speed it is later published at.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from maillage.simulators import payloads
from maillage.simulators.anomalies import Injection
from maillage.simulators.base import DeviceEvent, DeviceModel, MeterReading, Output, Sample
from maillage.simulators.meters import MeterModel
from maillage.simulators.scenario import Scenario
from maillage.simulators.territory import MeterFormat, Territory, build_territory


@dataclass(frozen=True, slots=True)
class Publication:
    """One MQTT message a device sends at simulated time `at`."""

    at: datetime
    device_id: str
    channel: str
    payload: bytes


Encoder = Callable[[Output, int], tuple[str, bytes]]


def json_encoder(out: Output, seq: int) -> tuple[str, bytes]:
    """Canonical JSON for samples, `up/event` for events."""
    if isinstance(out, DeviceEvent):
        return "up/event", payloads.event_json(out, seq)
    sample = out.sample() if isinstance(out, MeterReading) else out
    return "up/json", payloads.canonical_json([sample], seq)


def meter_encoder(fmt: MeterFormat, adsc: str, tariff: str) -> Encoder:
    """The encoder of a meter's format (TIC frames carry no sequence number)."""

    def encode(out: Output, seq: int) -> tuple[str, bytes]:
        if not isinstance(out, MeterReading):
            return json_encoder(out, seq)
        if fmt == "tic_historique":
            return "up/tic", payloads.tic_historique(
                adco=adsc, tariff=tariff, isousc_a=out.subscribed_va // 200,
                index_wh=out.registers_wh, period=out.period, iinst_a=round(out.current_a),
                papp_va=round(out.apparent_va))
        if fmt == "tic_standard":
            return "up/tic", payloads.tic_standard(
                adsc=adsc, ts=out.ts, tariff=tariff, index_wh=out.registers_wh,
                export_wh=out.export_wh, period=out.period, irms_a=round(out.current_a),
                urms_v=round(out.voltage_v), pref_kva=out.subscribed_va // 1000,
                sinsts_va=round(out.apparent_va),
                sinsti_va=round(out.export_va) if out.export_va is not None else None)
        if fmt == "senml":
            return "up/senml", payloads.senml(out.sample())
        return json_encoder(out, seq)

    return encode


@dataclass
class _Device:
    model: DeviceModel
    rng: random.Random
    encode: Encoder
    seq: int = 0


class Engine:
    """Steps the models of a territory in simulated-time order."""

    def __init__(self, scenario: Scenario, *, start: datetime,
                 injections: list[Injection] | None = None,
                 territory: Territory | None = None) -> None:
        self.scenario = scenario
        self.start = start
        self.territory = territory or build_territory(scenario)
        self.tz = ZoneInfo(scenario.timezone)
        by_device: dict[str, list[Injection]] = {}
        for inj in injections or []:
            by_device.setdefault(inj.device_id, []).append(inj)
        self.devices = self._build(by_device)

    def _rng(self, device_id: str) -> random.Random:
        return random.Random(f"{self.scenario.seed}/{device_id}")

    def _build(self, injections: dict[str, list[Injection]]) -> list[_Device]:
        sc, t = self.scenario, self.territory
        out: list[_Device] = []
        for site in t.meters:
            rng = self._rng(site.device_id)
            fmt = site.fmt
            # Mode historique has no production registers: producers' modems use mode standard.
            if fmt == "tic_historique" and site.pv_kwc:
                fmt = "tic_standard"
            model = MeterModel(site, seed=sc.seed, tz=self.tz, interval_s=sc.intervals.meter_s,
                               injections=injections.get(site.device_id), rng=rng)
            out.append(_Device(model, rng, meter_encoder(fmt, site.adsc, site.tariff)))
        return out

    def publications(self, until: datetime | None = None) -> Iterator[Publication]:
        """Publications in simulated-time order, up to `until` (excluded), or forever."""
        heap = [(d.model.first_due(self.start), i) for i, d in enumerate(self.devices)]
        heapq.heapify(heap)
        while heap:
            due, i = heap[0]
            if until is not None and due >= until:
                return
            dev = self.devices[i]
            now = due.replace(microsecond=0)
            for out in dev.model.next_reading(now, dev.rng):
                dev.seq += 1
                channel, payload = dev.encode(out, dev.seq)
                yield Publication(now, dev.model.device_id, channel, payload)
            heapq.heapreplace(heap, (dev.model.next_due(due), i))


def as_sample(out: Output) -> Sample | DeviceEvent:
    """The canonical view of a model output (meters' registers summed)."""
    return out.sample() if isinstance(out, MeterReading) else out
