"""Use TimescaleDB hypertables and compression when the extension can be loaded; else nothing."""

from typing import Any

from yoyo import step

__depends__ = {"0003_rollups"}


def _apply(conn: Any) -> None:
    # Imported when the step runs: yoyo loads every migration file just to plan.
    from maillage.db.timescale import enable_timescale

    enable_timescale(conn)


steps = [step(_apply)]
