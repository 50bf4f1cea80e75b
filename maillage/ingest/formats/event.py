"""Discrete care events on `…/up/event`: `{"ts"?, "event", "sensor"?, "values"?, ...details}`.

Choices:
- `event` is a lower snake case name (`[a-z][a-z0-9_]*`, at most 64 characters); a malformed name
  is `invalid_schema`. A well-formed name outside `KNOWN_EVENTS` is kept and flagged with
  `attrs["unknown_event"] = True`, as unknown metric names are.
- `ts` is optional: a panic pendant may have no clock, so the receive time stands in.
- A care hub relaying several sensors names the one that fired with `"sensor"` (or `"device"`);
  it is kept in `attrs["sensor"]`. This parser does not re-key the envelope: the gateway does,
  after checking the registry that the sensor belongs to the hub's tenant.
- `values` (e.g. `battery_pct`) are read like canonical JSON values; every other field is a
  detail kept in `attrs` and must be a scalar (no nested objects or lists).
"""

from __future__ import annotations

import re
from typing import Any

from maillage.envelope import Envelope, SourceFormat
from maillage.errors import DlqReason, PayloadError
from maillage.ingest.formats import MessageContext, envelope
from maillage.ingest.formats.common import (
    load_json,
    measurement_time,
    metric_values,
    optional_seq,
    scalar_attrs,
    sensor_id,
)

EVENT_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")

KNOWN_EVENTS: frozenset[str] = frozenset({
    "fall_detected", "panic_button", "help_cancelled", "door_open", "door_closed", "motion",
    "no_motion", "bed_exit", "bed_enter", "battery_low", "tamper", "presence", "absence",
    "smoke_detected", "water_leak", "temperature_alarm",
})
"""Events the care rules know; others are accepted and flagged."""

_RESERVED = ("ts", "event", "seq", "values", "sensor", "device")


def parse(payload: bytes, ctx: MessageContext) -> list[Envelope]:
    """Parse one care event into an `Envelope(kind="event")`."""
    doc = load_json(payload)
    if not isinstance(doc, dict):
        raise PayloadError(DlqReason.INVALID_SCHEMA, "an event must be a JSON object")
    name = doc.get("event")
    if not isinstance(name, str) or not EVENT_NAME.fullmatch(name):
        raise PayloadError(DlqReason.INVALID_SCHEMA,
                           f"'event' must be a lower snake case name, not {str(name)[:40]!r}")
    ts = measurement_time(doc["ts"]) if doc.get("ts") is not None else ctx.received_at
    values = metric_values(doc["values"]) if doc.get("values") is not None else {}
    attrs = scalar_attrs({k: v for k, v in doc.items() if k not in _RESERVED})
    sensor = _sensor(doc)
    if sensor is not None:
        attrs["sensor"] = sensor
    if name not in KNOWN_EVENTS:
        attrs["unknown_event"] = True
    seq = optional_seq(doc.get("seq"))
    return [envelope(ctx, SourceFormat.EVENT, ts, values, attrs, kind="event", seq=seq,
                     event=name)]


def _sensor(doc: dict[str, Any]) -> str | None:
    """The relayed sensor named by `sensor` or `device` (both must agree)."""
    named = {k: sensor_id(doc[k], k) for k in ("sensor", "device") if doc.get(k) is not None}
    if len(set(named.values())) > 1:
        raise PayloadError(DlqReason.INVALID_SCHEMA, "'sensor' and 'device' name different sensors")
    return next(iter(named.values()), None)
