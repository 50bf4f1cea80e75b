"""What every dashboard shares: the data source, the PostgreSQL query, the tenant and commune
variables, and the dashboard shell.

The foundation SDK has no builder for Grafana's PostgreSQL queries (its SQL builders are for
Athena and BigQuery), so `SqlQuery` is one: a `Dataquery` serialised as Grafana's SQL data sources
store a code-mode query (`rawSql`, `format`, `rawQuery`, `editorMode`).
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as gdash
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard as mdash

from maillage.dashboards.queries import ALL_COMMUNES, query

DATASOURCE_UID = "maillage-pg"
"""The data source's uid (deploy/grafana/provisioning/datasources/maillage.yml, publish.py)."""
DATASOURCE_TYPE = "grafana-postgresql-datasource"
FOLDER_UID = "maillage"
FOLDER_TITLE = "maillage"
TAGS = ["maillage"]


def datasource() -> mdash.DataSourceRef:
    """The maillage PostgreSQL data source, by uid."""
    return mdash.DataSourceRef(type_val=DATASOURCE_TYPE, uid=DATASOURCE_UID)


class SqlDataquery(cogvariants.Dataquery):
    """One query of Grafana's PostgreSQL data source (code mode)."""

    def __init__(self, ref_id: str, raw_sql: str, format_val: str) -> None:
        self.ref_id = ref_id
        self.raw_sql = raw_sql
        self.format_val = format_val

    def to_json(self) -> dict[str, object]:
        return {"refId": self.ref_id, "datasource": datasource().to_json(), "rawSql": self.raw_sql,
                "format": self.format_val, "rawQuery": True, "editorMode": "code"}


class SqlQuery(cogbuilder.Builder[cogvariants.Dataquery]):
    """Builder of a panel target from a key of `queries.QUERIES`."""

    def __init__(self, key: str, ref_id: str = "A") -> None:
        q = query(key)
        self._query = SqlDataquery(ref_id, q.sql.strip(), q.format)

    def build(self) -> cogvariants.Dataquery:
        return self._query


def tenant_variable() -> gdash.QueryVariable:
    """`$tenant`: one of the tenants the data source's role may read."""
    return (gdash.QueryVariable("tenant").label("Collectivité").datasource(datasource())
            .query(query("var_tenant").sql.strip()).refresh(mdash.VariableRefresh.ON_DASHBOARD_LOAD)
            .sort(mdash.VariableSort.ALPHABETICAL_ASC))


def commune_variable() -> gdash.QueryVariable:
    """`$commune`: communes of the tenant, several at once or All."""
    return (gdash.QueryVariable("commune").label("Commune").datasource(datasource())
            .query(query("var_commune").sql.strip()).refresh(mdash.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .multi(True).include_all(True).all_value(ALL_COMMUNES)
            .sort(mdash.VariableSort.ALPHABETICAL_ASC))


def base(uid: str, title: str, description: str, *, time_from: str = "now-7d") -> gdash.Dashboard:
    """A dashboard with the shared variables, time zone, refresh and tags."""
    return (gdash.Dashboard(title).uid(uid).description(description).tags(TAGS)
            .timezone("browser").time(time_from, "now").refresh("1m").editable()
            .with_variable(tenant_variable()).with_variable(commune_variable()))
