"""Data-quality rules: what reaches the platform is wrong (duplicates, order, delays, clocks, bytes).

One rule, `check`, sees every accepted record of every device (the engine also hands it records
behind the device's watermark), so it must stay cheap: a few dict and list operations, no
datetime. `on_rejected` sees the device's rejected messages (DLQ). Both keep their state in the
`quality.check` memory slot, so a reject and an accepted record are judged together.

How each kind is told apart, from the device's own records only:
- `duplicate`: a (measurement time, record) key seen among the device's last `RECENT` keys.
- `out_of_order`: a measurement time behind the latest one of the same stream. A clock that jumps
  back (its new offset to the receive time then holds) is not reordering: with sequence numbers
  the order of `seq` decides at once, without them the next record does.
- `late_reading` and `clock_skew` both show as a receive time far from the measurement time. A
  skewed clock keeps one offset while records arrive at their normal pace; late records (a
  backlog, a held message) each carry a different delay. So a large offset shared by
  `SKEW_RUN` records at distinct times is `clock_skew`; a large delay not shared by the next
  record is `late_reading`. Thresholds are minutes (physics of a live link: seconds), widened by
  the device's learned delay spread and reporting interval.
- `malformed_payload`: repeated rejects; `clock_skew` too when the rejects say the clock is off
  (`future_timestamp`, `before_device`).
An episode opens when its condition is seen (or repeated, for rejects and duplicates) and closes
after a quiet period: `QUIET_INTERVALS` reporting intervals (at least `QUIET_MIN_S`) and
`GOOD_RECORDS` sound records without it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from typing import Any
from zlib import crc32

from maillage.envelope import Envelope
from maillage.processors.detection.model import DeviceInfo, Finding, Kind, Memory, Severity

log = logging.getLogger(__name__)

US = 1_000_000
RECENT = 32
"""How many recent record keys are kept per device to recognise a duplicate."""
SKEW_MIN_S = 120.0
"""A clock off by two minutes or more is skewed ("by minutes"); a live link delays by seconds."""
SKEW_RUN = 3
"""Records at distinct times sharing one large offset before it is called a skew."""
LATE_MIN_S = 300.0
"""A reading received five minutes or more after it was measured is late (at least)."""
LATE_INTERVALS = 2.0
"""... and later than the device's next report was due."""
SPREAD_K = 8.0
"""Thresholds stay this many learned delay deviations above the learned delay."""
TOL_MIN_S = 2.0
"""Two offsets closer than this are one offset (jitter of a live link)."""
QUIET_MIN_S = 900.0
QUIET_INTERVALS = 4.0
GOOD_RECORDS = 3
REPEAT_DUPLICATES = 2
"""Duplicates that open `duplicate`: a single MQTT redelivery is expected, a habit is not."""
REPEAT_REJECTS = 2
REPEAT_SPAN_S = 600.0
"""Rejects that open `malformed_payload` (or `clock_skew` from rejects): two, or fewer when the
device reports so rarely that one message stands for ten minutes of its data."""
REPEAT_WINDOW_INTERVALS = 4.0
REPEAT_WINDOW_MIN_S = 3600.0
"""Repeats count when they fall within this many reporting intervals (at least an hour)."""
DEFAULT_INTERVAL_S = 300.0
WARM = 20
"""Records before the learned delay moves at its slow rate (1/n before)."""
ALPHA = 0.05
CLOCK_REASONS = frozenset({"future_timestamp", "before_device"})
"""Rejects that say the device clock is wrong rather than its payload."""
STREAMS = ("reading", "event")
"""Measurements; statuses and acknowledgements are not judged."""

SLOT = "quality.check"
"""The engine's memory slot of `check` (`module.function`), shared with `on_rejected`."""


