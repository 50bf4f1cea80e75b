"""Meters: load curves (15-minute mean power per district), peaks against subscribed power, and
metered savings of projects, and the declared peak windows with the lighting's power during
them (demand response)."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as gdash

from maillage.dashboards.common import base
from maillage.dashboards.panels import table_panel, timeseries_panel

UID = "maillage-compteurs"


def build() -> gdash.Dashboard:
    """The meters dashboard."""
    return (base(UID, "maillage · Compteurs",
                 "Courbes de charge, pointes face à la puissance souscrite, anomalies des compteurs.")
            .with_panel(timeseries_panel("Courbe de charge par quartier", "meters_load_curve",
                                         w=24, unit="kwatt"))
            .with_panel(table_panel("Pointes et puissance souscrite", "meters_peaks", w=16))
            .with_panel(table_panel("Anomalies des compteurs", "meters_anomalies", w=8))
            .with_panel(timeseries_panel("Compteurs au-dessus de leur puissance souscrite",
                                         "meters_over_subscribed", w=24, bars=True))
            .with_panel(table_panel("Économies mesurées des projets (CalTRACK)", "meters_savings", w=24))
            .with_panel(table_panel("Effacements déclarés : éclairage pendant la pointe et la veille",
                                    "meters_peak_windows", w=24)))
