"""The canonical envelope: one type carries every device message from the gateway to the database.

A device message becomes one or more `Envelope`s (one per measurement time). Untrusted input is
built with the validating keyword constructor `Envelope(...)`; the parsers, which check every
field themselves, use `Envelope.trusted(...)`, and so does `from_kafka()` for records the gateway
already validated. `to_kafka()` writes compact JSON (orjson) with times as epoch microseconds.
"""

from __future__ import annotations

import base64
import math
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from operator import attrgetter
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

from maillage.vocabulary import KNOWN, is_valid_name

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class SourceFormat(StrEnum):
    """The wire format a message arrived in."""

    JSON = "json"
    SENML = "senml"
    TIC = "tic"
    EVENT = "event"
    STATUS = "status"
    ACK = "ack"
    SIMULATED = "simulated"


_FORMATS = {f.value: f for f in SourceFormat}
"""SourceFormat by value: a dict lookup instead of the enum's call (`from_kafka`, per record)."""

Kind = Literal["reading", "event", "status", "ack"]
Scalar = str | float | bool | None


MICROSECOND = timedelta(microseconds=1)


def to_us(ts: datetime) -> int:
    """Epoch microseconds of an aware datetime."""
    return (ts - EPOCH) // MICROSECOND


def from_us(us: int) -> datetime:
    """Aware UTC datetime from epoch microseconds."""
    return EPOCH + us * MICROSECOND


class _Checked(BaseModel):
    """The validated constructor's schema: the envelope's bounds, checked by pydantic."""

    model_config = ConfigDict(frozen=True, extra="forbid", title="Envelope")

    tenant: str = Field(min_length=1, max_length=64)
    device_id: str = Field(min_length=1, max_length=128)
    kind: Kind = "reading"
    ts: datetime
    received_at: datetime
    source_format: SourceFormat
    seq: int | None = None
    values: dict[str, float] = Field(default_factory=dict)
    event: str | None = None
    attrs: dict[str, str | float | bool | None] = Field(default_factory=dict)
    unknown_metrics: tuple[str, ...] = ()

    @field_validator("ts", "received_at")
    @classmethod
    def _aware_utc(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("timestamp must carry a time zone")
        return v.astimezone(UTC)

    @field_validator("values")
    @classmethod
    def _finite(cls, v: dict[str, float]) -> dict[str, float]:
        for name, value in v.items():
            if not is_valid_name(name):
                raise ValueError(f"bad metric name {name!r}")
            if not math.isfinite(value):
                raise ValueError(f"value of {name} is not a finite number")
        return v


class Envelope:
    """One device message at one measurement time, in canonical form. Immutable.

    `Envelope(**fields)` validates (pydantic, raising `ValidationError`): for untrusted input.
    `Envelope.trusted(...)` does not: for the parsers, which have checked every field already
    (names valid, values finite floats, aware times, bounded ids). Times are held as epoch
    microseconds (`ts_us`, `rx_us`); `ts` and `received_at` are aware UTC datetimes made from them.
    """

    __slots__ = ("_tenant", "_device_id", "_kind", "_ts_us", "_rx_us", "_fmt", "_seq", "_values",
                 "_event", "_attrs", "_unknown", "_key")
    _tenant: str
    _device_id: str
    _kind: Kind
    _ts_us: int
    _rx_us: int
    _fmt: SourceFormat
    _seq: int | None
    _values: dict[str, float]
    _event: str | None
    _attrs: dict[str, Scalar]
    _unknown: tuple[str, ...]
    _key: bytes

    def __init__(self, **fields: Any) -> None:
        c = _Checked(**fields)
        self._tenant = c.tenant
        self._device_id = c.device_id
        self._kind = c.kind
        self._ts_us = to_us(c.ts)
        self._rx_us = to_us(c.received_at)
        self._fmt = c.source_format
        self._seq = c.seq
        self._values = c.values
        self._event = c.event
        self._attrs = c.attrs
        self._unknown = c.unknown_metrics
        self._key = f"{c.tenant}/{c.device_id}".encode()

    @classmethod
    def trusted(cls, tenant: str, device_id: str, kind: Kind, ts_us: int, rx_us: int,
                source_format: SourceFormat, values: dict[str, float], attrs: dict[str, Scalar],
                unknown_metrics: tuple[str, ...] = (), seq: int | None = None,
                event: str | None = None, key: bytes | None = None) -> Envelope:
        """An envelope of fields already checked, without validation (`key` when known)."""
        env = _new(cls)
        env._tenant = tenant
        env._device_id = device_id
        env._kind = kind
        env._ts_us = ts_us
        env._rx_us = rx_us
        env._fmt = source_format
        env._seq = seq
        env._values = values
        env._event = event
        env._attrs = attrs
        env._unknown = unknown_metrics
        env._key = key or f"{tenant}/{device_id}".encode()
        return env

    tenant = property(attrgetter("_tenant"), doc="Tenant id.")
    device_id = property(attrgetter("_device_id"), doc="Device id, unique in its tenant.")
    kind = property(attrgetter("_kind"), doc="reading, event, status or ack.")
    ts_us = property(attrgetter("_ts_us"), doc="Time of measurement, epoch microseconds.")
    rx_us = property(attrgetter("_rx_us"), doc="Time the gateway received the message, epoch µs.")
    source_format = property(attrgetter("_fmt"), doc="The wire format it arrived in.")
    seq = property(attrgetter("_seq"), doc="The device's sequence number, when it sends one.")
    values = property(attrgetter("_values"),
                      doc="Canonical metric name -> value (booleans as 0/1).")
    event = property(attrgetter("_event"), doc="For `kind=\"event\"`: the event name, e.g. "
                     "`fall_detected`; for `status`: online/offline; for `ack`: done/failed.")
    attrs = property(attrgetter("_attrs"), doc="Non-numeric details: lamp status, event details, "
                     "TIC texts, the sender hub...")
    unknown_metrics = property(attrgetter("_unknown"), doc="Metric names outside the "
                               "vocabulary: kept in `values`, flagged here.")
    key = property(attrgetter("_key"), doc="Kafka key: `{tenant}/{device_id}` keeps a device's "
                   "records in order on one partition.")

    @property
    def ts(self) -> datetime:
        """Time of measurement (aware, UTC)."""
        return from_us(self._ts_us)

    @property
    def received_at(self) -> datetime:
        """Time the gateway received the message (aware, UTC)."""
        return from_us(self._rx_us)

    def replace(self, *, device_id: str, attrs: dict[str, Scalar]) -> Envelope:
        """The same envelope for another device (a relayed sensor) with other attributes."""
        return Envelope.trusted(self._tenant, device_id, self._kind, self._ts_us, self._rx_us,
                                self._fmt, self._values, attrs, self._unknown, self._seq,
                                self._event)

    @classmethod
    def flag_unknown(cls, values: dict[str, float]) -> tuple[str, ...]:
        """Names in `values` that are not canonical metrics."""
        return tuple(sorted(n for n in values if n not in KNOWN))

    def to_kafka(self) -> bytes:
        """Compact JSON for Kafka (times as epoch microseconds)."""
        d: dict[str, Any] = {"tenant": self._tenant, "device_id": self._device_id,
                             "kind": self._kind, "ts": self._ts_us, "rx": self._rx_us,
                             "fmt": self._fmt, "values": self._values}
        if self._seq is not None:
            d["seq"] = self._seq
        if self._event is not None:
            d["event"] = self._event
        if self._attrs:
            d["attrs"] = self._attrs
        if self._unknown:
            d["unknown"] = self._unknown
        return _dumps(d)

    @classmethod
    def from_kafka(cls, raw: bytes) -> Envelope:
        """Fast path for records the gateway already validated: no re-validation."""
        d = orjson.loads(raw)
        return cls.trusted(d["tenant"], d["device_id"], d.get("kind", "reading"), d["ts"],
                           d["rx"], _FORMATS[d["fmt"]], d.get("values", {}),
                           d.get("attrs", {}), tuple(d.get("unknown", ())), d.get("seq"),
                           d.get("event"))

    def _fields(self) -> tuple[Any, ...]:
        return (self._tenant, self._device_id, self._kind, self._ts_us, self._rx_us, self._fmt,
                self._seq, self._values, self._event, self._attrs, self._unknown)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Envelope):
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]  # values and attrs are dicts

    def __repr__(self) -> str:
        return (f"Envelope(tenant={self._tenant!r}, device_id={self._device_id!r}, "
                f"kind={self._kind!r}, ts={self.ts.isoformat()!r}, "
                f"received_at={self.received_at.isoformat()!r}, source_format={self._fmt.value!r}, "
                f"seq={self._seq!r}, values={self._values!r}, event={self._event!r}, "
                f"attrs={self._attrs!r}, unknown_metrics={self._unknown!r})")


