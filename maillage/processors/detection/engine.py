"""The detection engine: records in, anomaly transitions out. Pure: no I/O, no wall clock.

`Engine.handle(device, env)` runs the rules of the device's type on one record with the device's
state (and its group's, for group rules) and turns their findings into transitions: an anomaly
opens once, closes once, and is updated only when its severity rises or its score moved by
`UPDATE_SCORE_STEP` at least `UPDATE_EVERY_US` of measurement time after the previous update.
Fall and panic (`IMMEDIATE_KINDS`) open one anomaly per finding and are never closed by a rule.

Event time: each device keeps the latest measurement time seen per stream (reading, event,
status). A record at or behind that watermark (minus `lateness_us`) is late or a repeat: it goes
to the data-quality rules only, never to the profile rules, so replayed, backfilled or accelerated
data give the same anomalies as live data. (Streams are separate Kafka topics, so a reading and an
event of one device are not ordered between each other; each stream is ordered on its own.)

States live in the engine (`devices`, `groups`); the processor loads them from the database
before handing records over (`missing`, `put_device`, `put_group`) and checkpoints those
`take_dirty()` returns.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from maillage.envelope import Envelope
from maillage.processors.detection import online_series
from maillage.processors.detection.model import (
    CARE_KINDS,
    IMMEDIATE_KINDS,
    DeviceInfo,
    Finding,
    Rule,
    Transition,
    group_of,
)
from maillage.processors.detection.silent import heard, observe
from maillage.processors.detection.state import SEVERITY_RANK, DeviceState, GroupState, Opened

log = logging.getLogger(__name__)

RuleTable = dict[str, list[Rule]]
RejectedRule = Callable[[DeviceInfo, dict[str, Any], str, int], Iterable[Finding]]

RULE_MODULES = ("meters", "lighting", "care", "quality")
"""The rule modules of `maillage.processors.detection` (each exports RULES and GROUP_RULES)."""
QUALITY_MODULE = "quality"
"""Its rules also see late records (they judge the data, not the device)."""

UPDATE_SCORE_STEP = 0.2
UPDATE_EVERY_US = 300_000_000
"""An open anomaly's score changes are produced at most every 5 minutes of measurement time."""
MAX_ERRORS_LOGGED = 20


@dataclass
class Tables:
    """The rules the engine runs, by device type (`"*"`: every type)."""

    rules: RuleTable = field(default_factory=dict)
    group_rules: RuleTable = field(default_factory=dict)
    quality: RuleTable = field(default_factory=dict)
    on_rejected: list[RejectedRule] = field(default_factory=list)


def _merge(into: RuleTable, table: RuleTable | None) -> None:
    for dtype, rules in (table or {}).items():
        into.setdefault(dtype, []).extend(rules)


def load_tables(modules: Iterable[str] = RULE_MODULES) -> Tables:
    """The rule tables of the given modules (short names under `detection`, or dotted paths).

    A module not written yet is skipped with a warning, so that the stage runs with the rules
    that exist."""
    t = Tables()
    for name in modules:
        path = name if "." in name else f"maillage.processors.detection.{name}"
        try:
            mod = importlib.import_module(path)
        except ModuleNotFoundError as exc:
            if exc.name != path:
                raise
            log.warning("detection rules %s not available", path)
            continue
        is_quality = path.rsplit(".", 1)[-1] == QUALITY_MODULE
        _merge(t.quality if is_quality else t.rules, getattr(mod, "RULES", None))
        _merge(t.group_rules, getattr(mod, "GROUP_RULES", None))
        if callable(getattr(mod, "on_rejected", None)):
            t.on_rejected.append(mod.on_rejected)
    return t


def rule_key(rule: Callable[..., Any]) -> str:
    """A rule's memory slot: `module.name` (e.g. `meters.spike`)."""
    return f"{rule.__module__.rsplit('.', 1)[-1]}.{getattr(rule, '__name__', type(rule).__name__)}"