def check(device: DeviceInfo, memory: Memory, env: Envelope) -> Iterable[Finding]:
    """The data-quality findings of one accepted record."""
    stream = env.kind
    if stream not in STREAMS:
        return ()
    ts, rx = env.ts_us, env.rx_us
    out: list[Finding] = []
    # Duplicate: the very same record again (MQTT retry, replay). Nothing else is judged on it.
    # The key holds a value too: a clock set back lands on times already seen, with new values.
    # An int (hash of a float is stable across processes; names go through crc32): cheap to
    # build and compare, and JSON-able.
    if stream == "event":
        key = ts * 31 + crc32((env.event or "").encode())
    else:
        key = ts * 31 + hash(next(iter(env.values.values()), 0.0))
    recent = memory.get("k")
    if recent is None:
        recent = memory["k"] = []
    if key in recent:
        _bad(memory, device, Kind.DUPLICATE, rx, ts, out, REPEAT_DUPLICATES,
             {"measured_at_us": ts, "record": env.event or "reading"})
        return out
    recent.append(key)
    if len(recent) > RECENT:
        del recent[0]
    eps = memory.get("ep")
    if eps:  # episodes under way: this sound record counts towards their end
        if "duplicate" in eps:
            _good(memory, device, Kind.DUPLICATE, rx, ts, out)
        if "malformed_payload" in eps:
            _good(memory, device, Kind.MALFORMED_PAYLOAD, rx, ts, out)

    d = (rx - ts) / US  # offset of receipt over measurement, seconds
    mu = memory.get("mu", 0.0)
    dev = memory.get("dv", 1.0)
    tol = 4 * dev if dev > TOL_MIN_S / 4 else TOL_MIN_S
    reordered = _order(memory, device, stream, ts, d, env.seq, tol, out)
    e = d - mu
    pend = memory.get("pl")
    if pend is not None and pend[0] != ts:
        # A large delay left pending: the next record at another time tells skew from lateness.
        memory.pop("pl")
        if abs(d - pend[1]) > tol:
            _bad(memory, device, Kind.LATE_READING, pend[0], pend[0], out, 1,
                 {"delay_s": round(pend[1], 1), "usual_delay_s": round(mu, 1),
                  "threshold_s": round(pend[2])})
    skew_thr = SKEW_MIN_S if SPREAD_K * dev < SKEW_MIN_S else SPREAD_K * dev
    if -skew_thr < e < skew_thr:  # the common case: a live link's delay
        if "run" in memory:
            del memory["run"]
        if not reordered:
            _learn(memory, d)
        eps = memory.get("ep")
        if eps:
            if "clock_skew" in eps:
                _good(memory, device, Kind.CLOCK_SKEW, rx, ts, out)
            if "late_reading" in eps:
                _good(memory, device, Kind.LATE_READING, ts, ts, out)
        return out
    run = memory.get("run")
    if run is not None and abs(d - run[2]) <= tol:
        if ts > run[3]:
            run[0] += 1
            run[3] = ts
        if run[0] >= SKEW_RUN:  # evidence built once, when it opens (a skew lasts)
            _bad(memory, device, Kind.CLOCK_SKEW, rx, run[1], out, 1,
                 lambda: {"offset_s": round(-d), "usual_delay_s": round(mu, 1),
                          "records": run[0], "threshold_s": round(skew_thr)})
        return out
    # A new large offset: the start of a skew, or a late record.
    memory["run"] = [1, rx, d, ts]
    iv = float(device.expected_interval_s or memory.get("iv") or DEFAULT_INTERVAL_S)
    late_thr = max(LATE_MIN_S, LATE_INTERVALS * iv, SPREAD_K * dev)
    if e > late_thr:
        memory["pl"] = [ts, d, late_thr]
    return out


def on_rejected(device: DeviceInfo, memory: Memory, reason: str, rx_us: int) -> Iterable[Finding]:
    """Findings of a rejected message of the device: repeated rejects open an episode."""
    slot = memory.get(SLOT)
    if slot is None:
        slot = memory[SLOT] = {}
    out: list[Finding] = []
    kind = Kind.CLOCK_SKEW if reason in CLOCK_REASONS else Kind.MALFORMED_PAYLOAD
    ep = _ep_of(slot, kind)
    if ep is not None and ep[0] and rx_us - ep[2] >= _quiet_us(device, slot):
        # Rejects after a long quiet stretch with no accepted record to close the episode.
        _close(slot, device, kind, ep[2], out)
    rkey = "rj" + kind.value[0]  # reasons are counted per kind and per episode
    if _ep_of(slot, kind) is None:
        slot.pop(rkey, None)
    reasons = slot.setdefault(rkey, {})
    reasons[reason] = reasons.get(reason, 0) + 1
    # Repeated: two rejects, or one from a device whose single message covers REPEAT_SPAN_S.
    iv = float(device.expected_interval_s or slot.get("iv") or DEFAULT_INTERVAL_S)
    repeats = min(REPEAT_REJECTS, max(1, math.ceil(REPEAT_SPAN_S / iv)))
    _bad(slot, device, kind, rx_us, rx_us, out, repeats,
         {"reason": reason, "rejects_by_reason": dict(reasons)})
    return out


# -- order -----------------------------------------------------------------------------------

