"""The dwelling's routine: long inactivity and night wandering, learned from the resident.

A group rule (`dwelling`, registered by `care.GROUP_RULES`): its memory is shared by the
dwelling's sensors and hub, and its anomalies are raised on the hub. The resident's activity
(motion, doors, bed exits and entries, the pendant) is followed as gaps between activities. Each
gap has a context: in bed (asleep or resting, never inactivity), possibly out (a door moved just
before), or at home awake. Gaps at home are learned per local hour of the day and outings as one
distribution, each as a slowly decaying maximum (a rare long gap is remembered for about a week
of gaps), from the prior `PRIOR_GAP_MIN`; a gap longer than `GAP_K` times what the resident
showed at that hour (and at least the floor) is `long_inactivity`. The sleep period is learned
from the main bed episodes (local night hours as the prior); in it, a door opening, or the bed
left longer than `NIGHT_K` times the resident's usual night trips, is `night_wandering`. Gaps
that raised an anomaly are not learned.

Memory holds epoch microseconds and minutes only; local time comes from the device's time zone
through an offset cached per UTC hour (exact across DST changes, which fall on whole hours).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from maillage.envelope import Envelope
from maillage.processors.detection.model import DeviceInfo, Finding, Kind, Memory, Severity

log = logging.getLogger(__name__)

US = 1_000_000
MIN_US = 60 * US
HOUR_US = 3600 * US

ACTIVITY_EVENTS = {"motion": "h", "presence": "h", "bed_exit": "h", "panic_button": "=",
                   "help_cancelled": "=", "door_open": "o", "door_closed": "o", "bed_enter": "b"}
"""Events that show the resident active, with the context of the gap they start (home, out, bed;
`=` for the pendant, worn everywhere: the context stays)."""
ACTIVITY_SENSORS = frozenset({"care_motion", "care_door", "care_bed"})
KNOWN_INTERVALS = 1.5
"""A sensor is trusted to have reported what happened up to this many intervals after its last
record (its heartbeat may come a little late)."""
DEFAULT_BEAT_S = 900
STALE_US = 48 * HOUR_US
"""A sensor silent this long is taken as removed: the dwelling is watched with the others. Before,
its silence holds inactivity back (the person may be in its room; it is reported offline)."""
FALL_QUIET_US = 2 * HOUR_US
"""After a fall, inactivity is the fall's (already critical); past this, it is raised as well."""
DOOR_CONTEXT_US = 10 * MIN_US
"""Activity this soon after a door moved may be the resident leaving: the gap may be an outing."""
PRIOR_GAP_MIN = 60.0
PRIOR_OUT_MIN = 180.0
PRIOR_NIGHT_TRIP_MIN = 15.0
GAP_K = 2.0
NIGHT_K = 1.5
GAP_FLOOR_MIN = 90.0
OUT_FLOOR_MIN = 240.0
NIGHT_TRIP_FLOOR_MIN = 25.0
"""A trip out of bed at night may run to twenty minutes (two bathroom visits in a row)."""
DECAY = 0.02
"""Per learned gap, a remembered maximum moves this share of the way down to the new gap."""

NIGHT_PRIOR = (23 * 60, 6 * 60)
"""Local night hours before the resident's sleep is learned."""
SLEEP_MARGIN_MIN = 60
"""The learned night starts this long after the usual bedtime and ends this long before waking."""
SLEEP_MIN_US = 3 * HOUR_US
"""A bed episode this long is a night's sleep (naps are shorter)."""
SLEEP_SPLIT_US = 60 * MIN_US
"""Out of bed longer than this ends a sleep episode; shorter is a night trip."""
SLEEP_LEARNED_AFTER = 3
EVENING_MIN = 120
"""Without a bed sensor, a gap begun this long before the night is taken as going to bed."""
SLEEP_ALPHA = 0.2


# -- per dwelling ----------------------------------------------------------------------------

