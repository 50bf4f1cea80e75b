"""The canonical envelope: one type carries every device message from the gateway to the database.

A device message becomes one or more `Envelope`s (one per measurement time). The gateway builds
them with validation (`Envelope.model_validate` / keyword constructor); the Kafka hops use the
fast path `to_kafka()` / `from_kafka()` (orjson, no re-validation of data already validated).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

from maillage.metrics import KNOWN, is_valid_name

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


Kind = Literal["reading", "event", "status", "ack"]


def to_us(ts: datetime) -> int:
    """Epoch microseconds of an aware datetime."""
    return (ts - EPOCH) // _US


def from_us(us: int) -> datetime:
    """Aware UTC datetime from epoch microseconds."""
    return EPOCH + us * _US


_US = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC) - EPOCH


class Envelope(BaseModel):
    """One device message at one measurement time, in canonical form."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tenant: str = Field(min_length=1, max_length=64)
    device_id: str = Field(min_length=1, max_length=128)
    kind: Kind = "reading"
    ts: datetime
    """Time of measurement (aware, UTC)."""
    received_at: datetime
    """Time the gateway received the message (aware, UTC)."""
    source_format: SourceFormat
    seq: int | None = None
    values: dict[str, float] = Field(default_factory=dict)
    """Canonical metric name -> value (booleans as 0/1)."""
    event: str | None = None
    """For `kind="event"`: the event name, e.g. `fall_detected`; for `status`: online/offline."""
    attrs: dict[str, str | float | bool | None] = Field(default_factory=dict)
    """Non-numeric details: lamp status, event details, TIC texts, the sender hub..."""
    unknown_metrics: tuple[str, ...] = ()
    """Metric names outside the vocabulary: kept in `values`, flagged here."""

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

    @property
    def key(self) -> bytes:
        """Kafka key: `{tenant}/{device_id}` keeps a device's records in order on one partition."""
        return f"{self.tenant}/{self.device_id}".encode()

    @classmethod
    def flag_unknown(cls, values: dict[str, float]) -> tuple[str, ...]:
        """Names in `values` that are not canonical metrics."""
        return tuple(sorted(n for n in values if n not in KNOWN))

    def to_kafka(self) -> bytes:
        """Compact JSON for Kafka (times as epoch microseconds)."""
        d: dict[str, Any] = {
            "tenant": self.tenant,
            "device_id": self.device_id,
            "kind": self.kind,
            "ts": to_us(self.ts),
            "rx": to_us(self.received_at),
            "fmt": self.source_format.value,
            "values": self.values,
        }
        if self.seq is not None:
            d["seq"] = self.seq
        if self.event is not None:
            d["event"] = self.event
        if self.attrs:
            d["attrs"] = self.attrs
        if self.unknown_metrics:
            d["unknown"] = list(self.unknown_metrics)
        return orjson.dumps(d)

    @classmethod
    def from_kafka(cls, raw: bytes) -> Envelope:
        """Fast path for records the gateway already validated: no re-validation."""
        d = orjson.loads(raw)
        return cls.model_construct(
            tenant=d["tenant"],
            device_id=d["device_id"],
            kind=d.get("kind", "reading"),
            ts=from_us(d["ts"]),
            received_at=from_us(d["rx"]),
            source_format=SourceFormat(d["fmt"]),
            seq=d.get("seq"),
            values=d.get("values", {}),
            event=d.get("event"),
            attrs=d.get("attrs", {}),
            unknown_metrics=tuple(d.get("unknown", ())),
        )


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
        import base64

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
        import base64

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
