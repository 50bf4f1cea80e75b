"""Platform health: ingest rate, rejected messages by reason, lag per stage, ingest latency."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as gdash

from maillage.dashboards.common import base
from maillage.dashboards.panels import table_panel, timeseries_panel

UID = "maillage-plateforme"


def build() -> gdash.Dashboard:
    """The platform health dashboard."""
    return (base(UID, "maillage · Santé de la plateforme",
                 "Débit d'ingestion, rejets par motif, retard des étapes, latence.", time_from="now-6h")
            .with_panel(timeseries_panel("Lectures stockées par seconde", "platform_ingest_rate",
                                         unit="reqps"))
            .with_panel(timeseries_panel("Rejets par motif (DLQ)", "platform_dlq_rate", unit="reqps"))
            .with_panel(table_panel("Retard par étape", "platform_lag"))
            .with_panel(timeseries_panel("Latence mesure -> réception", "platform_latency", unit="s")))
