"""Every dashboard as Grafana JSON, the data source definition, and the compose provisioning files.

`maillage dashboards build --out D` writes, under D (default `deploy/grafana/provisioning`, the
folder docker-compose mounts at /etc/grafana/provisioning):
- `datasources/maillage.yml`: the PostgreSQL data source, logging in as grafana_reader;
- `dashboards/maillage.yml`: a file provider for the folder `maillage`;
- `dashboards/maillage/<uid>.json`: one file per dashboard.
Output is deterministic (sorted keys), so a second build changes no byte.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from grafana_foundation_sdk.builders import dashboard as gdash
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from maillage.dashboards import care, lighting, meters, platform, territory
from maillage.dashboards.common import DATASOURCE_TYPE, DATASOURCE_UID, FOLDER_TITLE

BUILDERS: tuple[Callable[[], gdash.Dashboard], ...] = (
    territory.build, meters.build, lighting.build, care.build, platform.build)
"""One builder per dashboard."""

CONTAINER_DIR = "/etc/grafana/provisioning/dashboards/maillage"
"""Where compose's Grafana sees the dashboard files (./deploy/grafana/provisioning mounted)."""


def render(builder: gdash.Dashboard) -> dict[str, Any]:
    """The dashboard model as Grafana's JSON (plain dicts and lists)."""
    out: dict[str, Any] = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    # Stable panel ids: Grafana would number them on first save, and the stored dashboard would
    # then differ from the built one at every publish.
    for number, panel in enumerate(out.get("panels", []), start=1):
        panel.setdefault("id", number)
    return out


def dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard's JSON by uid."""
    out: dict[str, dict[str, Any]] = {}
    for build in BUILDERS:
        model = render(build())
        out[str(model["uid"])] = model
    return out


def datasource(*, url: str = "timescaledb:5432", database: str = "maillage",
               user: str = "grafana_reader", timescaledb: bool = True) -> dict[str, Any]:
    """The data source as Grafana's HTTP API and provisioning describe it (without its password)."""
    return {"name": "maillage", "uid": DATASOURCE_UID, "type": DATASOURCE_TYPE, "access": "proxy",
            "url": url, "user": user, "isDefault": False,
            "jsonData": {"database": database, "sslmode": "disable", "timescaledb": timescaledb,
                         "postgresVersion": 1600}}


def _dump(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def provisioning_files() -> dict[str, str]:
    """Relative path -> content of every provisioning file."""
    ds = datasource()
    ds.pop("isDefault")
    ds["secureJsonData"] = {"password": "${GRAFANA_DB_PASSWORD}"}
    files = {
        "datasources/maillage.yml": "# Written by `maillage dashboards build`.\n" + yaml.safe_dump(
            {"apiVersion": 1, "datasources": [ds]}, sort_keys=False, allow_unicode=True),
        "dashboards/maillage.yml": "# Written by `maillage dashboards build`.\n" + yaml.safe_dump(
            {"apiVersion": 1, "providers": [{
                "name": "maillage", "folder": FOLDER_TITLE, "folderUid": "maillage", "type": "file",
                "disableDeletion": False, "allowUiUpdates": False, "updateIntervalSeconds": 60,
                "options": {"path": CONTAINER_DIR}}]}, sort_keys=False, allow_unicode=True),
    }
    for uid, model in dashboards().items():
        files[f"dashboards/maillage/{uid}.json"] = _dump(model)
    return files


def write(out: Path) -> list[Path]:
    """Write the provisioning files under `out`; returns the files whose content changed."""
    changed = []
    for rel, text in provisioning_files().items():
        path = out / rel
        if path.exists() and path.read_text() == text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        changed.append(path)
    return changed
