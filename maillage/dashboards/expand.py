"""Expand a panel's SQL the way Grafana does before PostgreSQL sees it (for tests and checks).

Three passes, in Grafana's order:
1. template variables (the front end's `templateSrv.replace` with the SQL data sources'
   `interpolateVariable`): `$name`, `${name}`, `${name:format}`, `[[name]]`; a single string
   value is inserted as is, a multi-value or "All" one quoted and comma-joined, `sqlstring`
   always quotes (doubling `'`); a variable's custom "All" value is inserted unformatted. `$__from`
   and `$__to` are the range in epoch milliseconds. Unknown names stay as they are.
2. the SQL back end's globals (`sqleng.Interpolate`): `$__interval_ms`, `$__interval`,
   `$__unixEpochFrom()`, `$__unixEpochTo()`.
3. the PostgreSQL macro engine (grafana/pkg/tsdb/grafana-postgresql-datasource/macros.go):
   every `$word(args)` must be a known macro, else an error like Grafana's "unknown macro".
   `$__timeGroup(col, '5m')` is `floor(extract(epoch from col)/300)*300`, or
   `time_bucket('300.000s',col)` when the data source is marked TimescaleDB; followed directly by
   a comma it takes the alias `AS "time"`, as Grafana does for pre-5.3 dashboards.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_VARIABLE = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^}]+))?(?::([^}]+))?\}")
_MACRO = re.compile(r"\$([_a-zA-Z0-9]+)\(([^)]*)\)")
_INTERVAL = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d|w|M|y)$")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "M": 2592000,
           "y": 31536000}


class MacroError(ValueError):
    """A macro Grafana would refuse (unknown name, missing argument, bad interval)."""


@dataclass(frozen=True)
class Variable:
    """A dashboard variable's current value; `all_value`: the custom value "All" stands for."""

    value: str | Sequence[str]
    all_value: str | None = None
    is_all: bool = False


def _quote(v: str) -> str:
    return "'" + v.replace("'", "''") + "'"


def _format(var: Variable, fmt: str | None) -> str:
    if var.is_all and var.all_value is not None and fmt not in ("text", "percentencode"):
        return var.all_value
    values = [var.value] if isinstance(var.value, str) else list(var.value)
    many = not isinstance(var.value, str) or var.is_all
    if fmt == "sqlstring" or (fmt is None and many):
        return ",".join(_quote(v) for v in values)
    if fmt in (None, "raw", "text", "csv"):
        return ",".join(values)
    if fmt == "singlequote":
        return ",".join("'" + v.replace("'", "\\'") + "'" for v in values)
    if fmt == "doublequote":
        return ",".join('"' + v.replace('"', '\\"') + '"' for v in values)
    raise MacroError(f"variable format {fmt!r} not handled here")


def _rfc3339(t: datetime) -> str:
    """Go's time.RFC3339Nano in UTC: no trailing zeros in the fraction, `Z`."""
    t = t.astimezone(UTC)
    frac = f".{t.microsecond:06d}".rstrip("0") if t.microsecond else ""
    return t.strftime("%Y-%m-%dT%H:%M:%S") + frac + "Z"


def _go_float(x: float) -> str:
    """Go's `%v` of a float64 (no exponent below 1e21, no trailing `.0`)."""
    return str(int(x)) if x.is_integer() and abs(x) < 1e21 else repr(x)


def _seconds(text: str) -> float:
    m = _INTERVAL.match(text.strip().strip("'"))
    if not m:
        raise MacroError(f"error parsing interval {text}")
    return float(m.group(1)) * _UNIT_S[m.group(2)]


