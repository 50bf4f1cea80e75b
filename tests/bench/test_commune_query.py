"""The commune-query figure of `maillage bench --commune-query`, on a small commune."""

from __future__ import annotations

from maillage.bench.commune import commune_query, markdown_line


def test_commune_query_reports_a_year_of_daily_buckets(services) -> None:  # type: ignore[no-untyped-def]
    """A 30-meter commune over 40 days: 40 or 41 local days, timings reported (not asserted)."""
    result = commune_query(meters=30, days=40, runs=3, server_url=services.pg_admin_url)
    assert result["meters"] == 30
    assert result["buckets"] in (40, 41)
    assert result["p95_ms"] >= result["p50_ms"] > 0
    assert "30 meters" in markdown_line(result)
