"""Schema migrations with yoyo (SQL files in `maillage/db/migrations`), after a readiness wait."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import psycopg
from yoyo import get_backend, read_migrations

log = logging.getLogger(__name__)
MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def wait_for_database(url: str, timeout_s: float = 60.0) -> None:
    """Retry connecting until PostgreSQL answers, or raise the last error."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with psycopg.connect(url, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def _yoyo_url(url: str) -> str:
    return "postgresql+psycopg://" + url.split("://", 1)[1]


def migrate(url: str, *, target: str | None = None) -> list[str]:
    """Apply pending migrations (up to `target` when given); return the ids applied."""
    wait_for_database(url)
    backend = get_backend(_yoyo_url(url))
    migrations = read_migrations(str(MIGRATIONS_DIR))
    with backend.lock():
        pending = backend.to_apply(migrations)
        if target is not None:
            ids = [m.id for m in migrations]
            if target not in ids:
                raise ValueError(f"unknown migration {target!r}; known: {', '.join(ids)}")
            keep = set(ids[: ids.index(target) + 1])
            pending = pending.filter(lambda m: m.id in keep)
        backend.apply_migrations(pending)
    applied = [m.id for m in pending]
    if applied:
        log.info("applied migrations: %s", ", ".join(applied))
    return applied


def applied_migrations(url: str) -> list[str]:
    """Ids of the migrations already applied, in order."""
    backend = get_backend(_yoyo_url(url))
    migrations = read_migrations(str(MIGRATIONS_DIR))
    done = backend.get_applied_migration_hashes()
    return [m.id for m in migrations if m.hash in done]