def _order(memory: Memory, device: DeviceInfo, stream: str, ts: int, d: float,
           seq: int | None, tol: float, out: list[Finding]) -> bool:
    """Judge the measurement-time order of a stream; True when this record is out of order."""
    streams = memory.get("s")
    if streams is None:
        streams = memory["s"] = {}
    st = streams.get(stream)
    if st is None:  # [latest measurement time, latest seq]
        streams[stream] = [ts, seq]
        return False
    pend = memory.get("po")
    if pend is not None and pend[2] == stream and pend[0] != ts:
        memory.pop("po")
        if abs(d - pend[1]) <= tol and ts > pend[0]:
            st[0] = pend[0]  # the clock jumped back and kept its new offset: not reordering
        else:
            _bad(memory, device, Kind.OUT_OF_ORDER, pend[0], pend[0], out, 1,
                 {"behind_s": round(pend[3] / US, 1)})
    if ts < st[0]:
        if seq is not None and st[1] is not None:
            if seq < st[1]:
                _bad(memory, device, Kind.OUT_OF_ORDER, ts, ts, out, 1,
                     {"behind_s": round((st[0] - ts) / US, 1), "seq": seq, "latest_seq": st[1]})
                return True
            st[0], st[1] = ts, seq  # numbered in order: the clock jumped back
            return False
        memory["po"] = [ts, d, stream, st[0] - ts]
        return True
    if stream == "reading" and ts > st[0]:
        gap = (ts - st[0]) / US
        iv = memory.get("iv")
        memory["iv"] = gap if iv is None else iv + 0.1 * (gap - iv)
    st[0] = ts
    if seq is not None:
        st[1] = seq
    if _ep_of(memory, Kind.OUT_OF_ORDER) is not None:
        _good(memory, device, Kind.OUT_OF_ORDER, ts, ts, out)
    return False


def _learn(memory: Memory, d: float) -> None:
    """Learn the device's normal delay and its spread from records judged sound."""
    n = memory.get("n", 0)
    if n < WARM:
        n += 1
        memory["n"] = n
        a = 1.0 / n
    else:
        a = ALPHA
    mu = memory.get("mu", 0.0)
    mu += a * (d - mu)
    memory["mu"] = mu
    dev = memory.get("dv", 1.0)
    dev += a * (abs(d - mu) - dev)
    memory["dv"] = dev if dev > 0.5 else 0.5


# -- episodes --------------------------------------------------------------------------------
# memory["ep"][kind] = [open 0/1, first bad time, last bad time, bad count, good count since]

def _ep_of(memory: Memory, kind: Kind) -> list[Any] | None:
    eps = memory.get("ep")
    return None if eps is None else eps.get(kind._value_)  # `_value_`: `.value` is a slow property


def _quiet_us(device: DeviceInfo, memory: Memory) -> int:
    iv = float(device.expected_interval_s or memory.get("iv") or DEFAULT_INTERVAL_S)
    return int(max(QUIET_MIN_S, QUIET_INTERVALS * iv) * US)


def _bad(memory: Memory, device: DeviceInfo, kind: Kind, now: int, at: int,
         out: list[Finding], repeats: int,
         evidence: dict[str, Any] | Callable[[], dict[str, Any]]) -> None:
    """A record (or reject) showing `kind` at `now`; opens the episode at `at` once repeated
    (`evidence` may be a function: called only then)."""
    eps = memory.get("ep")
    if eps is None:
        eps = memory["ep"] = {}
    value = kind._value_
    ep = eps.get(value)
    if ep is not None and not ep[0]:
        iv = float(device.expected_interval_s or memory.get("iv") or DEFAULT_INTERVAL_S)
        window = max(REPEAT_WINDOW_MIN_S, REPEAT_WINDOW_INTERVALS * iv) * US
        if now - ep[2] > window:
            ep = None  # the earlier one was isolated
    if ep is None:
        ep = eps[value] = [0, at, now, 0, 0]
    if now > ep[2]:
        ep[2] = now
    ep[3] += 1
    ep[4] = 0
    if not ep[0] and ep[3] >= repeats:
        ep[0] = 1
        evidence = {**(evidence() if callable(evidence) else evidence), "count": ep[3]}
        out.append(Finding(kind, True, min(ep[1], at), Severity.INFO, 1.0, evidence))


def _good(memory: Memory, device: DeviceInfo, kind: Kind, now: int, ts: int,
          out: list[Finding]) -> None:
    """A sound record for `kind`: closes its episode after a quiet period."""
    eps = memory.get("ep")
    if not eps:
        return
    ep = eps.get(kind._value_)
    if ep is None:
        return
    ep[4] += 1
    if now - ep[2] < _quiet_us(device, memory):
        return
    if ep[0]:
        if ep[4] < GOOD_RECORDS:
            return
        _close(memory, device, kind, ts, out)
    else:
        del eps[kind.value]  # an isolated one, never opened, forgotten


def _close(memory: Memory, device: DeviceInfo, kind: Kind, ts: int, out: list[Finding]) -> None:
    ep = memory["ep"].pop(kind.value)
    out.append(Finding(kind, False, ts, Severity.INFO, 1.0, {"count": ep[3]}))


RULES = {"*": [check]}
