"""The benchmark's message mix: real payloads of the demo territory, re-stamped per bench device.

The territory simulator (`maillage.simulators.engine`) runs for a few simulated minutes; its
publications are grouped into archetypes (device type x wire format: a meter sending TIC
standard frames, a streetlight sending canonical JSON, a care sensor sending SenML...). Each
archetype keeps its share of the territory's messages and a few dozen real payloads.

A bench device replays payloads of its archetype in fast-forward: message `i` carries the
measurement time `t0 + i` seconds (TIC standard `DATE`, JSON `ts`, SenML `bt`), so every
(device, metric, time) is unique and the rows in the database can be counted exactly. TIC
historique frames carry no time: the gateway stamps them with their receive time (microseconds).
Every template is parsed once with the gateway's own parser to know exactly which readings a
message makes.
"""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import orjson

from maillage.ingest.formats import MessageContext, parse_message
from maillage.simulators import payloads

MIX_START = datetime(2026, 1, 15, 19, 0, tzinfo=UTC)
"""A winter evening: lamps on, heating on, people at home (any fixed time keeps runs comparable)."""
MIX_SPAN = timedelta(minutes=5)
MAX_TEMPLATES = 48
CHANNEL_KIND = {"up/json": "json", "up/event": "event", "up/senml": "senml"}


@dataclass(frozen=True, slots=True)
class Template:
    """One real payload, split around its time stamp so that re-stamping is a concatenation."""

    kind: str  # json | event | senml | tic_std | tic_hist
    raw: bytes
    tail: bytes
    head: bytes = b""
    metrics: tuple[str, ...] = ()
    """Metric names of the readings the gateway makes of one message."""
    events: int = 0
    """Events (rows of `events`) one message makes."""


@dataclass(frozen=True, slots=True)
class Archetype:
    """A kind of device of the territory and how it talks."""

    name: str
    device_type: str
    channel: str
    share: float
    """Share of the territory's messages sent by devices of this archetype."""
    templates: tuple[Template, ...]

    @property
    def readings_per_message(self) -> float:
        return sum(len(t.metrics) for t in self.templates) / len(self.templates)


