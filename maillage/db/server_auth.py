"""The embedded server's superuser password (set once, when a trusting cluster is converted)."""

from __future__ import annotations

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
