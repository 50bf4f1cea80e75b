"""Pure parsers: `(payload bytes, MessageContext) -> list[Envelope]`, or `PayloadError(reason)`.

`parse_message` picks the parser from the topic's channel (`up/json`, `up/senml`, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from maillage.envelope import Envelope
from maillage.errors import DlqReason, PayloadError

MAX_PAYLOAD_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class MessageContext:
    """What the gateway knows about a message besides its bytes."""

    tenant: str
    device_id: str
    channel: str
    received_at: datetime
    device_type: str | None = None


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
