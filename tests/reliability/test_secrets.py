"""Hole 9 (secret files, embedded PostgreSQL).

On dc046fb the broker's password and ACL files and `--credentials-out` were written with the
process umask (world-readable under the usual 022) and chmod-ed afterwards, and the embedded
PostgreSQL was initialised with `--auth=trust`: a connection without a password was accepted
(`test_embedded_postgres_demands_the_password` connected; the file modes watched below were 0644
for a moment, which `test_secret_files_are_never_world_readable` catches by writing under umask 0).
"""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import psycopg
import pytest

from maillage.registry import broker_auth
from maillage.stack import postgres
from maillage.stack.process import free_port


def _watch(directory: Path, seen: set[int], stop: threading.Event) -> None:
    """Record the modes of every file that appears in `directory` until `stop`."""
    while not stop.is_set():
        for entry in os.scandir(directory):
            try:
                seen.add(stat.S_IMODE(entry.stat(follow_symlinks=False).st_mode))
            except FileNotFoundError:
                pass


def test_secret_files_are_never_world_readable(tmp_path: Path) -> None:
    """The broker's password and ACL files, rewritten many times under umask 0: every file ever
    seen in the directory (temporary ones included) is 0600."""
    seen: set[int] = set()
    stop = threading.Event()
    watcher = threading.Thread(target=_watch, args=(tmp_path, seen, stop))
    old = os.umask(0)
    watcher.start()
    try:
        broker_auth.ensure_files(tmp_path)
        for i in range(300):
            broker_auth._replace(tmp_path / broker_auth.PASSWORD_FILE, f"user{i}:hash\n" * 50)
    finally:
        stop.set()
        watcher.join()
        os.umask(old)
    assert seen == {0o600}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [broker_auth.PASSWORD_FILE, broker_auth.ACL_FILE])


def test_embedded_postgres_demands_the_password(tmp_path: Path) -> None:
    """No password, a wrong one: refused, on TCP and on the socket; the URL handed out works;
    the password file is 0600."""
    root = tmp_path / "stack"
    root.mkdir()
    root.chmod(0o755)
    port = free_port()
    proc, url = postgres.start(root / "pg", port, durable=False)
    try:
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        for bad in (f"postgresql://postgres@127.0.0.1:{port}/postgres",
                    f"postgresql://postgres:wrong@127.0.0.1:{port}/postgres",
                    f"postgresql://postgres@/postgres?host={root / 'pg'}&port={port}"):
            with pytest.raises(psycopg.OperationalError):
                psycopg.connect(bad, connect_timeout=5).close()
        mode = stat.S_IMODE((root / postgres.PASSWORD_FILE).stat().st_mode)
        assert mode == 0o600
    finally:
        proc.stop()
    # A cluster made before (trusting local connections) is converted at its next start.
    hba = root / "pg" / "pg_hba.conf"
    hba.write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n")
    port = free_port()  # a fresh port: the first one may linger in TIME_WAIT
    proc, again = postgres.start(root / "pg", port, durable=False)
    try:
        assert again == url.replace(url.rsplit(":", 1)[1].split("/")[0], str(port))  # same password
        with psycopg.connect(again) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", connect_timeout=5).close()
    finally:
        proc.stop()
