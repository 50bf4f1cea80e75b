"""Root exception and the machine-readable reasons a message is rejected for."""

from __future__ import annotations

from enum import StrEnum


class MaillageError(Exception):
    """Root of every error maillage raises on purpose."""


class DlqReason(StrEnum):
    """Why a message went to `maillage.dlq` (stable, machine-readable)."""

    MALFORMED = "malformed"  # not parseable at all (bad JSON, bad bytes)
    INVALID_SCHEMA = "invalid_schema"  # parseable but fields missing or of the wrong type
    BAD_TIMESTAMP = "bad_timestamp"
    FUTURE_TIMESTAMP = "future_timestamp"
    BEFORE_DEVICE = "before_device"  # measured before the device was registered/installed
    UNKNOWN_METRIC = "unknown_metric"  # a metric name/unit that cannot be mapped at all
    BAD_VALUE = "bad_value"  # a value that is not a finite number
    UNKNOWN_DEVICE = "unknown_device"
    UNKNOWN_TOPIC = "unknown_topic"
    BAD_CHECKSUM = "bad_checksum"
    TRUNCATED = "truncated"
    UNKNOWN_LABEL = "unknown_label"
    UNSUPPORTED_FORMAT = "unsupported_format"
    TOO_LARGE = "too_large"
    BAD_UNIT = "bad_unit"  # a unit inconsistent with the metric its record names
    RELAY_NOT_PARENT = "relay_not_parent"  # a relay naming a device not registered under it
    TOO_MANY_METRIC_NAMES = "too_many_metric_names"  # the tenant's bound on unknown names is reached
    NOT_STORED = "not_stored"  # a record the storage could never write (stage and error in detail)
    SKIPPED = "skipped"  # a record storage accepted from Kafka but had nothing to store it under


class PayloadError(MaillageError):
    """A device payload that cannot be turned into envelopes; goes to the DLQ with `reason`."""

    def __init__(self, reason: DlqReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class StackError(MaillageError):
    """The embedded stack could not start, or is not running."""


class RegistryError(MaillageError):
    """Bad tenant, token or device registration input."""
