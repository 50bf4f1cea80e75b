"""`maillage up` stops cleanly: SIGTERM leaves no child process running."""

from __future__ import annotations

import signal
import tempfile
from pathlib import Path

import psutil

from tests.e2e.conftest import maillage_cmd, start_stack


def test_sigterm_leaves_no_child_process() -> None:
    """Every PID `maillage up` started (and their own children) is gone after SIGTERM."""
    root = Path(tempfile.mkdtemp(prefix="maillage-life-", dir="/tmp"))
    root.chmod(0o755)
    proc, status = start_stack(root / "data")
    up = psutil.Process(proc.pid)
    family = [p.pid for p in up.children(recursive=True)]
    assert set(status["parts"]) >= {"postgres", "mosquitto", "kafka", "gateway-0", "storage-0", "api"}
    assert len(family) >= 6
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(90) == 0
    alive = [pid for pid in family if psutil.pid_exists(pid)
             and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert alive == [], f"still running: {alive}"
    after = maillage_cmd(root / "data", "status", "--json", check=False)
    assert after.returncode == 1  # the state file no longer claims a running stack
