"""`maillage eval scenario`: the simulated territory runs through ingest, a detector and the scorer.

These tests drive the pipeline with a tiny stand-in detector (three obvious rules), so that what
they check is the evaluation itself: labels reach the report, detections are matched, counts add
up, the same seed gives the same report. The real detectors' figures are in docs/detection.md.
"""

from __future__ import annotations

from datetime import time as dtime
from io import StringIO
from typing import Any

import orjson
import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from maillage.cli.eval_scenario import render, scenario
from maillage.envelope import Envelope
from maillage.eval.scenario import DEFAULT_START, EvalError, RunOptions, run
from maillage.processors.detection.model import (
    Anomaly,
    DeviceInfo,
    Kind,
    Severity,
    Transition,
)
from maillage.simulators.anomalies import KINDS
from maillage.simulators.scenario import (
    Anomalies,
    Commune,
    Fleet,
    Intervals,
    LightingPolicy,
    Scenario,
)

STUB_KINDS = ["spike", "fall", "malformed_payload", "sensor_offline", "indoor_cold"]


class StubDetector:
    """Spikes above 8 kW, falls, and rejected messages: the evaluation's plumbing, not a detector."""

    def __init__(self) -> None:
        self.open: dict[tuple[str, Kind], Anomaly] = {}
        self.calls = {"handle": 0, "rejected": 0}

    def _set(self, device: DeviceInfo, kind: Kind, active: bool, ts_us: int) -> list[Transition]:
        key = (device.device_id, kind)
        opened = self.open.get(key)
        if active and opened is None:
            a = Anomaly(device.tenant, device.device_id, kind, Severity.WARNING, 1.0, ts_us, None, {})
            self.open[key] = a
            return [Transition(a, "open")]
        if not active and opened is not None:
            del self.open[key]
            return [Transition(Anomaly(opened.tenant, opened.device_id, kind, opened.severity,
                                       1.0, opened.start_us, max(ts_us, opened.start_us), {}),
                               "close")]
        return []

    def handle(self, device: DeviceInfo, env: Envelope) -> list[Transition]:
        self.calls["handle"] += 1
        out: list[Transition] = []
        power = env.values.get("active_power_w", env.values.get("apparent_power_va"))
        if device.type == "meter" and power is not None:
            out += self._set(device, Kind.SPIKE, power > 8000, env.ts_us)
        if env.event == "fall_detected":
            out += self._set(device, Kind.FALL, True, env.ts_us)
            out += self._set(device, Kind.FALL, False, env.ts_us)
        return out

    def handle_rejected(self, device: DeviceInfo, reason: str, rx_us: int) -> list[Transition]:
        self.calls["rejected"] += 1
        return [*self._set(device, Kind.MALFORMED_PAYLOAD, True, rx_us),
                *self._set(device, Kind.MALFORMED_PAYLOAD, False, rx_us)]


def small_territory(seed: int) -> Scenario:
    """A few devices of each family, many anomalies of a few kinds."""
    return Scenario(
        tenant="eval", seed=seed, start=DEFAULT_START,
        communes=[Commune(name="Rennes", lat=48.1173, lon=-1.6778,
                          lighting=LightingPolicy(mode="dimming", night_from=dtime(22, 30)))],
        fleet=Fleet(meters=12, streetlights=16, care_homes=4, lamps_per_cabinet=8,
                    presence_share=0.0),
        intervals=Intervals(meter_s=120, streetlight_s=600, cabinet_s=600, luminosity_s=900,
                            care_env_s=600, care_heartbeat_s=900),
        anomalies=Anomalies(per_device_day=0.6, first_wave=0, kinds=STUB_KINDS))


def _run(seed: int, detector: StubDetector | None = None) -> dict[str, Any]:
    return run(RunOptions(seed=seed, days=1, warmup_days=1, tail_h=3, silent_step_s=120),
               detector=detector or StubDetector(), scenario=small_territory(seed))


@pytest.fixture(scope="module")
def report() -> tuple[dict[str, Any], StubDetector]:
    detector = StubDetector()
    return _run(5, detector), detector


