"""Rollup grains and area levels: the bucket vocabulary shared by rollups and queries."""

from __future__ import annotations

from typing import Literal, get_args

from psycopg import sql

Bucket = Literal["15m", "1h", "1d", "1mo"]
"""A rollup grain: 15 minutes, an hour, a day, a month (local time for the last three)."""
Level = Literal["site", "district", "commune"]
"""An area level rolled up over its devices."""
GRAINS: tuple[Bucket, ...] = get_args(Bucket)
LEVELS: tuple[Level, ...] = get_args(Level)


def table(grain: str) -> sql.Identifier:
    """The device rollup table of a grain."""
    if grain not in GRAINS:
        raise ValueError(f"unknown bucket {grain!r}; use one of {', '.join(GRAINS)}")
    return sql.Identifier(f"rollup_{grain}")
