"""Schema migrations with yoyo (SQL files in `maillage/db/migrations`), after a readiness wait."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import psycopg
from psycopg import sql
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


GRAFANA_ROLE = "grafana_reader"
"""The role Grafana reads through (migration 0009 and deploy/grafana/provisioning)."""


def migrate(url: str, *, target: str | None = None,
            grafana_password: str | None = None) -> list[str]:
    """Apply pending migrations (up to `target` when given); return the ids applied.

    With `grafana_password`, the Grafana role's password is set too (a migration cannot hold a
    secret), so Grafana can log in once the schema exists."""
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
    if grafana_password:
        set_grafana_password(url, grafana_password)
    return applied


def set_grafana_password(url: str, password: str) -> None:
    """Let the Grafana role log in with `password` (stored hashed by the server)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(GRAFANA_ROLE), sql.Literal(password)))
    log.info("password of the %s role set", GRAFANA_ROLE)


def applied_migrations(url: str) -> list[str]:
    """Ids of the migrations already applied, in order."""
    backend = get_backend(_yoyo_url(url))
    migrations = read_migrations(str(MIGRATIONS_DIR))
    done = backend.get_applied_migration_hashes()
    return [m.id for m in migrations if m.hash in done]