def dwelling(device: DeviceInfo, memory: Memory, env: Envelope) -> Iterable[Finding]:
    """The dwelling's routine: long inactivity and night wandering, raised on the hub."""
    ts = env.ts_us
    out: list[Finding] = []
    kind = env.kind
    if kind == "event":
        ev = env.event or ""
        if ev.startswith("bed_"):
            memory["hb"] = 1
        ctx = ACTIVITY_EVENTS.get(ev)
        if ctx is not None:
            _activity(device, memory, ts, ev, ctx, out, env.rx_us)
        elif ev == "fall_detected":
            memory["fl"] = ts  # the fall is its own (critical) anomaly: no inactivity on top
            memory["nl"] = 1  # and the time on the floor is not a gap to learn
    elif kind == "reading":
        v = env.values
        occupied = v.get("bed_occupied")
        if occupied is not None:
            memory["hb"] = 1
            if (occupied >= 0.5) != (memory.get("bd") == 1) and ts > memory.get("bt", 0):
                # the bed says otherwise than the last bed event: one was missed
                _activity(device, memory, ts, "bed_enter" if occupied >= 0.5 else "bed_exit",
                          "b" if occupied >= 0.5 else "h", out, env.rx_us)
        if v.get("motion", 0.0) >= 0.5:
            _activity(device, memory, ts, "motion", "h", out)
    if device.type in ACTIVITY_SENSORS:
        seen = memory.get("ls")
        if seen is None:
            seen = memory["ls"] = {}
        # Known until its next report is due: a sensor reports changes at once, the rest on beat.
        credit = int(KNOWN_INTERVALS * (device.expected_interval_s or DEFAULT_BEAT_S) * US)
        if ts + credit > seen.get(device.device_id, 0):
            seen[device.device_id] = ts + credit
        if device.type == "care_bed":
            memory["bid"] = device.device_id
            if env.rx_us + credit > memory.get("brx", 0):
                memory["brx"] = env.rx_us + credit
    horizon = _horizon(memory, ts)
    if horizon > memory.get("now", 0):
        memory["now"] = horizon
        _inactivity(device, memory, horizon, out)
    # Whether the bed is still empty is the bed sensor's to say: only its silence holds it back.
    bed_known = memory["ls"].get(memory.get("bid", ""), ts) if "ls" in memory else ts
    bed_now = bed_known if bed_known < ts else ts
    if bed_now > memory.get("nb", 0):
        memory["nb"] = bed_now
        brx = memory.get("brx", env.rx_us)
        _bed_empty(device, memory, bed_now, brx if brx < env.rx_us else env.rx_us, out)
    return out


def _horizon(memory: Memory, ts: int) -> int:
    """How far the dwelling's activity is known: up to the activity sensor furthest behind.

    Each sensor is known up to its last record plus its reporting interval. A sensor whose
    records are held back (late), or stamped by a clock running behind, would otherwise hide
    activity and make a false inactivity; one silent for `STALE_US` no longer holds the others
    back (it is reported offline on its own)."""
    seen = memory.get("ls")
    if not seen:
        return ts
    h = ts
    for t in seen.values():
        if ts - STALE_US < t < h:
            h = t
    return h


def _hub(device: DeviceInfo) -> str:
    """The device standing for the dwelling: its hub."""
    if device.type == "care_hub":
        return device.device_id
    return str(device.meta.get("hub") or device.device_id)


def _activity(device: DeviceInfo, memory: Memory, ts: int, ev: str, ctx: str,
              out: list[Finding], rx: int = 0) -> None:
    """The resident showed activity at `ts`: the running gap ends, a new one starts."""
    if ctx == "o":
        memory["dr"] = max(ts, memory.get("dr", 0))
        if not memory.get("nw") and _is_night(device, memory, ts):
            _wander(device, memory, ts, {"trigger": ev}, out)
    if ev in ("bed_enter", "bed_exit") and ts > memory.get("bt", 0):
        memory["bt"] = ts
        if ev == "bed_enter":
            _bed_enter(device, memory, ts, out)
        else:
            _bed_exit(device, memory, ts, rx)
    last = memory.get("a")
    if last is not None and ts <= last:
        return  # an older record of another stream: the gap already ended later
    if memory.get("fl", ts) < ts:
        del memory["fl"]
    li = memory.pop("li", None)
    if li is not None:
        out.append(Finding(Kind.LONG_INACTIVITY, False, ts, Severity.WARNING, 1.0,
                           {"activity": ev}, device_id=li))
    elif last is not None and not memory.pop("nl", None):
        _learn_gap(memory, memory.get("ak", "h"), (ts - last) / MIN_US, ctx_end=ctx)
    if ctx == "=":
        ctx = memory.get("ak", "h")
    if ctx == "h" and ts - memory.get("dr", 0) <= DOOR_CONTEXT_US:
        ctx = "o"
    if memory.get("bd") == 1:
        ctx = "b"  # in bed: resting or asleep, whatever else moves
    memory["a"] = ts
    memory["ak"] = ctx
    if ctx != "b":
        memory["ah"] = _local_min(device.tz, memory, ts) // 60


