"""Prometheus counters of command delivery."""

from __future__ import annotations

from prometheus_client import Counter

PRODUCED = Counter("maillage_commands_produced", "Command targets relayed to maillage.commands")
SENT = Counter("maillage_commands_sent", "Commands published on a device's down/cmd (each attempt)")
RETRIES = Counter("maillage_commands_retries", "Attempts after the first (no ack in time)")
DONE = Counter("maillage_commands_done", "Commands a device acknowledged as done")
FAILED = Counter("maillage_commands_failed", "Commands that failed", ["why"])
REJECTED = Counter("maillage_commands_rejected", "maillage.commands records naming no command")
