"""What a benchmark run is asked for (`BenchConfig`), the names and sizes its phases share, its error."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from maillage.errors import MaillageError

TENANT = "bench"
PROBE_READINGS = 4  # metrics per probe message
FEED_DEVICES = 16
COPY_DEVICES = 8
COPY_METRICS = ("energy_import_wh", "active_power_w", "apparent_power_va", "voltage_v", "current_a")


class BenchError(MaillageError):
    """The benchmark could not run."""


@dataclass
class BenchConfig:
    """What `maillage bench` was asked for."""

    duration_s: float = 300
    quick: bool = False
    gateways: int = 1
    storages: int = 1
    publishers: int = 2
    sessions: int = 24
    """Device sessions per publisher process."""
    rate: float | None = None
    """Messages/s of the throughput phase; None: as fast as the pipeline stores."""
    pause_db_s: float = 0
    data_dir: Path | None = None
    use_running: bool = False
    keep_data: bool = False
    profile_dir: Path | None = None
    window: int | None = None
    """Readings allowed between published and stored in the throughput phase (default by mode)."""

    @property
    def window_readings(self) -> int:
        return self.window or (30_000 if self.quick else 100_000)

    @property
    def baseline_s(self) -> float:
        return 2.0 if self.quick else 15.0

    @property
    def warmup_s(self) -> float:
        return min(3.0 if self.quick else 20.0, self.duration_s / 4)

    @property
    def latency_s(self) -> float:
        return 5.0 if self.quick else 60.0

    @property
    def storage_s(self) -> float:
        return 3.0 if self.quick else 15.0