def _learn_gap(memory: Memory, ctx: str, gap_min: float, *, ctx_end: str) -> None:
    """Learn a gap that raised nothing: an outing (door to door), else at home by start hour."""
    if ctx == "b" or ctx_end == "=":  # a pendant press splits a gap anywhere: not learned
        return
    if ctx == "o" and ctx_end == "o":
        memory["go"] = _decayed_max(memory.get("go", PRIOR_OUT_MIN), gap_min)
        return
    hours = memory.get("g")
    if hours is None:
        hours = memory["g"] = [PRIOR_GAP_MIN] * 24
    h = memory.get("ah", 12)
    hours[h] = _decayed_max(hours[h], gap_min)


def _decayed_max(high: float, x: float) -> float:
    return round(x if x > high else high - DECAY * (high - x), 2)


def _inactivity(device: DeviceInfo, memory: Memory, ts: int, out: list[Finding]) -> None:
    """Raise (or update) long inactivity when the running gap exceeds what is usual."""
    last = memory.get("a")
    ctx = memory.get("ak", "h")
    if last is None or ctx == "b" or memory.get("bd") == 1:
        return  # in bed (the bed says so even when its clock put the entry before the last motion)
    if ts - memory.get("fl", -FALL_QUIET_US) < FALL_QUIET_US:
        return
    if not memory.get("hb") and _sleeping_without_bed(device, memory, last, ts):
        return
    gap_min = (ts - last) / MIN_US
    if ctx == "o":
        usual = memory.get("go", PRIOR_OUT_MIN)
        limit = max(OUT_FLOOR_MIN, GAP_K * usual)
    else:
        hours = memory.get("g")
        usual = hours[memory.get("ah", 12)] if hours else PRIOR_GAP_MIN
        limit = max(GAP_FLOOR_MIN, GAP_K * usual)
    if gap_min <= limit:
        return
    hub = memory.get("li")
    # Opened at the last activity; later findings (score updates) at the time they are made.
    at = ts if hub else last
    hub = hub or _hub(device)
    memory["li"] = hub
    memory["nl"] = 1  # this gap is not learned
    score = min(1.0, 0.5 + 0.5 * (gap_min - limit) / limit)
    out.append(Finding(Kind.LONG_INACTIVITY, True, at, Severity.WARNING, score, {
        "inactive_min": round(gap_min), "usual_max_min_at_this_hour": round(usual),
        "threshold_min": round(limit), "context": "after going out" if ctx == "o" else "at home",
        "since_local": _hhmm(_local_min(device.tz, memory, last))}, device_id=hub))


# -- bed and night ---------------------------------------------------------------------------

def _bed_exit(device: DeviceInfo, memory: Memory, ts: int, rx: int) -> None:
    memory["bd"] = 0
    memory["bx"] = ts
    memory["bxr"] = rx
    memory["bn"] = 1 if _is_night(device, memory, ts) else 0
    memory.pop("nx", None)


def _bed_enter(device: DeviceInfo, memory: Memory, ts: int, out: list[Finding]) -> None:
    was = memory.get("bd")
    memory["bd"] = 1
    exit_ts = memory.get("bx")
    flagged = memory.get("nx")
    nw = memory.pop("nw", None)
    if nw is not None:
        out.append(Finding(Kind.NIGHT_WANDERING, False, ts, Severity.WARNING, 1.0,
                           {"back_in_bed": True}, device_id=nw))
    elif was == 0 and exit_ts is not None and memory.get("bn") and not flagged:
        trip = (ts - exit_ts) / MIN_US
        memory["gn"] = _decayed_max(memory.get("gn", PRIOR_NIGHT_TRIP_MIN), trip)
    # Sleep episodes: bed spells split by short (or flagged) trips form one night.
    ep = memory.get("se")  # [start µs]
    if ep is None or (exit_ts is not None and exit_ts >= ep[0] and not flagged
                      and ts - exit_ts > SLEEP_SPLIT_US):
        if ep is not None and exit_ts is not None and exit_ts - ep[0] >= SLEEP_MIN_US:
            _learn_sleep(device, memory, ep[0], exit_ts)
        memory["se"] = [ts]