def iso_seconds(ts: int) -> bytes:
    """`2026-01-05T10:00:00Z` of epoch seconds."""
    return _iso_hour(ts // 3600) + _MMSS_ISO[ts % 3600] + b"Z"


def tic_date_group(ts: int) -> bytes:
    """The TIC standard `DATE` group (Paris local time, season letter, checksum) of epoch seconds.

    Same bytes as `payloads.standard_group("DATE", "", payloads.horodate(...))`, made from a
    per-hour prefix: Paris is a whole number of hours from UTC and changes offset on the hour.
    """
    head, total = _tic_hour(ts // 3600)
    mmss, mmss_sum = _MMSS_TIC[ts % 3600]
    return head + mmss + _TIC_END[(total + mmss_sum) & 0x3F]


_MMSS_ISO = [b"%02d:%02d" % divmod(s, 60) for s in range(3600)]
_MMSS_TIC = [(b"%02d%02d" % divmod(s, 60), sum(b"%02d%02d" % divmod(s, 60))) for s in range(3600)]
_TIC_END = [b"\t\t" + bytes([c + 0x20]) + b"\r" for c in range(64)]


@lru_cache(maxsize=4096)
def _iso_hour(hour: int) -> bytes:
    return time.strftime("%Y-%m-%dT%H:", time.gmtime(hour * 3600)).encode()


@lru_cache(maxsize=4096)
def _tic_hour(hour: int) -> tuple[bytes, int]:
    """`LF DATE HT` + season and local YYMMDDhh, and the byte sum the checksum starts from."""
    stamp = payloads.horodate(datetime.fromtimestamp(hour * 3600, UTC))[:-4].encode()
    body = b"DATE\t" + stamp
    return b"\n" + body, sum(body) + 2 * 9  # the two HT after the time stamp and the empty value


def stamp(t: Template, ts: int, seq: int) -> bytes:
    """The template's payload with measurement time `ts` (epoch s) and sequence number `seq`."""
    kind = t.kind
    if kind == "tic_std":
        return t.head + tic_date_group(ts) + t.tail
    if kind == "json" or kind == "event":
        return b'{"ts":"%s","seq":%d,%s' % (iso_seconds(ts), seq, t.tail)
    if kind == "senml":
        return b'[{"bt":%d,%s' % (ts, t.tail)
    return t.raw  # tic_hist: no time in the frame


def _split(kind: str, payload: bytes) -> Template | None:
    """A template of a payload, or None when its shape is not the usual one."""
    if kind in ("json", "event"):
        doc = orjson.loads(payload)
        if not isinstance(doc, dict) or "ts" not in doc:
            return None
        rest = {k: v for k, v in doc.items() if k not in ("ts", "seq")}
        return Template(kind, payload, tail=orjson.dumps(rest)[1:])
    if kind == "senml":
        pack = orjson.loads(payload)
        if not isinstance(pack, list) or not pack or "bt" not in pack[0] or len(pack[0]) < 3:
            return None
        first = {k: v for k, v in pack[0].items() if k != "bt"}
        return Template(kind, payload, tail=orjson.dumps([first, *pack[1:]])[2:])
    if kind == "tic_std":
        start = payload.find(b"\nDATE\t")
        end = payload.find(b"\r", start)
        if start < 0 or end < 0:
            return None
        return Template(kind, payload, head=payload[:start], tail=payload[end + 1:])
    return Template(kind, payload, tail=b"")


def _kind(channel: str, payload: bytes) -> str | None:
    if channel == "up/tic":
        return "tic_std" if b"\nDATE\t" in payload else "tic_hist"
    return CHANNEL_KIND.get(channel)


def _count(t: Template, channel: str, device_type: str) -> Template | None:
    """The template with the readings and events the gateway's parser makes of it."""
    now = datetime.now(UTC).replace(microsecond=0)
    payload = stamp(t, int(now.timestamp()) - 3600, 1)
    ctx = MessageContext("bench", "probe", channel, now, device_type)
    try:
        envelopes = parse_message(payload, ctx)
    except Exception:  # noqa: BLE001 - a template the gateway would reject is not used
        return None
    metrics = tuple(m for e in envelopes if e.kind == "reading" for m in e.values)
    if len(set(metrics)) != len(metrics):
        return None  # several records of one metric in one message: not countable simply
    events = sum(1 for e in envelopes if e.kind in ("event", "ack"))
    if not metrics and not events:
        return None
    return Template(t.kind, t.raw, t.tail, t.head, metrics, events)


def build_mix(span: timedelta = MIX_SPAN, max_templates: int = MAX_TEMPLATES) -> list[Archetype]:
    """Archetypes of the demo territory (anomalies off), most frequent first."""
    from maillage.simulators.engine import Engine
    from maillage.simulators.scenario import Anomalies, demo_scenario

    sc = demo_scenario().model_copy(update={"anomalies": Anomalies(enabled=False)})
    engine = Engine(sc, start=MIX_START)
    types = {s.device_id: s.type.value for s in engine.territory.specs()}
    counts: Counter[tuple[str, str, str]] = Counter()
    found: dict[tuple[str, str, str], list[bytes]] = defaultdict(list)
    for pub in engine.publications(until=MIX_START + span):
        kind = _kind(pub.channel, pub.payload)
        if kind is None:
            continue
        key = (types[pub.device_id], pub.channel, kind)
        counts[key] += 1
        if len(found[key]) < max_templates * 4:
            found[key].append(pub.payload)
    total = sum(counts.values())
    rng = random.Random(7)
    out: list[Archetype] = []
    for (dtype, channel, kind), n in counts.most_common():
        raw = found[(dtype, channel, kind)]
        picked = raw if len(raw) <= max_templates else rng.sample(raw, max_templates)
        templates = []
        for payload in picked:
            t = _split(kind, payload)
            t = _count(t, channel, dtype) if t is not None else None
            if t is not None:
                templates.append(t)
        if templates:
            name = f"{dtype}-{kind}".replace("_", "-")
            out.append(Archetype(name, dtype, channel, n / total, tuple(templates)))
    share = sum(a.share for a in out)
    return [Archetype(a.name, a.device_type, a.channel, a.share / share, a.templates) for a in out]


def readings_per_message(mix: list[Archetype]) -> float:
    """Mean readings per message of the mix."""
    return sum(a.share * a.readings_per_message for a in mix)


@dataclass(frozen=True, slots=True)
class Slot:
    """One publishing connection: a bench device of an archetype, with its weight in the mix."""

    archetype: int
    weight: float


def plan_connections(mix: list[Archetype], per_worker: int) -> list[Slot]:
    """Connections of one publisher process: each archetype at least once, the rest by share."""
    slots: list[Slot] = []
    for i, a in enumerate(mix):
        n = max(1, round(per_worker * a.share))
        slots += [Slot(i, a.share / n)] * n
    return slots
