"""The command: byte-identical dry runs for a seed, scenario files, the registration file."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import typer
from typer.testing import CliRunner

from maillage.cli.simulate import simulate
from maillage.registry.importer import load_devices
from maillage.simulators.scenario import ScenarioError, load_scenario

SMALL = ["--meters", "12", "--streetlights", "12", "--care-homes", "2", "--start",
         "2026-02-10T16:00:00Z", "--speed", "3600", "--duration", "2"]


def app() -> typer.Typer:
    """A local app holding only `simulate` (the real CLI registers it the same way)."""
    a = typer.Typer()
    a.command("simulate")(simulate)
    a.command("noop")(lambda: None)
    return a


def _dry_run(tmp: Path, name: str, *extra: str) -> tuple[bytes, bytes]:
    out, labels = tmp / f"{name}.jsonl", tmp / f"{name}-labels.jsonl"
    result = CliRunner().invoke(app(), ["simulate", *SMALL, *extra, "--dry-run", "--out", str(out),
                                        "--labels", str(labels)])
    assert result.exit_code == 0, result.output
    return out.read_bytes(), labels.read_bytes()


def test_same_seed_gives_byte_identical_publications(tmp_path: Path) -> None:
    """Two runs with one seed publish the same bytes; another seed publishes other data."""
    first, labels1 = _dry_run(tmp_path, "a", "--seed", "42")
    second, labels2 = _dry_run(tmp_path, "b", "--seed", "42")
    assert first == second and labels1 == labels2
    assert len(first.splitlines()) > 1000 and labels1
    other, _ = _dry_run(tmp_path, "c", "--seed", "43")
    assert other != first
    channels = {"/".join(orjson.loads(line)["topic"].split("/")[3:]) for line in first.splitlines()}
    assert channels == {"up/json", "up/senml", "up/tic", "up/event"}


def test_scenario_file_yaml_and_toml(tmp_path: Path) -> None:
    """YAML and TOML scenarios load to the same model; mistakes are reported, not ignored."""
    yaml_file = tmp_path / "s.yaml"
    yaml_file.write_text("tenant: est\nseed: 5\ncommunes:\n  - {name: Vitre, lat: 48.12, lon: -1.21}\n"
                         "fleet: {meters: 3}\nintervals: {meter_s: 30}\n")
    toml_file = tmp_path / "s.toml"
    toml_file.write_text('tenant = "est"\nseed = 5\n[[communes]]\nname = "Vitre"\nlat = 48.12\n'
                         'lon = -1.21\n[fleet]\nmeters = 3\n[intervals]\nmeter_s = 30\n')
    assert load_scenario(yaml_file) == load_scenario(toml_file)
    bad = tmp_path / "bad.yaml"
    bad.write_text("communes: []\n")
    with pytest.raises(ValueError):
        load_scenario(bad)
    broken = tmp_path / "broken.toml"
    broken.write_text("tenant = \n")
    with pytest.raises(ScenarioError):
        load_scenario(broken)
    result = CliRunner().invoke(app(), ["simulate", "--scenario", str(bad), "--dry-run", "--out",
                                        str(tmp_path / "x"), "--duration", "1"])
    assert result.exit_code == 1 and "communes" in result.output


def test_registration_file_is_importable(tmp_path: Path) -> None:
    """`--registration-file` writes a CSV that `maillage devices import` reads back whole."""
    csv_file = tmp_path / "devices.csv"
    result = CliRunner().invoke(app(), ["simulate", "--demo", "--tenant", "est",
                                        "--registration-file", str(csv_file)])
    assert result.exit_code == 0, result.output
    items = load_devices(csv_file)
    types = {spec.type.value for _, spec in items}
    assert {t for t, _ in items} == {"est"}
    assert len(items) > 500
    assert types >= {"meter", "streetlight", "lighting_cabinet", "care_hub", "care_bed",
                     "care_motion", "care_door", "care_button", "care_env", "luminosity",
                     "presence"}
    meter = next(spec for _, spec in items if spec.type.value == "meter")
    assert meter.meta["subscribed_power_va"] and meter.commune
