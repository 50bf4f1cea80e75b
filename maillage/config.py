"""Settings, read once from `MAILLAGE_*` environment variables and passed down explicitly."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROCESSORS = ("storage", "maintenance", "savings", "detection", "alerting", "commands", "control")
"""The processors `maillage up` can run, in the order it starts them."""


def default_data_dir() -> Path:
    """`$MAILLAGE_DATA_DIR`, else `./.maillage`."""
    return Path(os.environ.get("MAILLAGE_DATA_DIR") or ".maillage")


class Settings(BaseSettings):
    """Everything configurable; unset URLs mean "start the embedded service"."""

    model_config = SettingsConfigDict(env_prefix="MAILLAGE_", extra="ignore")

    env: Literal["development", "production"] = "development"
    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str | None = None
    kafka_bootstrap: str | None = None
    mqtt_url: str | None = None
    """External broker with its dynsec admin account, e.g. mqtt://maillage-admin:secret@host:1883."""
    mqtt_gateway_password: str | None = None
    token_ttl_days: int = 90
    """Days a new API token lives unless `tokens create --ttl-days` says otherwise (0: never)."""
    grafana_db_password: str | None = None
    """Password `maillage migrate` gives the database role Grafana reads through."""
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    metrics_port: int | None = None
    """Each gateway and processor serves its own Prometheus /metrics there (docker-compose)."""
    metrics_host: str = "0.0.0.0"
    log_level: str = "INFO"
    log_json: bool = False
    kafka_kind: Literal["apache", "tansu"] = "apache"
    """Which Kafka `maillage up` starts when `kafka_bootstrap` is not set: Apache Kafka (durable;
    measured faster end to end than Tansu and up in ~4 s: docs/benchmarks.md), or Tansu."""
    kafka_idempotence: bool | None = None
    """Idempotent producers; None: on for Apache Kafka, off for Tansu (`state.kafka_idempotence`)."""
    kafka_partitions: int | None = None
    """Partitions of each topic maillage creates; None: see `topic_partitions`."""
    gateway_processes: int = 1
    storage_processes: int = 1
    processors: str = "all"
    """The processors `maillage up` runs: `all`, or some of `PROCESSORS`, comma-separated (a
    territory without public lighting leaves out commands and control; a test of the ingest path
    runs storage alone)."""
    # Storage batching: a batch holds what arrived while the previous one was written, up to
    # this many rows, and batches start at most every `storage_batch_ms`.
    storage_batch_rows: int = 20000
    storage_batch_ms: int = 20
    # How far in the future a measurement time may be before it is rejected.
    max_future_s: int = 300
    default_timezone: str = "Europe/Paris"
    opendata_min_households: int = Field(default=10, ge=3)
    """Fewest residential meters in a published open-data aggregate (statistical secrecy as French
    energy distributors apply it: 10; below 3 a household could read another's: docs/opendata.md)."""

    def topic_partitions(self, embedded: bool) -> int:
        """`kafka_partitions` when set; else 8 on Apache Kafka, and on the embedded Tansu
        broker one per storage process, at least 2: Tansu's in-memory engine scans a partition's
        whole history of batches on every fetch, so each partition costs CPU (docs/benchmarks.md,
        "The embedded Kafka's cost grows with its history")."""
        if self.kafka_partitions is not None:
            return self.kafka_partitions
        return max(2, self.storage_processes) if embedded else 8

    @field_validator("processors")
    @classmethod
    def _known_processors(cls, v: str) -> str:
        if v.strip() == "all":
            return "all"
        names = [n.strip() for n in v.split(",") if n.strip()]
        unknown = sorted(set(names) - set(PROCESSORS))
        if unknown or not names:
            raise ValueError(f"unknown processor(s) {', '.join(unknown) or '(none given)'}: "
                             f"write 'all' or some of {', '.join(PROCESSORS)}")
        return ",".join(names)

    def runs(self, processor: str) -> bool:
        """Whether `maillage up` runs this processor (`processors`)."""
        return self.processors == "all" or processor in self.processors.split(",")

    @field_validator("database_url")
    @classmethod
    def _psycopg_scheme(cls, v: str | None) -> str | None:
        """Accept SQLAlchemy-style schemes too; psycopg wants plain `postgresql://`."""
        if v is None:
            return v
        for prefix in ("postgresql+psycopg://", "postgres://", "postgresql+psycopg2://"):
            if v.startswith(prefix):
                return "postgresql://" + v[len(prefix) :]
        return v

    def with_data_dir(self, data_dir: Path | None) -> Settings:
        """A copy with the data directory from a `--data-dir` option, when one was given."""
        if data_dir is None:
            return self
        return self.model_copy(update={"data_dir": data_dir})
