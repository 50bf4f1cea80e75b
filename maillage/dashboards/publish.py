"""Publish the data source, the folder and the dashboards through Grafana's HTTP API, idempotently.

Each object is read first and written only when it differs from what `build` produces, so a
second run makes no write call. Dashboards are saved with the id and version Grafana returned
(`overwrite: false`): someone saving the same dashboard in between makes Grafana answer 412,
and publishing reads it again and retries once, then stops with a clear error. The data source's
password cannot be read back (Grafana only says it is set): it is sent when the data source is
created, when another field changed, or when `rotate_password` asks for it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from grafana_client.api import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException

from maillage.dashboards.common import FOLDER_TITLE, FOLDER_UID
from maillage.errors import MaillageError

log = logging.getLogger(__name__)

_SERVER_KEYS = {"id", "version"}
"""Keys Grafana adds to a stored dashboard; ignored when comparing."""
_DATASOURCE_KEYS = ("name", "type", "access", "url", "user", "isDefault")


class PublishError(MaillageError):
    """Grafana refused or answered something publishing cannot go on from."""


@dataclass
class PublishReport:
    """What one run did, per object (`datasource:<uid>`, `folder:<uid>`, `dashboard:<uid>`)."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    @property
    def writes(self) -> int:
        return len(self.created) + len(self.updated)

    def as_dict(self) -> dict[str, Any]:
        return {"created": self.created, "updated": self.updated, "unchanged": self.unchanged}


def connect(url: str, token: str, *, timeout_s: float = 10.0) -> GrafanaApi:
    """A Grafana API client authenticated by a service-account token (Bearer)."""
    api: GrafanaApi = GrafanaApi.from_url(url, credential=token, timeout=timeout_s)
    return api


def _not_found(exc: GrafanaException) -> bool:
    return isinstance(exc, GrafanaClientError) and exc.status_code == 404


def _explain(what: str, exc: GrafanaException) -> PublishError:
    return PublishError(f"Grafana refused {what}: HTTP {exc.status_code} {exc.message}")


def _get(api: GrafanaApi, path: str) -> dict[str, Any] | None:
    """GET `path`; None on 404."""
    try:
        out: dict[str, Any] = api.client.GET(path)
    except GrafanaException as exc:
        if _not_found(exc):
            return None
        raise _explain(f"GET {path}", exc) from exc
    return out


# grafana-client's element methods are untyped; its client's verbs (the same calls, same paths,
# same errors) are reached through __getattr__ and type as Any.
def _post(api: GrafanaApi, path: str, body: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = api.client.POST(path, json=body)
    return out


def _put(api: GrafanaApi, path: str, body: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = api.client.PUT(path, json=body)
    return out


def ensure_folder(api: GrafanaApi, report: PublishReport, *, uid: str = FOLDER_UID,
                  title: str = FOLDER_TITLE) -> dict[str, Any]:
    """The folder the dashboards go in (created, or renamed back); returns it with its id."""
    name = f"folder:{uid}"
    folder = _get(api, f"/folders/{uid}")
    try:
        if folder is None:
            folder = _post(api, "/folders", {"uid": uid, "title": title})
            report.created.append(name)
        elif folder.get("title") != title:
            folder = _put(api, f"/folders/{uid}", {"title": title, "version": folder.get("version")})
            report.updated.append(name)
        else:
            report.unchanged.append(name)
    except GrafanaException as exc:
        raise _explain(f"the folder {uid!r}", exc) from exc
    assert folder is not None
    return folder


def _datasource_differs(current: dict[str, Any], wanted: dict[str, Any]) -> bool:
    if any(current.get(k) != wanted.get(k) for k in _DATASOURCE_KEYS if k in wanted):
        return True
    have = current.get("jsonData") or {}
    return any(have.get(k) != v for k, v in (wanted.get("jsonData") or {}).items())


def ensure_datasource(api: GrafanaApi, report: PublishReport, wanted: dict[str, Any], *,
                      password: str | None = None, rotate_password: bool = False) -> None:
    """Create the data source, or update it when a field (or the password on request) changed."""
    uid = str(wanted["uid"])
    name = f"datasource:{uid}"
    current = _get(api, f"/datasources/uid/{uid}")
    body = dict(wanted)
    if password:
        body["secureJsonData"] = {"password": password}
    try:
        if current is None:
            _post(api, "/datasources", body)
            report.created.append(name)
        elif _datasource_differs(current, wanted) or (rotate_password and password):
            body["version"] = current.get("version")
            body["jsonData"] = {**(current.get("jsonData") or {}), **wanted.get("jsonData", {})}
            _put(api, f"/datasources/uid/{uid}", body)
            report.updated.append(name)
        else:
            report.unchanged.append(name)
    except GrafanaException as exc:
        raise _explain(f"the data source {uid!r} (a data source of the same name but another "
                       "uid answers 409: rename or delete it)", exc) from exc


def _same_dashboard(stored: dict[str, Any], model: dict[str, Any]) -> bool:
    kept = {k: v for k, v in stored.items() if k not in _SERVER_KEYS}
    return kept == {k: v for k, v in model.items() if k not in _SERVER_KEYS}


def _in_folder(meta: dict[str, Any], folder: dict[str, Any]) -> bool:
    if "folderUid" in meta:
        return bool(meta["folderUid"] == folder.get("uid"))
    return bool(meta.get("folderId") == folder.get("id"))


def ensure_dashboard(api: GrafanaApi, report: PublishReport, model: dict[str, Any],
                     folder: dict[str, Any], *, retries: int = 1) -> None:
    """Save `model` in `folder` unless Grafana already holds exactly it there."""
    uid = str(model["uid"])
    name = f"dashboard:{uid}"
    for attempt in range(retries + 1):
        stored = _get(api, f"/dashboards/uid/{uid}")
        if stored is not None and _same_dashboard(stored.get("dashboard", {}), model) \
                and _in_folder(stored.get("meta", {}), folder):
            report.unchanged.append(name)
            return
        dash = {k: v for k, v in model.items() if k not in _SERVER_KEYS}
        if stored is not None:
            dash["id"] = stored["dashboard"].get("id")
            dash["version"] = stored["dashboard"].get("version")
        else:
            dash["id"] = None
        body = {"dashboard": dash, "folderUid": folder.get("uid"), "folderId": folder.get("id"),
                "overwrite": False, "message": "maillage dashboards publish"}
        try:
            _post(api, "/dashboards/db", body)
        except GrafanaException as exc:
            if exc.status_code == 412 and attempt < retries:
                log.warning("dashboard %s changed meanwhile (412: %s); reading it again", uid, exc.message)
                continue
            raise _explain(f"the dashboard {uid!r}", exc) from exc
        (report.updated if stored is not None else report.created).append(name)
        return


def publish(api: GrafanaApi, *, datasource: dict[str, Any], dashboards: dict[str, dict[str, Any]],
            password: str | None = None, rotate_password: bool = False) -> PublishReport:
    """Data source, folder, then every dashboard; returns what was created, updated, left."""
    report = PublishReport()
    ensure_datasource(api, report, datasource, password=password, rotate_password=rotate_password)
    folder = ensure_folder(api, report)
    for model in dashboards.values():
        ensure_dashboard(api, report, model, folder)
    log.info("published to Grafana: %d created, %d updated, %d unchanged",
             len(report.created), len(report.updated), len(report.unchanged))
    return report