def is_care(transition: Transition, device_type: str | None) -> bool:
    """Whether a transition is health data: a care kind, or an anomaly of a care device or dwelling."""
    a = transition.anomaly
    return (a.kind in CARE_KINDS or (device_type or "").startswith("care_")
            or (a.group or "").startswith("dwelling:"))


class Engine:
    """Runs rules on records with per-device and per-group state (see the module docstring)."""

    def __init__(self, rules: RuleTable | None = None, group_rules: RuleTable | None = None, *,
                 quality: RuleTable | None = None, on_rejected: list[RejectedRule] | None = None,
                 lateness_us: int = 0, online: bool = True) -> None:
        if rules is None and group_rules is None and quality is None:
            t = load_tables()
        else:
            t = Tables(rules or {}, group_rules or {}, quality or {}, on_rejected or [])
        if on_rejected is not None:
            t.on_rejected = on_rejected
        self.tables = t
        self.lateness_us = lateness_us
        self.online = online_series.Online() if online else None
        self.devices: dict[tuple[str, str], DeviceState] = {}
        self.groups: dict[tuple[str, str], GroupState] = {}
        self._dirty: set[tuple[str, str]] = set()
        self._dirty_groups: set[tuple[str, str]] = set()
        self._by_type: dict[str, tuple[list[tuple[str, Rule]], ...]] = {}
        self.late = 0
        self.rule_errors = 0

    # -- state ------------------------------------------------------------------------------

    def put_device(self, key: tuple[str, str], state: DeviceState) -> None:
        self.devices[key] = state

    def put_group(self, key: tuple[str, str], state: GroupState) -> None:
        self.groups[key] = state

    def take_dirty(self) -> tuple[dict[tuple[str, str], DeviceState], dict[tuple[str, str], GroupState]]:
        """The states changed since the last call (to checkpoint), and forget they changed."""
        devices = {k: self.devices[k] for k in self._dirty if k in self.devices}
        groups = {k: self.groups[k] for k in self._dirty_groups if k in self.groups}
        self._dirty, self._dirty_groups = set(), set()
        return devices, groups

    def forget(self) -> None:
        """Drop every state (after a rebalance: the database has the truth)."""
        self.devices.clear()
        self.groups.clear()
        self._dirty.clear()
        self._dirty_groups.clear()

    def _rules_of(self, dtype: str) -> tuple[list[tuple[str, Rule]], ...]:
        cached = self._by_type.get(dtype)
        if cached is None:
            t = self.tables

            def pick(table: RuleTable) -> list[tuple[str, Rule]]:
                return [(rule_key(r), r) for r in (*table.get("*", ()), *table.get(dtype, ()))]

            cached = self._by_type[dtype] = (pick(t.quality), pick(t.rules), pick(t.group_rules))
        return cached

    # -- records ----------------------------------------------------------------------------

    def handle(self, device: DeviceInfo, env: Envelope) -> list[Transition]:
        """The transitions one record causes (its device's state is updated in place)."""
        key = (device.tenant, device.device_id)
        st = self.devices.get(key)
        if st is None:
            st = self.devices[key] = DeviceState()
        self._dirty.add(key)
        ts = env.ts_us
        observe(st.seen, env)  # status messages are the broker's word: not the device heard
        stream = env.kind if env.kind != "ack" else "event"
        last = st.clock.get(stream)
        # Readings must move forward; several events may share one measurement time.
        late = last is not None and (ts <= last - self.lateness_us if stream == "reading"
                                     else ts < last - self.lateness_us)
        if last is None or ts > last:
            st.clock[stream] = ts
        quality, rules, group_rules = self._rules_of(device.type)
        out: list[Transition] = []
        mem = st.memory
        for name, rule in quality:
            self._run(rule, name, device, mem, env, st, None, out)
        if late:
            self.late += 1
            return out
        for name, rule in rules:
            self._run(rule, name, device, mem, env, st, None, out)
        if group_rules:
            gname = group_of(device)
            if gname is not None:
                gkey = (device.tenant, gname)
                gst = self.groups.get(gkey)
                if gst is None:
                    gst = self.groups[gkey] = GroupState()
                self._dirty_groups.add(gkey)
                for name, rule in group_rules:
                    self._run(rule, name, device, gst.memory, env, gst, gname, out)
        if self.online is not None and env.kind == "reading":
            try:
                for f in self.online.feed(device, st, env):
                    self._apply(f, device, st, None, out)
            except Exception:  # the statistical detector must not stop the stage either
                self._error("online_series.feed", device)
        return out

    def handle_rejected(self, device: DeviceInfo, reason: str, rx_us: int) -> list[Transition]:
        """The transitions a rejected message (DLQ) of a registered device causes."""
        key = (device.tenant, device.device_id)
        st = self.devices.get(key)
        if st is None:
            st = self.devices[key] = DeviceState()
        self._dirty.add(key)
        heard(st.seen, rx_us)  # it talks, though wrongly: not silent
        if not self.tables.on_rejected:
            return []
        out: list[Transition] = []
        for fn in self.tables.on_rejected:
            try:
                findings = list(fn(device, st.memory, reason, rx_us))
            except Exception:  # a faulty rule must not stop the stage: logged and counted
                self._error(rule_key(fn), device)
                continue
            for f in findings:
                self._apply(f, device, st, None, out)
        return out

    def _run(self, rule: Rule, name: str, device: DeviceInfo, memory: dict[str, Any],
             env: Envelope, owner: DeviceState | GroupState, group: str | None,
             out: list[Transition]) -> None:
        slot = memory.get(name)
        if slot is None:
            slot = memory[name] = {}
        try:
            findings = rule(device, slot, env)
            if findings:
                for f in findings:
                    self._apply(f, device, owner, group, out)
        except Exception:  # a faulty rule must not stop the stage: logged and counted
            self._error(name, device)

    def _error(self, name: str, device: DeviceInfo) -> None:
        self.rule_errors += 1
        if self.rule_errors <= MAX_ERRORS_LOGGED:
            log.exception("rule %s failed on %s/%s (%d failures so far)", name, device.tenant,
                          device.device_id, self.rule_errors)

    def _apply(self, f: Finding, device: DeviceInfo, owner: DeviceState | GroupState,
               group: str | None, out: list[Transition]) -> None:
        """Turn one finding into at most one transition."""
        target = f.device_id or device.device_id
        slot = str(f.kind) if group is None and target == device.device_id else f"{target}/{f.kind}"
        tenant = device.tenant
        score = min(1.0, max(0.0, float(f.score)))
        cur = owner.open.get(slot)
        if f.kind in IMMEDIATE_KINDS:
            if f.active:  # one anomaly per finding; a person ends it, not a rule
                opened = Opened(target, f.kind, f.severity, score, f.ts_us, dict(f.evidence), group)
                out.append(Transition(opened.anomaly(tenant), "open"))
            return
        if f.active:
            if cur is None:
                cur = owner.open[slot] = Opened(target, f.kind, f.severity, score, f.ts_us,
                                                dict(f.evidence), group, f.ts_us)
                out.append(Transition(cur.anomaly(tenant), "open"))
                return
            rises = SEVERITY_RANK[f.severity] > SEVERITY_RANK[cur.severity]
            moved = (abs(score - cur.score) >= UPDATE_SCORE_STEP
                     and f.ts_us - cur.updated_us >= UPDATE_EVERY_US)
            if (rises or moved) and f.ts_us > cur.updated_us:
                if rises:
                    cur.severity = f.severity
                cur.score, cur.evidence, cur.updated_us = score, dict(f.evidence), f.ts_us
                out.append(Transition(cur.anomaly(tenant), "update", f.ts_us))
            return
        if cur is None:
            return
        del owner.open[slot]
        evidence = {**cur.evidence, "cleared": dict(f.evidence)} if f.evidence else cur.evidence
        out.append(Transition(cur.anomaly(tenant, max(f.ts_us, cur.start_us), evidence), "close"))
