"""Where the time goes: py-spy on the gateway and storage processes during the throughput phase.

py-spy samples without stopping the target (`--nonblocking`), so the pipeline keeps its pace,
minus the CPU py-spy itself takes on a small machine. Each process gets a flame graph (SVG), the
raw collapsed stacks, and a summary: own time per function and per package.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]+)(?::\d+)?\)$")


def pyspy_binary() -> str | None:
    """py-spy next to this interpreter, else on PATH."""
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


@dataclass
class Recording:
    name: str
    raw: Path
    svg: Path
    procs: list[subprocess.Popen[bytes]]

    def wait(self, timeout_s: float) -> None:
        for p in self.procs:
            try:
                p.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                p.kill()


def record(pid: int, name: str, out_dir: Path, duration_s: int, rate: int = 100) -> Recording | None:
    """Start py-spy on `pid` for `duration_s` (raw stacks and a flame graph); None without py-spy."""
    exe = pyspy_binary()
    if exe is None:
        log.warning("py-spy not found: pip install py-spy (dev dependency) to profile")
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    raw, svg = out_dir / f"{name}.txt", out_dir / f"{name}.svg"
    common = ["record", "-p", str(pid), "-d", str(duration_s), "-r", str(rate), "--nonblocking",
              "--function"]
    procs = [subprocess.Popen([exe, *common, "--threads", "--format", "raw", "-o", str(raw)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
             subprocess.Popen([exe, *common, "--format", "flamegraph", "-o", str(svg)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    return Recording(name, raw, svg, procs)


_WAITS = {
    "EpollSelector.select": "(waiting: epoll/select)",
    "select": "(waiting: epoll/select)",
    "Connection.wait": "(waiting: PostgreSQL round trip)",
    "Condition.wait": "(waiting: lock/condition)",
    "Event.wait": "(waiting: lock/condition)",
    "Thread.join": "(waiting: lock/condition)",
}


def _package(func: str, path: str) -> str:
    """A short owner for a frame: `maillage.ingest.formats`, `paho`, `asyncio`, or a wait."""
    if func in _WAITS:
        return _WAITS[func]
    p = path.replace("\\", "/")
    if "site-packages/" in p:
        p = p.split("site-packages/", 1)[1]
    if p.startswith("maillage/"):
        parts = p.removesuffix(".py").split("/")
        return ".".join(parts[:-1]) if len(parts) > 2 else ".".join(parts)
    if "/" in p:
        return p.split("/", 1)[0]
    return p.removesuffix(".py")


def summarize(raw: Path, top: int = 12) -> dict[str, object]:
    """Own time per function and per package, time per thread, from py-spy's raw stacks."""
    own: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        n = int(count_text)
        frames = stack.split(";")
        thread = frames[0] if frames and frames[0].startswith(("thread", "process")) else "?"
        frames = [f for f in frames if not f.startswith(("thread (", "process "))]
        if not frames:
            continue
        total += n
        threads[thread] += n
        names = []
        for f in frames:
            m = _FRAME.match(f)
            names.append((m["func"], m["file"]) if m else (f, "?"))
        func, file = names[-1]
        own[f"{func} ({file.rsplit('/', 1)[-1]})"] += n
        packages[_package(func, file)] += n
        # Inclusive time of maillage's own functions (the CLI and event-loop frames add nothing).
        for fn in {f"{fn} ({fl.removeprefix('maillage/')})" for fn, fl in names
                   if fl.startswith("maillage/") and not fl.startswith(("maillage/cli/", "maillage/__"))}:
            inclusive[fn] += n

    def pct(c: Counter[str]) -> list[tuple[str, float]]:
        return [(k, round(100 * v / total, 1)) for k, v in c.most_common(top)] if total else []

    return {"samples": total, "own": pct(own), "packages": pct(packages), "inclusive": pct(inclusive),
            "threads": pct(threads)}


def summary_markdown(name: str, s: dict[str, Any]) -> str:
    """A short Markdown summary of one process's profile."""
    lines = [f"### {name} ({s['samples']} samples)", "", "| own time by package | % |", "|---|---|"]
    lines += [f"| `{k}` | {v} |" for k, v in s["packages"]]
    lines += ["", "| own time by function | % |", "|---|---|"]
    lines += [f"| `{k}` | {v} |" for k, v in s["own"]]
    lines += ["", "| inclusive time (maillage functions) | % |", "|---|---|"]
    lines += [f"| `{k}` | {v} |" for k, v in s["inclusive"]]
    lines += ["", "| thread | % of samples |", "|---|---|"]
    lines += [f"| `{k}` | {v} |" for k, v in s["threads"]]
    return "\n".join(lines) + "\n"
