"""Silent devices: each device's learned reporting interval, offline and back online, mass outages.

Two pure parts and one periodic job:

- `learn(memory, ts_us, rx_us)`: the engine calls it on every record of a device with the
  device's `"_seen"` memory slot. It keeps `last_ts`, `last_rx` (epoch µs) and `interval_s`, the
  learned reporting interval (absent until 3 intervals were seen).
- `observe(memory, envelope)`: `learn` from a record unless it is a status message (the
  engine's call: the broker's will and retained replays are not the device speaking).
- `heard(memory, rx_us)`: the same slot on a rejected message of a registered device (the
  device speaks, if wrongly: it is not silent).
- `check(state, now_us, seen)`: which devices are offline now, which are back, which groups are
  down together (one `group_offline` anomaly instead of one per device). No I/O, no wall clock:
  `now_us` is given, so the scenario evaluation runs it on a simulated clock.
- `silent_job.watch(database_url=..., stop=...)` runs `check` every few seconds on the wall
  clock, under a PostgreSQL advisory lock, and stores the transitions (I/O kept out of here).

Offline rule: a device is offline when nothing was received from it for
`max(FLOOR_S, K * interval)` where `interval` is the larger of the learned interval and the
registry's `expected_interval_s` (either alone when the other is unknown). Why the larger: the
registry's interval is the installer's promise (a care sensor's heartbeat); event-driven sensors
report much faster between heartbeats, so the longest *regular* gap is what silence is judged
against, and a device that turns out slower than promised is judged on what it really does.
A device that never sent anything is never offline (it was never seen, nothing to compare with),
nor is one whose interval is unknown (no registry value, not learned yet).

Group rule: a group (a cabinet's lamps and the cabinet, a dwelling's care devices, a district's
non-care devices: care outages are told per dwelling, as care data) is down when at least `GROUP_MIN_DEVICES` (5; 3 for a dwelling, whose few sensors share
one hub) and at least `GROUP_OPEN_FRACTION` (80 %) of its judged members are silent, one at least
past its threshold. "Silent" counts members within one reporting interval of their own
threshold: devices that stopped at the same instant cross their thresholds spread over one
interval, so the group is recognised at the first crossing instead of after a burst of
per-device anomalies. Districts are checked first (they contain the rest), a group stays open
while at least `GROUP_CLOSE_FRACTION` (50 %) of its members are silent, and silent members of an
open group get no anomaly of their own. The group anomaly is raised on the device standing for
the group (the cabinet; the dwelling's hub, else its first device) or, for a district that has
no such device, on the group name itself (`"district:<name>"`).

Stall guard: when nearly every device is offline at once and nothing at all was heard for a
minute, the check does nothing (see `STALL_FRACTION`): that is the platform not receiving.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from maillage.envelope import Envelope
from maillage.processors.detection.model import (
    Anomaly,
    DeviceInfo,
    Kind,
    Memory,
    Severity,
    Transition,
    group_of,
)

log = logging.getLogger(__name__)

K = 3.0
"""Missed reports before a device is offline: one or two lost messages in a row happen on radio
links, three in a row rarely by chance."""
FLOOR_S = 60.0
"""Minimum silence before offline: gateway batching, broker or processing hiccups and clock
jitter must not turn a fast reporter offline."""
WARMUP = 3
"""Intervals seen before `interval_s` is published (a first pair of records proves little)."""
RISE, FALL = 0.25, 0.05
"""Asymmetric EWMA weights in log space: the estimate follows longer gaps fast and bursts
slowly, so it tracks the device's usual *longest* regular gap, not its mean rate."""
CLIP = math.log(4.0)
"""After warm-up one interval moves the estimate by at most x4 in log space (outages, bursts)."""
MIN_DT_S = 0.001
"""Records closer than this (several metrics of one message, duplicates) are not an interval."""

