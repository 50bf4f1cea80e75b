"""Pure parsers: `(payload bytes, MessageContext) -> list[Envelope]`, or `PayloadError(reason)`.

`parse_message` picks the parser from the topic's channel (`up/json`, `up/senml`, ...). Parsers
build their envelopes with `envelope()`, unvalidated when the fields are known good.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from maillage.envelope import EPOCH, MICROSECOND, Envelope, Kind, Scalar, SourceFormat
from maillage.errors import DlqReason, PayloadError
from maillage.metrics import KNOWN, is_valid_name

MAX_PAYLOAD_BYTES = 256 * 1024


@dataclass(slots=True)
class MessageContext:
    """What the gateway knows about a message besides its bytes (read-only by convention: not
    frozen, which would cost on every message)."""

    tenant: str
    device_id: str
    channel: str
    received_at: datetime
    device_type: str | None = None
    received_us: int | None = field(init=False, repr=False, compare=False)
    """Epoch µs of `received_at` when the envelope's own fields are sound (an aware receive time,
    tenant and device ids within bounds), else None: envelopes are then built validated."""
    key: bytes = field(init=False, repr=False, compare=False)
    """The envelopes' Kafka key."""

    def __post_init__(self) -> None:
        rx = self.received_at
        tenant, device = self.tenant, self.device_id
        sound = (isinstance(rx, datetime) and rx.utcoffset() is not None
                 and isinstance(tenant, str) and 0 < len(tenant) <= 64
                 and isinstance(device, str) and 0 < len(device) <= 128)
        self.received_us = (rx - EPOCH) // MICROSECOND if sound else None
        self.key = f"{tenant}/{device}".encode() if sound else b""


_known_superset = KNOWN.issuperset
_isfinite = math.isfinite
_trusted = Envelope.trusted


def envelope(ctx: MessageContext, fmt: SourceFormat, ts: datetime, values: dict[str, float],
             attrs: dict[str, Scalar], *, kind: Kind = "reading", seq: int | None = None,
             event: str | None = None) -> Envelope:
    """The envelope of a parser's checked fields (values must be floats, attributes scalars with
    no int), without validation when nothing is left to check; otherwise validated, raising the
    same `ValidationError` as always (a non-finite value, a bad name, a naive time...)."""
    unknown = () if _known_superset(values) else tuple(sorted(n for n in values if n not in KNOWN))
    rx = ctx.received_us
    try:  # a finite sum implies finite values (an overflowing one only costs a validation)
        finite = _isfinite(sum(values.values()))
    except (TypeError, OverflowError):
        finite = False
    if (rx is not None and finite and ts.utcoffset() is not None
            and (not unknown or all(map(is_valid_name, unknown)))):
        return _trusted(ctx.tenant, ctx.device_id, kind, (ts - EPOCH) // MICROSECOND, rx, fmt,
                        values, attrs, unknown, seq, event, ctx.key)
    return Envelope(tenant=ctx.tenant, device_id=ctx.device_id, kind=kind, ts=ts,
                    received_at=ctx.received_at, source_format=fmt, seq=seq, values=values,
                    event=event, attrs=attrs, unknown_metrics=unknown)


Parser = Callable[[bytes, MessageContext], list[Envelope]]


def _parsers() -> dict[str, Parser]:
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
