"""Pure parsers: `(payload bytes, MessageContext) -> list[Envelope]`, or `PayloadError(reason)`.

`parse_message` picks the parser from the topic's channel (`up/json`, `up/senml`, ...). Parsers
build their envelopes with `envelope()`, unvalidated when the fields are known good.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from maillage.envelope import EPOCH, MICROSECOND, Envelope, Kind, Scalar, SourceFormat
from maillage.errors import DlqReason, PayloadError
from maillage.vocabulary import KNOWN, is_valid_name

MAX_PAYLOAD_BYTES = 256 * 1024


@dataclass(slots=True, init=False)
class MessageContext:
    """What the gateway knows about a message besides its bytes (read-only by convention: not
    frozen, which would cost on every message)."""

    tenant: str
    device_id: str
    channel: str
    received_at: datetime
    device_type: str | None
    received_us: int | None = field(repr=False, compare=False)
    """Epoch µs of `received_at` when the envelope's own fields are sound (an aware receive time,
    tenant and device ids within bounds), else None: envelopes are then built validated."""
    key: bytes = field(repr=False, compare=False)
    """The envelopes' Kafka key."""

    def __init__(self, tenant: str, device_id: str, channel: str, received_at: datetime,
                 device_type: str | None = None) -> None:
        self.tenant = tenant
        self.device_id = device_id
        self.channel = channel
        self.received_at = received_at
        self.device_type = device_type
        self.received_us = None
        self.key = b""
        if (isinstance(tenant, str) and isinstance(device_id, str) and 0 < len(tenant) <= 64
                and 0 < len(device_id) <= 128 and isinstance(received_at, datetime)):
            try:
                if received_at.tzinfo is UTC or received_at.utcoffset() is not None:
                    self.received_us = (received_at - EPOCH) // MICROSECOND
                    self.key = f"{tenant}/{device_id}".encode()
            except Exception:  # noqa: BLE001 - an odd time zone: validation will say so, as before
                self.received_us = None


_known_superset = KNOWN.issuperset
_isfinite = math.isfinite
_trusted = Envelope.trusted


def envelope(ctx: MessageContext, fmt: SourceFormat, ts: datetime | None,
             values: dict[str, float], attrs: dict[str, Scalar], *, kind: Kind = "reading",
             seq: int | None = None, event: str | None = None, ts_us: int | None = None,
             canonical: bool = False) -> Envelope:
    """The envelope of a parser's checked fields (values must be floats, attributes scalars with
    no int), without validation when nothing is left to check; otherwise validated, raising the
    same `ValidationError` as always (a non-finite value, a bad name, a naive time...).
    The measurement time is `ts`, or `ts_us` (epoch µs of an aware time) when known;
    `canonical` says the parser found every value finite and named in the vocabulary."""
    if canonical:
        unknown: tuple[str, ...] = ()
        finite = True
    else:
        unknown = () if _known_superset(values) else tuple(sorted(n for n in values
                                                                  if n not in KNOWN))
        try:  # a finite sum implies finite values (an overflowing one only costs a validation)
            finite = _isfinite(sum(values.values()))
        except (TypeError, OverflowError):
            finite = False
    rx = ctx.received_us
    if rx is not None and finite and (not unknown or all(map(is_valid_name, unknown))):
        if ts_us is None and ts is not None and (ts.tzinfo is UTC or ts.utcoffset() is not None):
            ts_us = (ts - EPOCH) // MICROSECOND
        if ts_us is not None:
            return _trusted(ctx.tenant, ctx.device_id, kind, ts_us, rx, fmt, values, attrs,
                            unknown, seq, event, ctx.key)
    if ts is None:
        ts = EPOCH + ts_us * MICROSECOND  # type: ignore[operator]  # parsers give ts or ts_us
    return Envelope(tenant=ctx.tenant, device_id=ctx.device_id, kind=kind, ts=ts,
                    received_at=ctx.received_at, source_format=fmt, seq=seq, values=values,
                    event=event, attrs=attrs, unknown_metrics=unknown)


Parser = Callable[[bytes, MessageContext], list[Envelope]]


def _parsers() -> dict[str, Parser]:
    # Here, not at the top: canonical_json imports this package's MessageContext and helpers.
    from maillage.ingest.formats import canonical_json

    table: dict[str, Parser] = {"up/json": canonical_json.parse}
    # Optional formats register here as they are added (senml, tic, event, ack).
    for channel, module in (("up/senml", "senml"), ("up/tic", "tic"), ("up/event", "event"),
                            ("up/ack", "ack")):
        try:
            mod = __import__(f"maillage.ingest.formats.{module}", fromlist=["parse"])
        except ImportError:
            continue
        table[channel] = mod.parse
    return table


PARSERS: dict[str, Parser] = _parsers()


def parse_message(payload: bytes, ctx: MessageContext) -> list[Envelope]:
    """Parse one MQTT payload by its channel; raise PayloadError with a DLQ reason."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadError(DlqReason.TOO_LARGE, f"{len(payload)} bytes > {MAX_PAYLOAD_BYTES}")
    parser = PARSERS.get(ctx.channel)
    if parser is None:
        raise PayloadError(DlqReason.UNKNOWN_TOPIC, f"no parser for channel {ctx.channel!r}")
    return parser(payload, ctx)
