"""The expansion matches Grafana's: the PostgreSQL macro engine's own test cases
(grafana/pkg/tsdb/grafana-postgresql-datasource/macros_test.go) and the SQL data sources'
variable formatting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from maillage.dashboards.expand import MacroError, Variable, expand, expand_macros

FROM = datetime(2018, 4, 12, 18, 0, tzinfo=UTC)
TO = FROM + timedelta(minutes=5)


def _m(sql: str, *, ts: bool = False, start: datetime = FROM, end: datetime = TO) -> str:
    return expand_macros(sql, time_from=start, time_to=end, interval=timedelta(minutes=10), timescaledb=ts)


@pytest.mark.parametrize(("sql", "ts", "expected"), [
    ("select $__time(time_column)", False, 'select time_column AS "time"'),
    ("select min($__time(time_column))", False, 'select min(time_column AS "time")'),
    ("WHERE $__timeFilter(time_column)", False,
     "WHERE time_column BETWEEN '2018-04-12T18:00:00Z' AND '2018-04-12T18:05:00Z'"),
    ("select $__timeFrom()", False, "select '2018-04-12T18:00:00Z'"),
    ("select $__timeTo()", False, "select '2018-04-12T18:05:00Z'"),
    ("SELECT $__timeGroup(time_column,'5m'), value", False,
     'SELECT floor(extract(epoch from time_column)/300)*300 AS "time", value'),
    ("SELECT $__timeGroup(time_column,'5m') as time, value", False,
     "SELECT floor(extract(epoch from time_column)/300)*300 as time, value"),
    ("SELECT $__timeGroup(time_column,'5m')", False, "SELECT floor(extract(epoch from time_column)/300)*300"),
    ("SELECT $__timeGroupAlias(time_column,'5m')", False,
     'SELECT floor(extract(epoch from time_column)/300)*300 AS "time"'),
    ("$__timeGroup(time_column , '5m')", False, "floor(extract(epoch from time_column)/300)*300"),
    ("GROUP BY $__timeGroup(time_column,'5m')", True, "GROUP BY time_bucket('300.000s',time_column)"),
    ("GROUP BY $__timeGroup(time_column , '12d')", True, "GROUP BY time_bucket('1036800.000s',time_column)"),
    ("GROUP BY $__timeGroup(time_column , '20ms')", True, "GROUP BY time_bucket('0.020s',time_column)"),
    ("select $__unixEpochFilter(time)", False, "select time >= 1523556000 AND time <= 1523556300"),
    ("SELECT $__unixEpochGroupAlias(time_column+time_adjustment,'5m')", False,
     'SELECT floor((time_column+time_adjustment)/300)*300 AS "time"'),
    ("SELECT $__interval", False, "SELECT 10m"),
    ("SELECT $__interval_ms", False, "SELECT 600000"),
])
def test_macros_as_grafana(sql: str, ts: bool, expected: str) -> None:
    assert _m(sql, ts=ts) == expected


def test_fraction_of_a_second_and_unknown_macros() -> None:
    start = datetime(1960, 2, 1, 7, 0, 0, 500000, tzinfo=UTC)
    end = datetime(1980, 2, 3, 8, 0, 0, 500000, tzinfo=UTC)
    assert _m("WHERE $__timeFilter(t)", start=start, end=end) == (
        "WHERE t BETWEEN '1960-02-01T07:00:00.5Z' AND '1980-02-03T08:00:00.5Z'")
    with pytest.raises(MacroError, match="unknown macro"):
        _m("SELECT $__nope(x)")
    with pytest.raises(MacroError, match="interval"):
        _m("SELECT $__timeGroup(x, 'soon')")


def test_variables_as_the_sql_data_sources_format_them() -> None:
    """Single value raw, multi quoted, `sqlstring` always quoted with `'` doubled, a custom All
    value inserted as is; unknown names and the macros left to the back end."""
    v = {"tenant": Variable("vitre"), "c": Variable(["L'Hermitage", "Vitré"]),
         "a": Variable(["x", "y"], all_value="'__all'", is_all=True), "b": Variable(["x", "y"], is_all=True)}
    out = expand("$tenant ${tenant:sqlstring} $c ${c:sqlstring} ${a:sqlstring} $b [[tenant]] $other "
                 "$__timeFrom()", v, time_from=FROM, time_to=TO)
    assert out == ("vitre 'vitre' 'L''Hermitage','Vitré' 'L''Hermitage','Vitré' '__all' 'x','y' vitre "
                   "$other '2018-04-12T18:00:00Z'")
