"""Make `anomalies` a hypertable on `start_ts` when TimescaleDB is in use; else nothing."""

from yoyo import step

__depends__ = {"0008_detection"}


def _apply(conn):  # type: ignore[no-untyped-def]  # yoyo passes a DB-API connection
    from maillage.db.detection import enable_anomalies_hypertable

    enable_anomalies_hypertable(conn)


steps = [step(_apply)]