GROUP_MIN_DEVICES = 5
GROUP_MIN_DEVICES_DWELLING = 3
GROUP_OPEN_FRACTION = 0.8
GROUP_CLOSE_FRACTION = 0.5
STALL_MIN_DEVICES, STALL_FRACTION = 50, 0.9
"""When at least 90 % of at least 50 judged devices (all tenants) are offline at once and no
device at all was heard from for `FLOOR_S`, the check does nothing: a stalled ingest or detection processor (or one catching up after a restart)
looks exactly like that, and the platform's own health metrics tell that story, not thousands
of device anomalies."""
EVIDENCE_DEVICES = 50
"""At most this many silent device ids listed in a group anomaly's evidence (with the count)."""


def learn(memory: Memory, ts_us: int, rx_us: int) -> None:
    """Update a device's `"_seen"` slot with one record (measurement and receive time, µs)."""
    last_ts = memory.get("last_ts")
    if rx_us > memory.get("last_rx", -1):
        memory["last_rx"] = rx_us
    if last_ts is not None and ts_us <= last_ts:
        return  # a duplicate or an out-of-order record says nothing of the cadence
    memory["last_ts"] = ts_us
    if last_ts is None:
        return
    dt = (ts_us - last_ts) / 1e6
    if dt < MIN_DT_S:
        return
    x = math.log(dt)
    n = int(memory.get("n", 0))
    mu = memory.get("lmu")
    if mu is None:
        mu = x
    elif n < WARMUP:
        mu += (x - mu) / (n + 1)  # warm-up: the plain mean of the first logs
    else:
        x = min(max(x, mu - CLIP), mu + CLIP)
        mu += (RISE if x > mu else FALL) * (x - mu)
    n += 1
    memory["n"] = n
    memory["lmu"] = mu
    if n >= WARMUP:
        memory["interval_s"] = round(math.exp(mu), 3)


def observe(memory: Memory, env: Envelope) -> None:
    """`learn` from one record, status messages excepted.

    A status message is the broker's word, not the device's: the last will ("offline") is sent
    when the device is gone, and retained statuses are replayed to a reconnecting gateway for
    every device at once; counting them would make silent devices look heard from.
    """
    if env.kind != "status":
        learn(memory, env.ts_us, env.rx_us)


def heard(memory: Memory, rx_us: int) -> None:
    """A rejected message (DLQ) of the device: it is not silent, though it says nothing valid.

    Its measurement time is unknown or wrong, so the interval is not touched; the data-quality
    rules report the rejection, and calling it offline as well would be a false alarm.
    """
    if rx_us > memory.get("last_rx", -1):
        memory["last_rx"] = rx_us


@dataclass(frozen=True, slots=True)
class Seen:
    """One device as the silence check sees it: registry data and what it has shown."""

    device: DeviceInfo
    last_rx_us: int | None
    interval_s: float | None = None
    """Learned reporting interval; None until learned."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """A judged device: its silence, threshold and status (offline, suspect or alive)."""

    seen: Seen
    basis_s: float
    threshold_s: float
    silence_s: float

    @property
    def offline(self) -> bool:
        return self.silence_s > self.threshold_s

    @property
    def silent(self) -> bool:
        """Offline or within one reporting interval of it (counts towards a group outage)."""
        return self.silence_s > self.threshold_s - self.basis_s


def basis_s(seen: Seen) -> float | None:
    """The interval silence is judged against (see the module docstring), None if unknown."""
    learned, registry = seen.interval_s, seen.device.expected_interval_s
    if learned and registry:
        return float(learned if learned > registry else registry)
    either = learned or registry
    return float(either) if either else None


def judge(seen: Seen, now_us: int) -> Verdict | None:
    """A device's silence verdict at `now_us`; None for never-seen or unknown-interval devices."""
    if seen.last_rx_us is None:
        return None
    basis = basis_s(seen)
    if basis is None:
        return None
    threshold = K * basis
    return Verdict(seen, basis, threshold if threshold > FLOOR_S else FLOOR_S,
                   (now_us - seen.last_rx_us) / 1e6)


