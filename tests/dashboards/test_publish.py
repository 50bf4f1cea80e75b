"""Acceptance 2 of issue #17: publishing to a (fake, real-HTTP) Grafana creates the data source,
the folder and the dashboards, and a second run writes nothing; edits, concurrent saves, name
clashes and a wrong token are handled."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from maillage.cli.main import app
from maillage.dashboards.build import dashboards, datasource, provisioning_files, write
from maillage.dashboards.publish import PublishError, connect, publish
from tests.dashboards.fake_grafana import fake_grafana

ROOT = Path(__file__).resolve().parents[2]
UIDS = {"maillage-territoire", "maillage-compteurs", "maillage-eclairage", "maillage-soins",
        "maillage-plateforme"}


def test_publish_twice_second_run_writes_nothing() -> None:
    """First run: data source (with its password), folder, five dashboards in that folder's id.
    Second run: every object unchanged and no write call reaches Grafana."""
    token = uuid.uuid4().hex
    with fake_grafana(token) as (url, grafana):
        first = publish(connect(url, token), datasource=datasource(), dashboards=dashboards(),
                        password="s3cret")
        assert sorted(first.created) == sorted(
            ["datasource:maillage-pg", "folder:maillage"] + [f"dashboard:{u}" for u in UIDS])
        assert first.updated == [] and len(grafana.writes) == 7
        assert all(status == 200 for _, _, status in grafana.writes)
        folder = grafana.folders["maillage"]
        assert {d["folderId"] for d in grafana.dashboards.values()} == {folder["id"]}
        assert grafana.datasources["maillage-pg"]["secureJsonFields"] == {"password": True}
        assert "secureJsonData" not in grafana.datasources["maillage-pg"]
        versions = {u: d["dashboard"]["version"] for u, d in grafana.dashboards.items()}

        second = publish(connect(url, token), datasource=datasource(), dashboards=dashboards(),
                         password="s3cret")
        assert second.writes == 0 and len(second.unchanged) == 7
        assert len(grafana.writes) == 7
        assert {u: d["dashboard"]["version"] for u, d in grafana.dashboards.items()} == versions


def test_an_edit_in_grafana_is_put_back_with_its_version() -> None:
    """A dashboard edited in Grafana is saved again (its id and version: no 412), the others are
    left alone; a data source changed in Grafana is updated, its password sent again."""
    token = uuid.uuid4().hex
    with fake_grafana(token) as (url, grafana):
        api = connect(url, token)
        publish(api, datasource=datasource(), dashboards=dashboards(), password="pw")
        stored = grafana.dashboards["maillage-soins"]["dashboard"]
        stored["title"], stored["version"] = "edited by hand", stored["version"] + 1
        grafana.datasources["maillage-pg"]["url"] = "elsewhere:5432"
        grafana.writes.clear()
        report = publish(api, datasource=datasource(), dashboards=dashboards(), password="pw")
        assert sorted(report.updated) == ["dashboard:maillage-soins", "datasource:maillage-pg"]
        assert [(m, s) for m, _, s in grafana.writes] == [("PUT", 200), ("POST", 200)]
        assert grafana.dashboards["maillage-soins"]["dashboard"]["title"] == dashboards()["maillage-soins"]["title"]
        assert grafana.dashboards["maillage-soins"]["dashboard"]["version"] == 3
        assert grafana.datasources["maillage-pg"]["url"] == "timescaledb:5432"
        assert publish(api, datasource=datasource(), dashboards=dashboards()).writes == 0


def test_concurrent_save_412_is_read_again_and_retried() -> None:
    """Someone saves the dashboard between our read and our save: Grafana answers 412, publishing
    reads it again and saves over the new version; a uid taken without its id is 412 too."""
    token = uuid.uuid4().hex
    with fake_grafana(token) as (url, grafana):
        api = connect(url, token)
        publish(api, datasource=datasource(), dashboards=dashboards())
        grafana.dashboards["maillage-compteurs"]["dashboard"]["title"] = "changed"
        grafana.race_once.add("maillage-compteurs")
        grafana.writes.clear()
        report = publish(api, datasource=datasource(), dashboards=dashboards())
        assert report.updated == ["dashboard:maillage-compteurs"]
        assert [s for _, _, s in grafana.writes] == [412, 200]
        assert grafana.dashboards["maillage-compteurs"]["dashboard"]["version"] == 3


def test_refusals_are_clear_errors() -> None:
    """A wrong token (401) and a data source name owned by another uid (409) stop publishing with
    Grafana's status in the message; the CLI prints it and exits 1."""
    token = uuid.uuid4().hex
    with fake_grafana(token) as (url, grafana):
        with pytest.raises(PublishError, match="401"):
            publish(connect(url, "wrong"), datasource=datasource(), dashboards=dashboards())
        assert grafana.writes == []
        grafana.datasources["other"] = {"id": 99, "uid": "other", "name": "maillage", "version": 1}
        with pytest.raises(PublishError, match="409.*same name"):
            publish(connect(url, token), datasource=datasource(), dashboards=dashboards())
        result = CliRunner().invoke(app, ["dashboards", "publish", "--url", url, "--token", "wrong"])
        assert result.exit_code == 1 and "401" in result.output


def test_cli_publish_then_nothing_to_do() -> None:
    """`maillage dashboards publish` twice: created, then unchanged (JSON report)."""
    token = uuid.uuid4().hex
    with fake_grafana(token) as (url, grafana):
        args = ["dashboards", "publish", "--url", url, "--token", token, "--no-timescaledb", "--json"]
        first = CliRunner().invoke(app, args, env={"MAILLAGE_GRAFANA_DB_PASSWORD": "pw"})
        assert first.exit_code == 0, first.output
        assert len(json.loads(first.stdout)["created"]) == 7
        assert grafana.datasources["maillage-pg"]["jsonData"]["timescaledb"] is False
        second = CliRunner().invoke(app, args)
        assert second.exit_code == 0 and json.loads(second.stdout)["created"] == []
        assert len(json.loads(second.stdout)["unchanged"]) == 7 and len(grafana.writes) == 7


def test_build_writes_the_committed_provisioning_files(tmp_path: Path) -> None:
    """`dashboards build` writes what deploy/grafana/provisioning holds (rebuild after a change);
    a second build changes no file; the provider points where compose mounts the folder."""
    assert write(tmp_path) and write(tmp_path) == []
    committed = ROOT / "deploy" / "grafana" / "provisioning"
    for rel, text in provisioning_files().items():
        assert (committed / rel).read_text() == text, f"{rel}: run `maillage dashboards build`"
    result = CliRunner().invoke(app, ["dashboards", "build", "--out", str(tmp_path / "x"), "--json"])
    assert result.exit_code == 0 and len(json.loads(result.stdout)["changed"]) == 2 + len(UIDS)
