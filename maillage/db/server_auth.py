"""The embedded server's superuser password (set once, when a trusting cluster is converted)."""

from __future__ import annotations

import time

import psycopg
from psycopg import sql


def set_password(*, url: str, password: str) -> None:
    """Give the connecting role (the superuser) a SCRAM password."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET password_encryption = 'scram-sha-256'")
        conn.execute(sql.SQL("ALTER ROLE CURRENT_USER PASSWORD {}").format(sql.Literal(password)))


def reload_config(*, url: str) -> None:
    """Make the server read its configuration files again (pg_hba.conf)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_reload_conf()")


def wait_ready(*, url: str, timeout_s: float = 60.0) -> None:
    """Wait until the server accepts this URL's connections (it listens before it is ready:
    "the database system is starting up")."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            psycopg.connect(url, connect_timeout=5).close()
            return
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline or "starting up" not in str(exc):
                raise
            time.sleep(0.2)


def accepts(*, url: str) -> bool:
    """Whether a connection with this URL is let in."""
    try:
        psycopg.connect(url, connect_timeout=5).close()
        return True
    except psycopg.OperationalError:
        return False
