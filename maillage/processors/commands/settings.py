"""The commands process's settings (`MAILLAGE_COMMAND_*`), read by that process only."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class CommandSettings(BaseSettings):
    """Ack timeout, retry budget and back-off of command delivery."""

    model_config = SettingsConfigDict(env_prefix="MAILLAGE_", extra="ignore")

    command_ack_timeout_s: float = Field(default=30.0, gt=0)
    """Wait this long for the device's ack after the first attempt."""
    command_max_attempts: int = Field(default=3, ge=1)
    """MQTT attempts before a command to an unanswering device is `failed`."""
    command_backoff: float = Field(default=2.0, ge=1)
    """Each further attempt waits this many times longer for its ack."""
    command_tick_s: float = Field(default=0.5, gt=0)
    """How often due retries and time-outs are looked for (new commands wake it at once)."""
    command_publish_timeout_s: float = Field(default=5.0, gt=0)
    """Wait this long for the broker's PUBACK of a `down/cmd`."""

    def wait_s(self, attempt: int) -> float:
        """The ack wait after attempt number `attempt` (1-based)."""
        return float(self.command_ack_timeout_s * self.command_backoff ** (attempt - 1))
