"""The supervisor starts a dead child again after a back-off instead of stopping the stack."""

from __future__ import annotations

import time
from pathlib import Path

from maillage.config import Settings
from maillage.stack.process import ManagedProcess
from maillage.stack.supervisor import RESTART_FIRST_S, RESTART_MAX_S, Supervisor


def _dead_child(sup: Supervisor, tmp_path: Path) -> ManagedProcess:
    proc = sup._child(ManagedProcess("worker", ["true"], tmp_path / "worker.log"))
    assert proc.popen is not None
    proc.popen.wait(10)
    return proc


def test_a_dead_child_is_started_again_after_a_growing_back_off(tmp_path: Path) -> None:
    sup = Supervisor(Settings(data_dir=tmp_path))
    proc = _dead_child(sup, tmp_path)
    first_pid = proc.pid
    now = time.monotonic()
    sup.revive(now)  # noticed: a restart is scheduled, not done yet
    assert sup.restarts == {} and not proc.alive()
    sup.revive(now + RESTART_FIRST_S / 2)
    assert sup.restarts == {}
    sup.revive(now + RESTART_FIRST_S)
    assert sup.restarts == {"worker": 1}
    assert proc.pid != first_pid and sup.state.pids["worker"] == proc.pid
    # It dies again at once: the next wait doubles, up to the maximum.
    delays = []
    t = now + RESTART_FIRST_S
    for _ in range(8):
        assert proc.popen is not None
        proc.popen.wait(10)
        sup.revive(t)
        delay = sup._due["worker"] - t
        delays.append(delay)
        t += delay
        sup.revive(t)
    assert delays[:3] == [2 * RESTART_FIRST_S, 4 * RESTART_FIRST_S, 8 * RESTART_FIRST_S]
    assert max(delays) == RESTART_MAX_S
    assert sup.restarts["worker"] == 9
    # The state file names the new process.
    assert (tmp_path / "state.json").exists()


def test_a_child_that_ran_long_enough_restarts_after_the_first_delay(tmp_path: Path) -> None:
    sup = Supervisor(Settings(data_dir=tmp_path))
    proc = _dead_child(sup, tmp_path)
    sup._backoff["worker"] = RESTART_MAX_S  # it had been failing before
    sup._started["worker"] = time.monotonic() - 3600
    now = time.monotonic()
    sup.revive(now)
    assert sup._due["worker"] - now == RESTART_FIRST_S
    sup.revive(now + RESTART_FIRST_S)
    assert proc.alive() or proc.returncode() == 0
    assert sup.restarts == {"worker": 1}
