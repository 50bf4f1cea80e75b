"""The simulated clock: steps every device model in time order and yields its publications.

Nothing here reads the wall clock: for one scenario, seed and start, the stream of
`Publication`s is always the same, whatever the speed it is later published at.
"""

from __future__ import annotations

import bisect
import heapq
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import orjson

from maillage.simulators import payloads
from maillage.simulators.anomalies import (
    FAULT_KINDS,
    HOME_KINDS,
    Injection,
    LabelWriter,
    Planner,
    active,
)
from maillage.simulators.base import DeviceEvent, DeviceModel, MeterReading, Output
from maillage.simulators.care import CareDeviceModel, HomeLife
from maillage.simulators.meters import MeterModel
from maillage.simulators.scenario import MeterFormat, Scenario
from maillage.simulators.streetlights import (
    CabinetModel,
    CommandError,
    LampModel,
    LuminosityModel,
    PresenceModel,
    Schedule,
    Street,
    parse_command,
)
from maillage.simulators.territory import CARE_ROOMS, Territory, build_territory

PLAN_AHEAD_DAYS = 2  # anomalies are drawn this many simulated days before they start


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


def corrupt(payload: bytes, rng: random.Random) -> bytes:
    """A broken payload as faulty firmware sends them: cut short, garbage, or a bad checksum."""
    if rng.random() < 0.4:
        return payload[: max(1, len(payload) * 2 // 3)]
    if payload.startswith(payloads.STX):
        i = payload.index(payloads.CR) - 1  # the first group's checksum character
        return payload[:i] + bytes([(payload[i] - 0x20 + 1) % 64 + 0x20]) + payload[i + 1:]
    return payload.replace(b":", b"=", 1)


@dataclass
class _Device:
    model: DeviceModel
    rng: random.Random
    encode: Encoder
    faults: list[Injection] = field(default_factory=list)
    device_injections: list[Injection] | None = None
    life: HomeLife | None = None
    seq: int = 0
    held: list[Publication] = field(default_factory=list)
    swap: Publication | None = None


class Engine:
    """Steps the models of a territory in simulated-time order, injecting planned anomalies."""

    def __init__(self, scenario: Scenario, *, start: datetime, territory: Territory | None = None,
                 labels: LabelWriter | None = None) -> None:
        self.scenario = scenario
        self.start = start
        self.territory = territory or build_territory(scenario)
        self.tz = ZoneInfo(scenario.timezone)
        self.labels = labels
        self.devices: list[_Device] = []
        self.by_id: dict[str, _Device] = {}
        self.candidates: dict[str, list[str]] = {}
        self._build()
        an = scenario.anomalies
        first_commune = scenario.communes[0]
        sched = Schedule(first_commune.lat, first_commune.lon, first_commune.lighting, self.tz, 0)
        self.planner = Planner(seed=scenario.seed, start=start, tz=self.tz,
                               per_device_day=an.per_device_day if an.enabled else 0.0,
                               candidates=self.candidates, kinds=an.kinds,
                               first_after_s=an.first_after_s,
                               first_wave=an.first_wave if an.enabled else 0,
                               is_dark=sched.is_dark)
        self.injected: list[Injection] = []  # every anomaly planned so far
        self.pending: list[Injection] = []  # planned, not yet begun (labels are written then)
        self.planned_days = 0

    def _rng(self, device_id: str) -> random.Random:
        return random.Random(f"{self.scenario.seed}/{device_id}")

    def _add(self, model: DeviceModel, rng: random.Random, encode: Encoder, *roles: str,
             device_injections: list[Injection] | None = None,
             life: HomeLife | None = None) -> None:
        dev = _Device(model, rng, encode, device_injections=device_injections, life=life)
        self.devices.append(dev)
        self.by_id[model.device_id] = dev
        for role in roles:
            self.candidates.setdefault(role, []).append(model.device_id)

    def _build(self) -> None:
        sc, t, tz = self.scenario, self.territory, self.tz
        iv = sc.intervals
        for site in t.meters:
            rng = self._rng(site.device_id)
            fmt = site.fmt
            # Mode historique has no production registers: producers' modems use mode standard.
            if fmt == "tic_historique" and site.pv_kwc:
                fmt = "tic_standard"
            inj: list[Injection] = []
            model = MeterModel(site, seed=sc.seed, tz=tz, interval_s=iv.meter_s, injections=inj,
                               rng=rng)
            # Mode historique frames carry no time (skew, delays and reordering cannot show) and no
            # voltage.
            roles = ["meter"] if fmt == "tic_historique" else [
                "meter", "meter_with_voltage", "any_timed"]
            self._add(model, rng, meter_encoder(fmt, site.adsc, site.tariff), *roles,
                      device_injections=inj)
        lamps = {lamp.device_id: lamp for lamp in t.lamps}
        for cab in t.cabinets:
            commune = t.communes[cab.commune]
            schedule = Schedule(cab.lat, cab.lon, commune.lighting, tz, cab.clock_offset_s)
            street = (Street(sc.seed, cab.street, commune.weight > 1, commune.lighting.presence_boost_s,
                             tz) if cab.presence else None)
            lamp_models: list[LampModel] = []
            for lamp_id in cab.lamps:
                rng = self._rng(lamp_id)
                inj = []
                lm = LampModel(lamps[lamp_id], schedule, street=street, interval_s=iv.streetlight_s,
                               injections=inj, rng=rng)
                lamp_models.append(lm)
                roles = ["lamp", "any_timed"]
                if commune.lighting.mode == "dimming":
                    roles.append("dimmed_lamp")
                self._add(lm, rng, json_encoder, *roles, device_injections=inj)
            rng = self._rng(cab.device_id)
            inj = []
            self._add(CabinetModel(cab, lamp_models, interval_s=iv.cabinet_s, injections=inj,
                                   rng=rng), rng, json_encoder, "cabinet", "any_timed",
                      device_injections=inj)
            if cab.presence and street is not None:
                self._add(PresenceModel(cab.presence, street, interval_s=iv.presence_s),
                          self._rng(cab.presence), json_encoder, "any_timed",
                          device_injections=[])
        for lum in t.luminosity:
            self._add(LuminosityModel(lum, sc.seed, interval_s=iv.luminosity_s),
                      self._rng(lum.device_id), json_encoder, "any_timed", device_injections=[])
        for home in t.care_homes:
            life = HomeLife(home, seed=sc.seed, tz=tz, injections=[])
            kinds: list[tuple[str, str, float, tuple[str, ...]]] = [
                (home.hub, "hub", iv.care_heartbeat_s, ("care_hub", "care_sensor"))]
            kinds += [(home.motion(r), f"motion-{r}", iv.care_heartbeat_s,
                       ("care_sensor", "care_battery")) for r in CARE_ROOMS]
            kinds += [(home.door, "door", iv.care_heartbeat_s, ("care_sensor", "care_battery")),
                      (home.bed, "bed", iv.care_heartbeat_s, ("care_sensor", "care_battery")),
                      (home.button, "button", iv.care_heartbeat_s,
                       ("care_button", "care_sensor", "care_battery")),
                      (home.env, "env", iv.care_env_s,
                       ("care_env", "care_sensor", "care_battery"))]
            for device_id, kind, beat, care_roles in kinds:
                rng = self._rng(device_id)
                inj = []
                care = CareDeviceModel(device_id, kind, life, heartbeat_s=beat, start=self.start,
                                       injections=inj, rng=rng)
                self._add(care, rng, json_encoder, *care_roles, "any_timed", device_injections=inj,
                          life=life)

    def commandable(self) -> set[str]:
        """Devices that obey commands (lamps and cabinets)."""
        return {d.model.device_id for d in self.devices
                if isinstance(d.model, LampModel | CabinetModel)}

    def command(self, device_id: str, payload: bytes, now: datetime) -> list[Publication]:
        """A command received on `down/cmd`: lamps (or a cabinet's lamps) obey and acknowledge."""
        dev = self.by_id.get(device_id)
        model = dev.model if dev is not None else None
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError:
            doc = None
        command_id = doc.get("id") if isinstance(doc, dict) else None
        ack: dict[str, object] = {"id": command_id if command_id is not None else "?",
                                  "ts": payloads.iso(now)}
        try:
            if not isinstance(model, LampModel | CabinetModel):
                raise CommandError("this device takes no commands")
            order = parse_command(doc, now)
            lamps = model.lamps if isinstance(model, CabinetModel) else [model]
            results = [lamp.command(order, now) for lamp in lamps]
            failed = [r for ok, r in results if not ok]
            ack["status"] = "failed" if len(failed) == len(results) else "done"
            if failed:
                ack["error"] = f"{len(failed)} of {len(results)} lamps: {failed[0]}"
            if order is not None:
                ack["level"] = order.level
        except CommandError as exc:
            ack["status"] = "failed"
            ack["error"] = str(exc)
        return [Publication(now, device_id, "up/ack", orjson.dumps(ack))]

    def _plan_until(self, now: datetime) -> None:
        """Draw the anomalies of the days up to PLAN_AHEAD_DAYS past `now`."""
        horizon = (now - self.start) // timedelta(days=1) + PLAN_AHEAD_DAYS
        while self.planned_days <= horizon:
            for inj in self.planner.day(self.planned_days):
                self._inject(inj)
            self.planned_days += 1

    def _inject(self, inj: Injection) -> None:
        self.injected.append(inj)
        dev = self.by_id[inj.device_id]
        if inj.kind in FAULT_KINDS:
            dev.faults.append(inj)
        elif inj.kind in HOME_KINDS and dev.life is not None:
            dev.life.add(inj)
        elif dev.device_injections is not None:
            dev.device_injections.append(inj)
        bisect.insort(self.pending, inj, key=lambda i: (i.start, i.device_id, i.kind))

    def _label_begun(self, now: datetime) -> None:
        while self.pending and self.pending[0].start <= now:
            inj = self.pending.pop(0)
            if self.labels is not None:
                self.labels.write(inj)

    def publications(self, until: datetime | None = None) -> Iterator[Publication]:
        """Publications in simulated-time order, up to `until` (excluded), or forever."""
        heap = [(d.model.first_due(self.start), i) for i, d in enumerate(self.devices)]
        heapq.heapify(heap)
        self._plan_until(self.start)
        while heap:
            due, i = heap[0]
            if until is not None and due >= until:
                break
            now = due.replace(microsecond=0)
            self._plan_until(now)
            self._label_begun(now)
            dev = self.devices[i]
            yield from self._step(dev, now)
            heapq.heapreplace(heap, (dev.model.next_due(due), i))
        if until is not None:
            self._label_begun(until - timedelta(microseconds=1))

    def _step(self, dev: _Device, now: datetime) -> Iterator[Publication]:
        outs = dev.model.next_reading(now, dev.rng)
        if not dev.faults and not dev.held and dev.swap is None:
            for out in outs:  # the common case: a healthy device
                dev.seq += 1
                channel, payload = dev.encode(out, dev.seq)
                yield Publication(now, dev.model.device_id, channel, payload)
            return
        yield from self._faulty_step(dev, now, outs)

    def _faulty_step(self, dev: _Device, now: datetime, outs: list[Output]) -> Iterator[Publication]:
        """Publications of a device with transport faults planned: skew, corruption, delays."""
        device_id = dev.model.device_id
        late = active(dev.faults, "late_reading", now)
        if dev.held and late is None:
            # The device's link is back: what it buffered goes out first, in order.
            for pub in dev.held:
                yield replace(pub, at=now)
            dev.held.clear()
        for out in outs:
            if (skew := active(dev.faults, "clock_skew", now)) is not None:
                out = replace(out, ts=out.ts + timedelta(seconds=skew.params["skew_s"]))
            dev.seq += 1
            channel, payload = dev.encode(out, dev.seq)
            if active(dev.faults, "malformed_payload", now) is not None:
                payload = corrupt(payload, dev.rng)
            pub = Publication(now, device_id, channel, payload)
            if late is not None:
                dev.held.append(pub)
                continue
            if active(dev.faults, "out_of_order", now) is not None:
                if dev.swap is None:
                    dev.swap = pub
                    continue
                yield pub
                pub, dev.swap = replace(dev.swap, at=now), None
            yield pub
            if active(dev.faults, "duplicate", now) is not None:
                yield pub  # a QoS 1 retry after a lost PUBACK: the very same bytes again
        if dev.swap is not None and active(dev.faults, "out_of_order", now) is None:
            yield replace(dev.swap, at=now)
            dev.swap = None
