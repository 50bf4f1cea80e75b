"""Command acknowledgements on `…/up/ack`: `{"id", "status": "done"|"failed", "ts"?, ...}`.

The envelope is `kind="ack"` with `event` = the status and `attrs["command_id"]` = the command id
as text (ids may be strings or integers on the wire). Other fields (an error message, the level a
lamp reached...) are kept in `attrs` and must be scalars. Without `ts`, the receive time is used.
"""

from __future__ import annotations

from maillage.envelope import Envelope, SourceFormat
from maillage.errors import DlqReason, PayloadError
from maillage.ingest.formats import MessageContext, envelope
from maillage.ingest.formats.common import load_json, measurement_time, scalar_attrs

ACK_STATUSES: frozenset[str] = frozenset({"done", "failed"})
MAX_ID_LENGTH = 128


def parse(payload: bytes, ctx: MessageContext) -> list[Envelope]:
    """Parse one command acknowledgement into an `Envelope(kind="ack")`."""
    doc = load_json(payload)
    if not isinstance(doc, dict):
        raise PayloadError(DlqReason.INVALID_SCHEMA, "an ack must be a JSON object")
    command_id = _command_id(doc.get("id"))
    status = doc.get("status")
    if not isinstance(status, str) or status not in ACK_STATUSES:
        raise PayloadError(DlqReason.INVALID_SCHEMA,
                           f"'status' must be 'done' or 'failed', not {str(status)[:40]!r}")
    ts = measurement_time(doc["ts"]) if doc.get("ts") is not None else ctx.received_at
    attrs = scalar_attrs({k: v for k, v in doc.items() if k not in ("id", "status", "ts")})
    attrs["command_id"] = command_id
    return [envelope(ctx, SourceFormat.ACK, ts, {}, attrs, kind="ack", event=status)]


def _command_id(value: object) -> str:
    """The acknowledged command's id, as text."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH and value.isprintable():
        return value
    raise PayloadError(DlqReason.INVALID_SCHEMA,
                       f"'id' must be a non-empty string (at most {MAX_ID_LENGTH}) or an integer")
