"""Small checks shared by the JSON-based parsers (event, ack, SenML).

`load_json` maps any decoding failure to `malformed`; `measurement_time` wraps `parse_ts` so that
times out of the datetime range become `bad_timestamp` instead of an `OverflowError`.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any

import orjson

from maillage.errors import DlqReason, PayloadError
from maillage.ingest.formats.timestamps import parse_ts
from maillage.vocabulary import is_valid_name

Scalar = str | float | bool | None

MAX_ATTRS = 64
MAX_TEXT = 256
# A relayed sensor id, as the registry spells device ids.
SENSOR_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def load_json(payload: bytes) -> Any:
    """Decode UTF-8 JSON, or raise `malformed`."""
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise PayloadError(DlqReason.MALFORMED, f"not JSON: {exc}") from exc


def measurement_time(value: object, *, field: str = "ts") -> datetime:
    """`parse_ts`, with out-of-range dates reported as `bad_timestamp`."""
    try:
        return parse_ts(value, field=field)
    except (OverflowError, ValueError) as exc:  # ISO dates at the edge of year 1/9999 with offset
        raise PayloadError(DlqReason.BAD_TIMESTAMP, f"{field}: {value!r} out of range") from exc


def number(value: object, name: str) -> float:
    """A finite number (booleans as 0/1), or raise `bad_value`."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    raise PayloadError(DlqReason.BAD_VALUE, f"{name}={value!r} is not a finite number")


def metric_values(raw: object, where: str = "") -> dict[str, float]:
    """A `values` object: valid metric names mapped to finite numbers."""
    if not isinstance(raw, dict):
        raise PayloadError(DlqReason.INVALID_SCHEMA, f"{where}'values' must be an object")
    values: dict[str, float] = {}
    for name, value in raw.items():
        if not is_valid_name(name):
            raise PayloadError(DlqReason.UNKNOWN_METRIC,
                               f"{where}metric name {name!r} is not valid")
        values[name] = number(value, f"{where}{name}")
    return values


def scalar_attrs(raw: dict[str, Any], where: str = "") -> dict[str, Scalar]:
    """Details kept as attributes: scalars only, bounded in number and length."""
    if len(raw) > MAX_ATTRS:
        raise PayloadError(DlqReason.INVALID_SCHEMA, f"{where}more than {MAX_ATTRS} details")
    attrs: dict[str, Scalar] = {}
    for key, value in raw.items():
        if not key or len(key) > 64:
            raise PayloadError(DlqReason.INVALID_SCHEMA, f"{where}bad detail name {key[:70]!r}")
        if isinstance(value, str):
            if len(value) > MAX_TEXT:
                raise PayloadError(DlqReason.INVALID_SCHEMA,
                                   f"{where}detail {key!r} longer than {MAX_TEXT} characters")
            attrs[key] = value
        elif value is None or isinstance(value, bool):
            attrs[key] = value
        elif isinstance(value, int | float):
            attrs[key] = number(value, f"{where}{key}")
        else:
            raise PayloadError(DlqReason.INVALID_SCHEMA,
                               f"{where}detail {key!r} must be a string, number, boolean or null")
    return attrs


def sensor_id(value: object, field: str) -> str:
    """The id of a sensor a hub relays for, or raise `invalid_schema`."""
    if not isinstance(value, str) or not SENSOR_ID.fullmatch(value):
        raise PayloadError(DlqReason.INVALID_SCHEMA,
                           f"{field!r} must be a device id (letters, digits, . _ : -), "
                           f"not {str(value)[:40]!r}")
    return value


def optional_seq(value: object) -> int | None:
    """The optional `seq` counter."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not -(2**63) <= value < 2**63:
        raise PayloadError(DlqReason.INVALID_SCHEMA, "'seq' must be a 64-bit integer")
    return value
