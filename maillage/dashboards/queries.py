"""The panels' SQL as the dashboard builders and the panel test read it.

The texts themselves are in `maillage/db/grafana_panels.py`: the brief asked for them here, but
the package keeps every SQL text on floor 2 (`db/`, enforced by tests/test_architecture.py), so
this module only names them. Still one place for all of them: a panel's `rawSql` is always
`QUERIES[key].sql`.
"""

from __future__ import annotations

from maillage.db.grafana_panels import (
    ALL_COMMUNES,
    LIGHTING_KINDS,
    QUERIES,
    PanelQuery,
    in_communes,
    query,
)

__all__ = ["ALL_COMMUNES", "LIGHTING_KINDS", "QUERIES", "PanelQuery", "in_communes", "query"]
