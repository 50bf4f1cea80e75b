"""The alerting process's settings (`MAILLAGE_SMTP_*`, `MAILLAGE_ALERT_*`).

Kept apart from `maillage.config.Settings` while the stage is new: only the alerting process
reads them; they can move into `Settings` unchanged (same prefix, same names).
"""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class AlertingSettings(BaseSettings):
    """SMTP, rate limits, flapping hold, escalation tick and the notification retry budget."""

    model_config = SettingsConfigDict(env_prefix="MAILLAGE_", extra="ignore")

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_from: str = "maillage@localhost"
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool | None = None
    """None: STARTTLS when the server offers it."""
    alert_repeat_event_s: float = 60.0
    """At most one `repeated` event per alert in this many seconds (the count is always exact)."""
    alert_flap_hold_s: float = 900.0
    """An alert the system resolved and whose problem returns within this is reopened."""
    alert_notify_max_age_s: float = 86400.0
    """An anomaly that started longer ago than this (a first run over the topic's history, a
    long outage) opens or reopens its alert without notifying or escalating."""
    alert_escalation_tick_s: float = 1.0
    alert_retry_base_s: float = 5.0
    """First retry delay of a failed notification; doubled at each attempt, with jitter."""
    alert_retry_cap_s: float = 1800.0
    """Longest delay between two attempts."""
    alert_retry_budget_s: float = 86400.0
    """A notification is retried for at least this long after it was written, then given up."""
    alert_send_timeout_s: float = 10.0