_new = object.__new__
_dumps = orjson.dumps


class DlqRecord(BaseModel):
    """A message the gateway could not accept, with the original bytes and why."""

    model_config = ConfigDict(frozen=True)

    mqtt_topic: str
    tenant: str | None = None
    device_id: str | None = None
    received_at: datetime
    reason: str
    detail: str
    payload: bytes

    def to_kafka(self) -> bytes:
        """JSON with the payload as latin-1 text when printable, else base64."""
        return orjson.dumps(
            {
                "mqtt_topic": self.mqtt_topic,
                "tenant": self.tenant,
                "device_id": self.device_id,
                "rx": to_us(self.received_at),
                "reason": self.reason,
                "detail": self.detail,
                "payload_b64": base64.b64encode(self.payload).decode(),
            }
        )

    @classmethod
    def from_kafka(cls, raw: bytes) -> DlqRecord:
        """Inverse of `to_kafka`."""
        d = orjson.loads(raw)
        return cls(
            mqtt_topic=d["mqtt_topic"],
            tenant=d.get("tenant"),
            device_id=d.get("device_id"),
            received_at=from_us(d["rx"]),
            reason=d["reason"],
            detail=d["detail"],
            payload=base64.b64decode(d["payload_b64"]),
        )

    @property
    def key(self) -> bytes:
        """Kafka key, as for envelopes (`unknown` when the topic named no device)."""
        return f"{self.tenant or '-'}/{self.device_id or '-'}".encode()
