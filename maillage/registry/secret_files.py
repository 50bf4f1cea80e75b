"""Secret files (device passwords, broker credentials, password and ACL files) written safely.

A secret file is created 0600 from the start (`os.open` with the mode, so it is never
world-readable, not even between a write and a chmod) under a unique temporary name in the same
directory, synced, then renamed over the target: readers see the old file or the new one whole.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

MODE = 0o600


def write_secret(path: Path, data: str | bytes) -> None:
    """Atomically replace `path` with `data`, readable and writable by the owner only."""
    raw = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), MODE)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, MODE)  # the umask may only have removed bits; make the mode exact
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
