"""Panel shorthands over the foundation SDK's builders: each panel reads one key of `queries`."""

from __future__ import annotations

from grafana_foundation_sdk.builders import barchart, geomap, stat, table, timeseries
from grafana_foundation_sdk.builders import common as gcommon
from grafana_foundation_sdk.models import common as mcommon

from maillage.dashboards.common import SqlQuery, datasource


def stat_panel(title: str, key: str, *, w: int = 8, h: int = 5, unit: str = "none") -> stat.Panel:
    """Big numbers, one per column of the query's row."""
    return (stat.Panel().title(title).datasource(datasource()).with_target(SqlQuery(key))
            .span(w).height(h).unit(unit).graph_mode(mcommon.BigValueGraphMode.NONE)
            .color_mode(mcommon.BigValueColorMode.VALUE)
            .reduce_options(gcommon.ReduceDataOptions().values(True).calcs(["lastNotNull"])))


def timeseries_panel(title: str, key: str, *, w: int = 12, h: int = 8, unit: str = "none",
                     bars: bool = False) -> timeseries.Panel:
    """A time series (one series per `metric` value when the query returns one)."""
    panel = (timeseries.Panel().title(title).datasource(datasource()).with_target(SqlQuery(key))
             .span(w).height(h).unit(unit).fill_opacity(15))
    if bars:
        panel = panel.draw_style(mcommon.GraphDrawStyle.BARS).fill_opacity(80)
    return panel


def table_panel(title: str, key: str, *, w: int = 12, h: int = 8) -> table.Panel:
    """A table of the query's rows."""
    return (table.Panel().title(title).datasource(datasource()).with_target(SqlQuery(key))
            .span(w).height(h).show_header(True))


def bar_panel(title: str, key: str, *, x: str, w: int = 12, h: int = 8, unit: str = "none") -> barchart.Panel:
    """Bars of a table query, one group per value of column `x`."""
    return (barchart.Panel().title(title).datasource(datasource()).with_target(SqlQuery(key))
            .span(w).height(h).unit(unit).x_field(x)
            .orientation(mcommon.VizOrientation.AUTO))


def map_panel(title: str, key: str, *, w: int = 24, h: int = 12) -> geomap.Panel:
    """A geomap of the query's rows placed by their `latitude` and `longitude` columns."""
    markers = (gcommon.MapLayerOptions().type("markers").name("équipements")
               .location(gcommon.FrameGeometrySource().mode(mcommon.FrameGeometrySourceMode.COORDS)
                         .latitude("latitude").longitude("longitude"))
               .config({"showLegend": True, "style": {"size": {"fixed": 5}, "color": {
                   "field": "alertes ouvertes", "fixed": "green"}}}))
    return (geomap.Panel().title(title).datasource(datasource()).with_target(SqlQuery(key))
            .span(w).height(h).view(geomap.MapViewConfig().id("fit").zoom(12))
            .layers([markers]))