@dataclass(slots=True)
class SilentState:
    """The open offline anomalies: per device and per group (JSON round trip)."""

    devices: dict[tuple[str, str], Anomaly] = field(default_factory=dict)
    groups: dict[tuple[str, str], Anomaly] = field(default_factory=dict)

    @classmethod
    def from_anomalies(cls, anomalies: Iterable[Anomaly]) -> SilentState:
        """Rebuild from the open `device_offline` / `group_offline` anomalies (from the table)."""
        state = cls()
        for a in anomalies:
            if a.end_us is not None:
                continue
            if a.kind == Kind.GROUP_OFFLINE and a.group:
                state.groups[(a.tenant, a.group)] = a
            elif a.kind == Kind.DEVICE_OFFLINE:
                state.devices[(a.tenant, a.device_id)] = a
        return state

    def to_json(self) -> list[dict[str, Any]]:
        return [_anomaly_dict(a) for a in (*self.devices.values(), *self.groups.values())]

    @classmethod
    def from_json(cls, data: list[dict[str, Any]]) -> SilentState:
        return cls.from_anomalies(Anomaly(
            tenant=d["tenant"], device_id=d["device_id"], kind=Kind(d["kind"]),
            severity=Severity(d["severity"]), score=d["score"], start_us=d["start"],
            end_us=d["end"], evidence=d["evidence"], group=d.get("group")) for d in data)


def _anomaly_dict(a: Anomaly) -> dict[str, Any]:
    return {"tenant": a.tenant, "device_id": a.device_id, "kind": str(a.kind),
            "severity": str(a.severity), "score": a.score, "start": a.start_us, "end": a.end_us,
            "evidence": a.evidence, "group": a.group}


def iso(us: int) -> str:
    """Epoch µs as an ISO 8601 UTC string (evidence is for people)."""
    return datetime.fromtimestamp(us / 1e6, UTC).isoformat().replace("+00:00", "Z")


def groups_of(device: DeviceInfo) -> list[str]:
    """The outage groups of a device, largest first: its district, then cabinet or dwelling."""
    # Care devices stay out of districts: their outages are told per dwelling (care data, seen
    # by care coordinators only), never listed in an anomaly energy managers read.
    out = [f"district:{device.district}"] if device.district and not device.is_care else []
    local = group_of(device)
    if local:
        out.append(local)
    return out


def _representative(group: str, members: list[Verdict]) -> str:
    """The device an outage of `group` is raised on (see the module docstring)."""
    level, _, name = group.partition(":")
    if level == "cabinet":
        return name
    if level == "dwelling":
        hubs = sorted(v.seen.device.device_id for v in members if v.seen.device.type == "care_hub")
        return hubs[0] if hubs else min(v.seen.device.device_id for v in members)
    return group


def check(state: SilentState, now_us: int, seen: Iterable[Seen]) -> list[Transition]:
    """Offline, back-online and group-outage transitions at `now_us`; updates `state`."""
    verdicts: dict[tuple[str, str], Verdict] = {}
    members: dict[tuple[str, str], list[Verdict]] = {}
    for s in seen:
        v = judge(s, now_us)
        if v is None:
            continue
        key = (s.device.tenant, s.device.device_id)
        verdicts[key] = v
        for g in groups_of(s.device):
            members.setdefault((s.device.tenant, g), []).append(v)
    if _stalled(verdicts.values()):
        return []
    out: list[Transition] = []
    covered: set[tuple[str, str]] = set()
    # Districts first: a district outage covers its cabinets and dwellings.
    for gkey in sorted(members, key=lambda k: (not k[1].startswith("district:"), k)):
        group = members[gkey]
        if gkey not in state.groups:  # a new outage counts only devices no open group covers
            group = [v for v in group
                     if (v.seen.device.tenant, v.seen.device.device_id) not in covered]
        out += _check_group(state, now_us, gkey, group, len(members[gkey]))
        if gkey in state.groups:
            covered |= {(v.seen.device.tenant, v.seen.device.device_id)
                        for v in members[gkey] if v.silent}
    # Open groups whose members all vanished from the registry close now.
    for gkey in [k for k in state.groups if k not in members]:
        out.append(_close(state.groups.pop(gkey), now_us))
    for key, v in verdicts.items():
        out += _check_device(state, key, v, covered)
    for key in [k for k in state.devices if k not in verdicts]:
        out.append(_close(state.devices.pop(key), now_us))  # deleted, or no longer judged
    return out


