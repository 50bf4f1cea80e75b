"""`maillage eval scenario`: a simulated territory with labelled anomalies through the detectors.

The run, all on the simulated clock (nothing reads the wall clock, so one seed gives one report):

1. a small territory (`eval_territory`) is simulated by the simulators' `Engine`, which yields
   every MQTT publication in simulated-time order and labels each injected anomaly;
2. each publication goes through the gateway's own decisions (`ingest.validate.Ingest`: the
   real parsers, relays, time checks and rejects) with its simulated time as receive time;
3. envelopes go to the detection engine (`handle`), rejected messages of a registered device to
   `handle_rejected`, and the silence check (`detection.silent.check`) runs every `silent_step_s`
   of simulated time, fed by `silent.learn` on every envelope, as the live job is;
4. the anomalies raised are matched with the labels (`scenario_match`: the matching rule is
   written there) into recall, precision and detection delay per kind.

Time line: `warmup_days` without injected anomalies (the detectors learn each device's profile,
as after an installation), then `days` in which anomalies start, then `tail_h` hours without new
ones so that an anomaly that began just before the end still has time to be detected.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from maillage.envelope import Envelope, to_us
from maillage.errors import MaillageError
from maillage.eval.scenario_match import Detection, Label, detector_kinds, scopes, score
from maillage.ingest.registry_cache import CLOCK_FLOOR, KnownDevice, RegistryCache
from maillage.ingest.validate import Ingest
from maillage.processors.detection import silent
from maillage.processors.detection.engine import Engine
from maillage.processors.detection.model import DeviceInfo, Transition
from maillage.registry.models import DeviceSpec
from maillage.simulators.anomalies import KINDS, Injection, LabelWriter, Planner
from maillage.simulators.engine import Engine as Simulator
from maillage.simulators.scenario import (
    Anomalies,
    Commune,
    Fleet,
    Intervals,
    LightingPolicy,
    Scenario,
)

log = logging.getLogger(__name__)

TENANT = "eval"
DEFAULT_START = datetime(2026, 1, 5, tzinfo=UTC)
"""A winter Monday: long nights for the lamps, heating in the meters' curves."""
MAX_FUTURE = timedelta(seconds=300)
"""The gateway's default `max_future_s`."""
LABELS_PER_KIND_MONTH = 30
"""`eval_territory` injects about this many anomalies of each kind in 30 days (fewer are labelled:
the simulator never puts two anomalies at once on one device)."""


class EvalError(MaillageError):
    """The evaluation cannot run with these options."""


class Detector(Protocol):
    """What the evaluation drives: the detection engine's two entry points."""

    def handle(self, device: DeviceInfo, env: Envelope) -> list[Transition]: ...

    def handle_rejected(self, device: DeviceInfo, reason: str, rx_us: int) -> list[Transition]: ...


def eval_territory(seed: int) -> Scenario:
    """A territory small enough for a month in minutes, with every device role anomalies need.

    Two communes (one dimming its lamps at night, one switching them off), 24 meters read every
    2 min (a spike of 2 min always holds one reading), 120 lamps on about 10 cabinets, 18 care
    homes. The anomaly rate is set by `run` from `LABELS_PER_KIND_MONTH`.
    """
    return Scenario(
        tenant=TENANT, seed=seed, start=DEFAULT_START,
        communes=[
            Commune(name="Rennes", lat=48.1173, lon=-1.6778, districts=["centre", "nord"],
                    weight=2.0, lighting=LightingPolicy(mode="dimming", night_from=dtime(22, 30),
                                                        night_to=dtime(5, 30), dim_level_pct=50)),
            Commune(name="Vitre", lat=48.1236, lon=-1.2089, districts=["centre"],
                    lighting=LightingPolicy(mode="cutoff", night_from=dtime(23, 0),
                                            night_to=dtime(5, 0))),
        ],
        fleet=Fleet(meters=24, streetlights=120, care_homes=18, lamps_per_cabinet=12,
                    presence_share=0.0),
        intervals=Intervals(meter_s=120, streetlight_s=900, cabinet_s=300, presence_s=600,
                            luminosity_s=600, care_env_s=600, care_heartbeat_s=900),
        anomalies=Anomalies(first_wave=0),
    )


