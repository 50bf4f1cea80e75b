"""A real HTTP server answering the part of Grafana's HTTP API that publishing uses, with its
status codes: 401 without the bearer token, 404 for unknown uids, 409 for a data source name or
folder uid taken, 412 for a dashboard saved over another version (or over an existing uid without
its id), folder ids, versions bumped on every save, secrets never read back."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class GrafanaState:
    """What the fake Grafana holds, and every write call it received."""

    token: str
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    datasources: dict[str, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)
    writes: list[tuple[str, str, int]] = field(default_factory=list)
    """(method, path, status answered) of every POST/PUT/DELETE."""
    race_once: set[str] = field(default_factory=set)
    """Dashboard uids someone else saves right before our next save (a concurrent edit)."""
    next_id: int = 1
    lock: threading.Lock = field(default_factory=threading.Lock)

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id


class _Handler(BaseHTTPRequestHandler):
    state: GrafanaState

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - BaseHTTPRequestHandler's name
        pass

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        n = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(n) or b"null")

    def _handle(self, method: str) -> None:
        st = self.state
        if self.headers.get("Authorization") != f"Bearer {st.token}":
            self._send(401, {"message": "Unauthorized"})
            return
        body = self._body() if method in ("POST", "PUT") else None
        with st.lock:
            status, out = _route(st, method, self.path, body)
            if method != "GET":
                st.writes.append((method, self.path, status))
        self._send(status, out)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")


def _folder_of(st: GrafanaState, body: dict[str, Any]) -> dict[str, Any] | None:
    if body.get("folderUid"):
        return st.folders.get(body["folderUid"])
    for f in st.folders.values():
        if f["id"] == body.get("folderId"):
            return f
    return None


def _route(st: GrafanaState, method: str, path: str, body: Any) -> tuple[int, Any]:  # noqa: C901
    if m := re.fullmatch(r"/api/folders/([\w-]+)", path):
        folder = st.folders.get(m.group(1))
        if folder is None:
            return 404, {"message": "folder not found", "status": "not-found"}
        if method == "GET":
            return 200, folder
        if body.get("version") != folder["version"] and not body.get("overwrite"):
            return 412, {"message": "the folder has been changed by someone else", "status": "version-mismatch"}
        folder.update(title=body["title"], version=folder["version"] + 1)
        return 200, folder
    if path == "/api/folders" and method == "POST":
        if body.get("uid") in st.folders:
            return 409, {"message": "a folder with the same uid already exists"}
        folder = {"id": st.new_id(), "uid": body["uid"], "title": body["title"], "version": 1}
        st.folders[body["uid"]] = folder
        return 200, folder
    if m := re.fullmatch(r"/api/datasources/uid/([\w-]+)", path):
        ds = st.datasources.get(m.group(1))
        if ds is None:
            return 404, {"message": "Data source not found"}
        if method == "GET":
            return 200, ds
        if body.get("version") is not None and body["version"] != ds["version"]:
            return 409, {"message": "Datasource has already been updated by someone else"}
        secure = body.pop("secureJsonData", None)
        ds.update({k: v for k, v in body.items() if k != "version"}, version=ds["version"] + 1)
        if secure:
            ds["secureJsonFields"] = {k: True for k in secure}
        return 200, {"message": "Datasource updated", "id": ds["id"], "datasource": ds}
    if path == "/api/datasources" and method == "POST":
        if any(d["name"] == body["name"] for d in st.datasources.values()):
            return 409, {"message": "data source with the same name already exists"}
        if body.get("uid") in st.datasources:
            return 409, {"message": "data source with the same uid already exists"}
        secure = body.pop("secureJsonData", None) or {}
        ds = {**body, "id": st.new_id(), "orgId": 1, "version": 1, "readOnly": False,
              "secureJsonFields": {k: True for k in secure}}
        st.datasources[body["uid"]] = ds
        return 200, {"message": "Datasource added", "id": ds["id"], "datasource": ds}
    if m := re.fullmatch(r"/api/dashboards/uid/([\w-]+)", path):
        stored = st.dashboards.get(m.group(1))
        if stored is None:
            return 404, {"message": "Dashboard not found"}
        dash = stored["dashboard"]
        return 200, {"dashboard": dash, "meta": {"folderUid": stored["folderUid"], "folderId": stored["folderId"],
                                                 "version": dash["version"], "slug": dash["uid"]}}
    if path == "/api/dashboards/db" and method == "POST":
        dash = dict(body["dashboard"])
        folder = _folder_of(st, body)
        if folder is None:
            return 400, {"message": "folder not found"}
        stored = st.dashboards.get(dash["uid"])
        if dash["uid"] in st.race_once and stored is not None:
            st.race_once.discard(dash["uid"])
            stored["dashboard"]["version"] += 1  # someone saved it in between
        if stored is not None and not body.get("overwrite"):
            if dash.get("id") != stored["dashboard"]["id"]:
                return 412, {"message": "A dashboard with the same uid already exists", "status": "name-exists"}
            if dash.get("version") != stored["dashboard"]["version"]:
                return 412, {"message": "The dashboard has been changed by someone else",
                             "status": "version-mismatch"}
        dash["id"] = stored["dashboard"]["id"] if stored else st.new_id()
        dash["version"] = stored["dashboard"]["version"] + 1 if stored else 1
        st.dashboards[dash["uid"]] = {"dashboard": dash, "folderUid": folder["uid"], "folderId": folder["id"]}
        return 200, {"id": dash["id"], "uid": dash["uid"], "status": "success", "version": dash["version"],
                     "url": f"/d/{dash['uid']}", "slug": dash["uid"]}
    return 404, {"message": "Not found"}


@contextmanager
def fake_grafana(token: str) -> Iterator[tuple[str, GrafanaState]]:
    """(base URL, state) of a fake Grafana serving on a free local port until the block ends."""
    state = GrafanaState(token)
    handler = type("Handler", (_Handler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
