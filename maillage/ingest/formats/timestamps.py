"""Measurement-time parsing shared by the parsers: ISO 8601 strings or epoch numbers."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from maillage.errors import DlqReason, PayloadError

# Epoch numbers below this are seconds, above it milliseconds (1e11 s is year 5138).
_MS_THRESHOLD = 100_000_000_000


def parse_ts(value: object, *, field: str = "ts") -> datetime:
    """An aware UTC datetime from an ISO 8601 string (with zone) or epoch s/ms number."""
    if type(value) is str:  # the usual case first (types below are disjoint)
        return _parse_text(value, field)
    if isinstance(value, bool):
        raise PayloadError(DlqReason.BAD_TIMESTAMP, f"{field}: a boolean is not a time")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise PayloadError(DlqReason.BAD_TIMESTAMP, f"{field}: {value!r} is not a valid epoch")
        seconds = value / 1000.0 if value >= _MS_THRESHOLD else float(value)
        try:
            return datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise PayloadError(DlqReason.BAD_TIMESTAMP, f"{field}: {value!r} out of range") from exc
    if isinstance(value, str):
        return _parse_text(value, field)
    raise PayloadError(DlqReason.BAD_TIMESTAMP, f"{field}: expected a string or number")


def _parse_text(value: str, field: str) -> datetime:
    """An aware UTC datetime from ISO 8601 text with a zone."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise PayloadError(DlqReason.BAD_TIMESTAMP, f"{field}: {value!r} is not ISO 8601") from exc
    if parsed.tzinfo is None:
        raise PayloadError(DlqReason.BAD_TIMESTAMP, f"{field}: {value!r} has no time zone")
    if parsed.tzinfo is UTC:  # already UTC ("Z", "+00:00"): astimezone would return it as is
        return parsed
    try:
        return parsed.astimezone(UTC)
    except OverflowError as exc:  # e.g. 0001-01-01T00:00:00+01:00
        raise PayloadError(DlqReason.BAD_TIMESTAMP, f"{field}: {value!r} out of range") from exc
