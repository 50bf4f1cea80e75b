"""Home care: the alert timeline and the health of the sensors, by resident pseudonym only.

Reads `grafana.care_alerts` and `grafana.care_devices` (migration 0019): no device id, dwelling,
evidence, comment or measurement of a care sensor ever reaches Grafana.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as gdash

from maillage.dashboards.common import base
from maillage.dashboards.panels import table_panel, timeseries_panel

UID = "maillage-soins"


def build() -> gdash.Dashboard:
    """The care dashboard."""
    return (base(UID, "maillage · Maintien à domicile",
                 "Alertes de maintien à domicile et santé des capteurs, par pseudonyme.", time_from="now-2d")
            .with_panel(timeseries_panel("Alertes par heure et par type", "care_alert_timeline",
                                         w=24, bars=True))
            .with_panel(table_panel("Alertes", "care_alerts", w=24))
            .with_panel(table_panel("Santé des capteurs", "care_device_health", w=24)))