def _row(report: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(r for r in report["kinds"] if r["kind"] == kind)


def test_short_run_reports_every_kind_with_consistent_counts(report) -> None:  # type: ignore[no-untyped-def]
    """Every simulator kind has a row; labels, matches and detections add up."""
    rep, detector = report
    assert [r["kind"] for r in rep["kinds"]] == list(KINDS)
    assert rep["seed"] == 5 and rep["days"] == 1 and rep["warmup_days"] == 1
    devices = rep["devices"]
    assert (devices["meter"], devices["streetlight"], devices["care_hub"]) == (12, 16, 4)
    assert sum(n for t, n in devices.items() if t.startswith("care_")) == 4 * 8
    assert set(rep["labels"]) <= set(STUB_KINDS) and sum(rep["labels"].values()) >= 15
    for row in rep["kinds"]:
        assert row["labels"] == rep["labels"].get(row["kind"], 0)
        assert 0 <= row["matched"] <= row["labels"] and 0 <= row["right"] <= row["detections"]
        if row["labels"]:
            assert row["recall"] == row["matched"] / row["labels"]
        if row["detections"]:
            assert row["precision"] == row["right"] / row["detections"]
        if row["matched"]:
            assert 0 <= row["delay_s"]["p50"] <= row["delay_s"]["p95"]
    # What the stub cannot see is reported, not hidden: recall 0 for indoor_cold.
    assert _row(rep, "indoor_cold")["labels"] > 0 and _row(rep, "indoor_cold")["recall"] == 0
    assert detector.calls["handle"] == rep["envelopes"] > rep["publications"] * 0.9
    assert detector.calls["rejected"] == sum(rep["rejected"].values()) > 0


def test_pipeline_finds_what_the_stub_sees(report) -> None:  # type: ignore[no-untyped-def]
    """Spikes, falls and broken payloads go simulator -> ingest -> detector -> scorer; the real
    silence check finds offline sensors."""
    rep, _ = report
    for kind in ("spike", "fall"):
        row = _row(rep, kind)
        assert row["labels"] > 0 and row["recall"] == 1.0, row
    fall = _row(rep, "fall")
    assert fall["precision"] == 1.0 and fall["delay_s"]["p95"] == 0  # raised on the event itself
    malformed = _row(rep, "malformed_payload")
    assert malformed["matched"] > 0 and malformed["precision"] == 1.0
    offline = _row(rep, "sensor_offline")
    assert offline["labels"] > 0 and offline["recall"] >= 0.8, offline
    # Offline after 3 heartbeats (45 min) of silence, counted from the last message (at most one
    # heartbeat before the label's start), seen by a check every 2 min.
    assert 2700 - 900 <= offline["delay_s"]["p50"] <= 2700 + 120


def test_same_seed_same_report() -> None:
    """Nothing reads the wall clock: a second run gives the same report; another seed does not."""
    first, again = _run(7), _run(7)
    assert first == again
    assert _run(8)["labels"] != first["labels"]


def test_table_lists_every_kind(report) -> None:  # type: ignore[no-untyped-def]
    """The rich table names every kind and shows what failed."""
    rep, _ = report
    out = StringIO()
    render(rep, Console(file=out, width=220))
    text = out.getvalue()
    for kind in KINDS:
        assert kind in text
    assert "seed 5" in text and "missed" in text


def test_command_with_the_real_detectors() -> None:
    """`maillage eval scenario --json` on one simulated day: the real engine and rules run and
    the report has a row per kind (the figures of a month are in docs/detection.md)."""
    app = typer.Typer()
    app.command()(scenario)
    result = CliRunner().invoke(app, ["--days", "1", "--warmup-days", "0", "--tail-hours", "1",
                                      "--seed", "3", "--json"])
    assert result.exit_code == 0, result.output
    rep = orjson.loads(result.stdout)
    assert [r["kind"] for r in rep["kinds"]] == list(KINDS)
    assert rep["publications"] > 40_000 and sum(rep["labels"].values()) > 0
    assert rep["anomalies"] > 0


def test_bad_options_are_a_clear_error() -> None:
    """No simulated days, or a silence check that never runs: refused before simulating."""
    app = typer.Typer()
    app.command()(scenario)
    result = CliRunner().invoke(app, ["--days", "0"])
    assert result.exit_code == 1 and "days" in result.output
    with pytest.raises(EvalError):
        run(RunOptions(days=1, silent_step_s=0), detector=StubDetector())
