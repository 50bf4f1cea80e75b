"""Territory overview: devices online, open alerts, consumption today against the same day of
last week (the energy manager's morning view)."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as gdash

from maillage.dashboards.common import base
from maillage.dashboards.panels import stat_panel, table_panel, timeseries_panel

UID = "maillage-territoire"


def build() -> gdash.Dashboard:
    """The territory overview dashboard."""
    return (base(UID, "maillage · Territoire",
                 "Équipements en ligne, alertes ouvertes, consommation du jour et de la semaine passée.")
            .with_panel(stat_panel("Équipements", "territory_devices"))
            .with_panel(stat_panel("Alertes ouvertes par gravité", "territory_open_alerts"))
            .with_panel(stat_panel("Consommation des compteurs : aujourd'hui / même jour S-1",
                                   "territory_today_vs_last_week", unit="kwatth"))
            .with_panel(timeseries_panel("Consommation horaire des compteurs",
                                         "territory_consumption_hourly", w=24, unit="kwatth", bars=True))
            .with_panel(table_panel("Alertes ouvertes", "territory_open_alert_list", w=24)))