def _go_interval(s: float) -> str:
    """gtime.FormatInterval: the largest whole unit."""
    for unit, size in (("y", 31536000), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if s >= size and s % size == 0:
            return f"{int(s // size)}{unit}"
    return f"{int(s * 1000)}ms"


def interpolate_variables(sql: str, variables: Mapping[str, Variable], *,
                          time_from: datetime, time_to: datetime) -> str:
    """Pass 1: the dashboard variables and `$__from`/`$__to`."""
    known = dict(variables)
    known.setdefault("__from", Variable(str(int(time_from.timestamp() * 1000))))
    known.setdefault("__to", Variable(str(int(time_to.timestamp() * 1000))))

    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(4)
        fmt = m.group(3) or m.group(6)
        var = known.get(name)
        return m.group(0) if var is None else _format(var, fmt)

    return _VARIABLE.sub(sub, sql)


def _macro(name: str, args: list[str], *, time_from: datetime, time_to: datetime,
           timescaledb: bool) -> str:
    if name in ("__time", "__timeEpoch", "__timeFilter", "__unixEpochFilter",
                "__unixEpochNanoFilter") and (not args or not args[0]):
        raise MacroError(f"missing time column argument for macro {name}")
    if name == "__time":
        return f'{args[0]} AS "time"'
    if name == "__timeEpoch":
        return f'extract(epoch from {args[0]}) as "time"'
    if name == "__timeFilter":
        return f"{args[0]} BETWEEN '{_rfc3339(time_from)}' AND '{_rfc3339(time_to)}'"
    if name == "__timeFrom":
        return f"'{_rfc3339(time_from)}'"
    if name == "__timeTo":
        return f"'{_rfc3339(time_to)}'"
    if name in ("__timeGroup", "__timeGroupAlias", "__unixEpochGroup", "__unixEpochGroupAlias"):
        if len(args) < 2:
            raise MacroError(f"macro {name} needs time column and interval and optional fill value")
        s = _seconds(args[1])
        if name.startswith("__unixEpoch"):
            out = f"floor(({args[0]})/{_go_float(s)})*{_go_float(s)}"
        elif timescaledb:
            out = f"time_bucket('{s:.3f}s',{args[0]})"
        else:
            out = f"floor(extract(epoch from {args[0]})/{_go_float(s)})*{_go_float(s)}"
        return out + (' AS "time"' if name.endswith("Alias") else "")
    if name == "__unixEpochFilter":
        lo, hi = int(time_from.timestamp()), int(time_to.timestamp())
        return f"{args[0]} >= {lo} AND {args[0]} <= {hi}"
    raise MacroError(f"unknown macro {name!r}")


def expand_macros(sql: str, *, time_from: datetime, time_to: datetime, interval: timedelta,
                  timescaledb: bool = False) -> str:
    """Passes 2 and 3: the SQL back end's globals, then the PostgreSQL macros."""
    s = interval.total_seconds()
    sql = sql.replace("$__interval_ms", str(int(s * 1000)))
    sql = sql.replace("$__interval", _go_interval(s))
    sql = sql.replace("$__unixEpochFrom()", str(int(time_from.timestamp())))
    sql = sql.replace("$__unixEpochTo()", str(int(time_to.timestamp())))
    original = sql

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name == "__timeGroup":
            end = original.find(m.group(0))
            if end >= 0 and original[end + len(m.group(0)):end + len(m.group(0)) + 1] == ",":
                name = "__timeGroupAlias"
        args = [a.strip() for a in m.group(2).split(",")]
        return _macro(name, args, time_from=time_from, time_to=time_to, timescaledb=timescaledb)

    return _MACRO.sub(sub, sql)


def expand(sql: str, variables: Mapping[str, Variable], *, time_from: datetime, time_to: datetime,
           interval: timedelta = timedelta(minutes=1), timescaledb: bool = False) -> str:
    """The SQL Grafana would send to PostgreSQL for this panel, range and variable values."""
    sql = interpolate_variables(sql, variables, time_from=time_from, time_to=time_to)
    return expand_macros(sql, time_from=time_from, time_to=time_to, interval=interval,
                         timescaledb=timescaledb)