def _stalled(verdicts: Iterable[Verdict]) -> bool:
    """Nearly every device silent and nothing heard for a minute: the platform stopped receiving."""
    judged = offline = 0
    quietest = math.inf
    for v in verdicts:
        judged += 1
        offline += v.offline
        quietest = min(quietest, v.silence_s)
    if (judged >= STALL_MIN_DEVICES and offline >= STALL_FRACTION * judged
            and quietest > FLOOR_S):
        log.warning("silence check skipped: %d of %d devices silent (ingest or detection stalled?)",
                    offline, judged)
        return True
    return False


def _check_group(state: SilentState, now_us: int, gkey: tuple[str, str],
                 group: list[Verdict], total: int) -> list[Transition]:
    """Open, update or close one group's outage anomaly."""
    silent = sorted((v for v in group if v.silent), key=lambda v: v.seen.device.device_id)
    n = len(silent)
    opened = state.groups.get(gkey)
    if opened is not None:
        if n < GROUP_CLOSE_FRACTION * total or n == 0:
            back = [v.seen.last_rx_us or 0 for v in group if not v.silent]
            end = max([opened.start_us, *back]) if back else now_us
            return [_close(state.groups.pop(gkey), end)]
        if n != opened.evidence.get("silent"):
            updated = replace(opened, score=round(n / total, 3),
                              evidence=_group_evidence(silent, total))
            state.groups[gkey] = updated
            return [Transition(updated, "update", now_us)]
        return []
    minimum = GROUP_MIN_DEVICES_DWELLING if gkey[1].startswith("dwelling:") else GROUP_MIN_DEVICES
    if n < minimum or n < GROUP_OPEN_FRACTION * total or not any(v.offline for v in silent):
        return []
    anomaly = Anomaly(
        tenant=gkey[0], device_id=_representative(gkey[1], group), kind=Kind.GROUP_OFFLINE,
        severity=Severity.WARNING, score=round(n / total, 3),
        start_us=min(v.seen.last_rx_us or now_us for v in silent), end_us=None,
        evidence=_group_evidence(silent, total), group=gkey[1])
    state.groups[gkey] = anomaly
    return [Transition(anomaly, "open")]


def _group_evidence(silent: list[Verdict], total: int) -> dict[str, Any]:
    return {"silent": len(silent), "members": total,
            "fraction": round(len(silent) / total, 3),
            "devices": [v.seen.device.device_id for v in silent[:EVIDENCE_DEVICES]],
            "last_seen": iso(max(v.seen.last_rx_us or 0 for v in silent)),
            "min_devices": GROUP_MIN_DEVICES, "min_fraction": GROUP_OPEN_FRACTION, "k": K}


def _check_device(state: SilentState, key: tuple[str, str], v: Verdict,
                  covered: set[tuple[str, str]]) -> list[Transition]:
    """Open a device's offline anomaly, or close it when the device was heard from again."""
    opened = state.devices.get(key)
    last = v.seen.last_rx_us or 0
    if opened is not None:
        if last > opened.start_us:
            return [_close(state.devices.pop(key), last)]
        return []
    if not v.offline or key in covered:
        return []
    d = v.seen.device
    anomaly = Anomaly(
        tenant=d.tenant, device_id=d.device_id, kind=Kind.DEVICE_OFFLINE,
        severity=Severity.WARNING, score=round(min(1.0, v.silence_s / (2 * v.threshold_s)), 3),
        start_us=last, end_us=None,
        evidence={"last_seen": iso(last), "silent_s": round(v.silence_s, 1),
                  "threshold_s": round(v.threshold_s, 1), "interval_s": v.basis_s,
                  "learned_interval_s": v.seen.interval_s,
                  "registry_interval_s": d.expected_interval_s, "k": K, "floor_s": FLOOR_S})
    state.devices[key] = anomaly
    return [Transition(anomaly, "open")]


def _close(anomaly: Anomaly, end_us: int) -> Transition:
    return Transition(replace(anomaly, end_us=max(end_us, anomaly.start_us)), "close")