def _learn_sleep(device: DeviceInfo, memory: Memory, start: int, end: int) -> None:
    """Learn bedtime and waking time (minutes after local noon, so a night does not wrap)."""
    s = (_local_min(device.tz, memory, start) - 720) % 1440
    e = (_local_min(device.tz, memory, end) - 720) % 1440
    sl = memory.get("sl")
    if sl is None:
        memory["sl"] = [s, e, 1]
        return
    n = sl[2] + 1
    a = max(SLEEP_ALPHA, 1.0 / n)
    memory["sl"] = [round(sl[0] + a * (s - sl[0]), 1), round(sl[1] + a * (e - sl[1]), 1), n]


def _night(memory: Memory) -> tuple[float, float]:
    """The night window in minutes after local noon: learned, or the prior."""
    sl = memory.get("sl")
    if sl is not None and sl[2] >= SLEEP_LEARNED_AFTER:
        return sl[0] + SLEEP_MARGIN_MIN, sl[1] - SLEEP_MARGIN_MIN
    return (NIGHT_PRIOR[0] - 720) % 1440, (NIGHT_PRIOR[1] - 720) % 1440


def _sleeping_without_bed(device: DeviceInfo, memory: Memory, last: int, ts: int) -> bool:
    """Without a bed sensor, a gap in the night, or begun in the evening before it, is sleep."""
    lo, hi = _night(memory)
    start = (_local_min(device.tz, memory, last) - 720) % 1440
    return lo - EVENING_MIN <= start <= hi or _is_night(device, memory, ts)


def _is_night(device: DeviceInfo, memory: Memory, ts: int) -> bool:
    lo, hi = _night(memory)
    m = (_local_min(device.tz, memory, ts) - 720) % 1440
    return lo <= m <= hi


def _bed_empty(device: DeviceInfo, memory: Memory, ts: int, rx: int, out: list[Finding]) -> None:
    """At night, a bed left longer than the resident's usual night trips; closed by morning.

    The time out of bed is the shorter of its measure on the bed sensor's clock (a backlog held
    back does not lengthen it) and on the receive clock (a bed clock running behind does not)."""
    nw = memory.get("nw")
    if nw is not None:
        if not _is_night(device, memory, ts):
            del memory["nw"]
            out.append(Finding(Kind.NIGHT_WANDERING, False, ts, Severity.WARNING, 1.0,
                               {"night_over": True}, device_id=nw))
        return
    if memory.get("bd") != 0 or not memory.get("bn"):
        return
    empty_min = (ts - memory["bx"]) / MIN_US
    bxr = memory.get("bxr")
    if bxr:
        empty_min = min(empty_min, (rx - bxr) / MIN_US)
    usual = memory.get("gn", PRIOR_NIGHT_TRIP_MIN)
    limit = max(NIGHT_TRIP_FLOOR_MIN, NIGHT_K * usual)
    if empty_min > limit and _is_night(device, memory, ts):
        _wander(device, memory, memory["bx"], {"trigger": "bed_empty",
                                               "bed_empty_min": round(empty_min),
                                               "usual_max_min": round(usual),
                                               "threshold_min": round(limit)}, out)


def _wander(device: DeviceInfo, memory: Memory, at: int, evidence: dict[str, Any],
            out: list[Finding]) -> None:
    hub = _hub(device)
    memory["nw"] = hub
    memory["nx"] = 1  # this night trip is not learned
    lo, hi = _night(memory)
    evidence["local_time"] = _hhmm(_local_min(device.tz, memory, at))
    evidence["night"] = f"{_hhmm(lo + 720)}-{_hhmm(hi + 720)}"
    out.append(Finding(Kind.NIGHT_WANDERING, True, at, Severity.WARNING, 1.0, evidence,
                       device_id=hub))


# -- local time ------------------------------------------------------------------------------

def _local_min(tz: ZoneInfo, memory: Memory, ts: int) -> int:
    """Minutes after local midnight; the UTC offset is cached for the UTC hour of `ts`."""
    hour = ts // HOUR_US
    cache = memory.get("tz")
    if cache is None or cache[0] != hour:
        off = datetime.fromtimestamp(hour * 3600, tz).utcoffset()
        cache = memory["tz"] = [hour, int(off.total_seconds() // 60) if off else 0]
    return int((ts // MIN_US + cache[1]) % 1440)


def _hhmm(minutes: float) -> str:
    m = int(minutes) % 1440
    return f"{m // 60:02d}:{m % 60:02d}"
