"""Public lighting: burning hours, failures, energy and savings per commune, a map of the lamps."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as gdash

from maillage.dashboards.common import base
from maillage.dashboards.panels import bar_panel, map_panel, table_panel, timeseries_panel

UID = "maillage-eclairage"


def build() -> gdash.Dashboard:
    """The public lighting dashboard."""
    return (base(UID, "maillage · Éclairage public",
                 "Heures d'allumage, pannes, énergie par commune et carte des points lumineux.")
            .with_panel(bar_panel("Heures d'allumage par point lumineux", "lighting_burning_hours",
                                  x="commune", unit="h"))
            .with_panel(table_panel("Pannes et défauts", "lighting_failures"))
            .with_panel(timeseries_panel("Énergie de l'éclairage par commune",
                                         "lighting_energy_per_commune", w=24, unit="kwatth", bars=True))
            .with_panel(table_panel("Économies de l'éclairage par commune (référence - mesuré)",
                                    "lighting_savings_per_commune", w=24))
            .with_panel(map_panel("Points lumineux et armoires", "lighting_map")))