class _WindowPlanner(Planner):
    """The simulator's planner, injecting only on days [first, last) of the run."""

    def __init__(self, *, first: int, last: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.first, self.last = first, last

    def day(self, k: int) -> list[Injection]:
        return super().day(k) if self.first <= k < self.last else []


def device_info(spec: DeviceSpec, tenant: str, tz: ZoneInfo) -> DeviceInfo:
    """The detection context of a registered device, as the processor builds it from the registry."""
    return DeviceInfo(tenant=tenant, device_id=spec.device_id, type=str(spec.type), tz=tz,
                      lat=spec.lat, lon=spec.lon, commune=spec.commune, district=spec.district,
                      site=spec.site, dwelling=spec.dwelling, meta=dict(spec.meta),
                      expected_interval_s=spec.expected_interval_s)


def group_head(device: DeviceInfo) -> str | None:
    """The device that stands for this one's group in the registry: its hub or its cabinet."""
    head = device.meta.get("hub") or device.meta.get("cabinet")
    return str(head) if head else None


@dataclass
class _Recorder:
    """Detections by anomaly id, with the simulated moments they were raised and closed."""

    detections: dict[str, Detection] = field(default_factory=dict)
    transitions: int = 0

    def add(self, transitions: Iterable[Transition], now_us: int) -> None:
        for tr in transitions:
            self.transitions += 1
            a = tr.anomaly
            det = self.detections.get(a.id)
            if det is None:
                det = Detection(id=a.id, device_id=a.device_id, kind=str(a.kind),
                                start_us=a.start_us, raised_us=now_us, evidence=dict(a.evidence))
                self.detections[a.id] = det
            if tr.change == "close":
                det.end_us, det.closed_us = a.end_us, now_us
            elif tr.change == "update":
                det.evidence = dict(a.evidence)


@dataclass(frozen=True, slots=True)
class RunOptions:
    """How long, what, and how the evaluation judges."""

    seed: int = 1
    days: int = 30
    warmup_days: int = 3
    tail_h: float = 12
    grace_s: float = 1800
    silent_step_s: float = 300
    examples: int = 5


def run(opts: RunOptions, *, detector: Detector | None = None,
        scenario: Scenario | None = None,
        silent_check: Callable[[int, list[silent.Seen]], list[Transition]] | None = None,
        ) -> dict[str, Any]:
    """Simulate, detect, and score; returns the report (a JSON-able dict)."""
    if opts.days <= 0 or opts.warmup_days < 0 or opts.tail_h < 0 or opts.silent_step_s <= 0:
        raise EvalError("days and the silence step must be positive, warm-up and tail not negative")
    sc = scenario or eval_territory(opts.seed)
    if scenario is not None and scenario.seed != opts.seed:
        sc = sc.model_copy(update={"seed": opts.seed})
    detector = detector or real_detector()
    start = sc.start or DEFAULT_START
    tz = ZoneInfo(sc.timezone)
    anomaly_days = (opts.warmup_days, opts.warmup_days + opts.days)
    until = start + timedelta(days=opts.warmup_days + opts.days, hours=opts.tail_h)
    labels_seen: list[Injection] = []
    sim = Simulator(sc, start=start,
                    labels=LabelWriter(None, sc.tenant, on_label=labels_seen.append))
    an = sc.anomalies
    rate = an.per_device_day if an.enabled else 0.0
    if scenario is None:  # the default territory: a rate giving enough labels of every kind
        rate = LABELS_PER_KIND_MONTH * len(sim.planner.candidates) / (sim.planner.n_devices * 30)
    sim.planner = _WindowPlanner(
        first=anomaly_days[0], last=anomaly_days[1], seed=sc.seed, start=start, tz=tz,
        per_device_day=rate, candidates=sim.candidates,
        kinds=an.kinds, first_after_s=an.first_after_s, first_wave=0)
    last_start = start + timedelta(days=opts.warmup_days + opts.days)
    specs = sim.territory.specs()
    infos = {s.device_id: device_info(s, sc.tenant, tz) for s in specs}
    floor = datetime.fromisoformat(CLOCK_FLOOR.replace("Z", "+00:00"))
    ingest = Ingest(RegistryCache.in_memory({
        (sc.tenant, s.device_id): KnownDevice(i, str(s.type), s.installed_at or floor)
        for i, s in enumerate(specs)}), max_future=MAX_FUTURE)
    check = silent_check or _default_silent_check()
    # What the silence check knows of each device: the engine's own `seen` slots when it keeps
    # them (as the live job reads them from its checkpointed state), else learned here alike.
    engine_states = getattr(detector, "devices", None)
    own_seen: dict[str, dict[str, Any]] | None = None if isinstance(engine_states, dict) else {}
    rec = _Recorder()
    counts: Counter[str] = Counter()
    rejected: Counter[str] = Counter()
    step_us = round(opts.silent_step_s * 1e6)
    next_check = to_us(start) + step_us
    wall = time.monotonic()

    def silence(now_us: int) -> None:
        slots: Iterable[tuple[str, dict[str, Any]]]
        if own_seen is not None:
            slots = own_seen.items()
        else:
            slots = ((key[1], st.seen) for key, st in engine_states.items())  # type: ignore[union-attr]  # checked by the caller
        rec.add(check(now_us, [silent.Seen(infos[d], m.get("last_rx"), m.get("interval_s"))
                               for d, m in slots if d in infos]), now_us)

    prefix = f"maillage/{sc.tenant}/"
    published: dict[str, list[int]] = {}
    for pub in sim.publications(until):
        now_us = to_us(pub.at)
        while next_check <= now_us:
            silence(next_check)
            next_check += step_us
        counts["publications"] += 1
        published.setdefault(pub.device_id, []).append(now_us)
        outcome = ingest.convert(f"{prefix}{pub.device_id}/{pub.channel}", pub.payload, pub.at)
        if outcome.rejection is not None:
            r = outcome.rejection
            rejected[str(r.reason)] += 1
            if r.device_id in infos:
                if own_seen is not None:  # the device spoke, wrongly: not silent
                    silent.heard(own_seen.setdefault(r.device_id, {}), now_us)
                rec.add(detector.handle_rejected(infos[r.device_id], str(r.reason), now_us), now_us)
            continue
        for env in outcome.envelopes:
            counts["envelopes"] += 1
            if own_seen is not None:
                silent.learn(own_seen.setdefault(env.device_id, {}), env.ts_us, env.rx_us)
            rec.add(detector.handle(infos[env.device_id], env), now_us)
    end_us = to_us(until)
    while next_check <= end_us:
        silence(next_check)
        next_check += step_us
    wall_s = time.monotonic() - wall
    labels = [Label(i.device_id, i.kind, to_us(i.start), to_us(i.end), dict(i.params))
              for i in labels_seen if i.start < last_start]
    scored = score(labels, rec.detections.values(),
                   scope=scopes({d: group_head(info) for d, info in infos.items()}),
                   label_kinds=list(KINDS), run_end_us=end_us, grace_s=opts.grace_s,
                   examples=opts.examples, published=published)
    log.info("scenario evaluation: %d publications, %d labels, %d anomalies in %.1f s",
             counts["publications"], len(labels), len(rec.detections), wall_s)
    return {
        "seed": opts.seed, "days": opts.days, "warmup_days": opts.warmup_days,
        "tail_h": opts.tail_h, "grace_s": opts.grace_s, "silent_step_s": opts.silent_step_s,
        "anomalies_per_device_day": round(rate, 4),
        "start": start.isoformat().replace("+00:00", "Z"),
        "end": until.isoformat().replace("+00:00", "Z"),
        "devices": dict(sorted(Counter(str(s.type) for s in specs).items())),
        "publications": counts["publications"], "envelopes": counts["envelopes"],
        "rejected": dict(sorted(rejected.items())),
        "labels": dict(sorted(Counter(lb.kind for lb in labels).items())),
        "anomalies": len(rec.detections), "transitions": rec.transitions,
        "detector_kinds": {k: list(detector_kinds(k)) for k in KINDS},
        **scored,
    }


def _default_silent_check() -> Callable[[int, list[silent.Seen]], list[Transition]]:
    """`silent.check` with its own state, as the live job holds it."""
    state = silent.SilentState()
    return lambda now_us, seen: silent.check(state, now_us, seen)


def real_detector() -> Detector:
    """The detection engine with every rule module, as the processor runs it."""
    return Engine()
