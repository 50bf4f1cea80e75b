"""The result JSON document of a run, built from the figures of its phases."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from maillage.bench.alert_probe import AlertProbe
from maillage.bench.config import BenchConfig
from maillage.bench.falls import FallProbe
from maillage.bench.fleet import Archetype, readings_per_message
from maillage.bench.phases import Phase
from maillage.bench.probes import LatencyProbe, Snapshot, percentiles, timeline
from maillage.bench.publish import Session
from maillage.bench.report import machine_info

if TYPE_CHECKING:
    from maillage.stack.state import StackState


def document(*, config: BenchConfig, state: StackState, run_id: str, sessions: list[list[Session]],
             mix: list[Archetype], baseline: dict[str, Any], thr: Phase, storage: dict[str, Any],
             pause: dict[str, Any] | None, verification: dict[str, Any], peaks: dict[str, float],
             profile: dict[str, Any] | None, mode: str, half: float, probe: LatencyProbe,
             falls_probe: FallProbe | None, alerts: AlertProbe | None, base: Snapshot | None,
             dup_marks: list[tuple[str, float]], lost_detail: list[str], latency_phase: Phase,
             catch_up_s: float | None, rollups_s: float, failures: list[str]) -> dict[str, Any]:
    """The document `maillage bench` prints, writes with --json and records in docs/benchmarks.md."""
    cfg, v = config, verification
    cost: dict[str, dict[str, Any]] = {}
    order = ["gateway", "storage", "mosquitto", "kafka", "postgres"]
    for comp in order + sorted(c for c in thr.cpu if c not in order):
        if comp not in thr.cpu:
            continue
        cost[comp] = {"cpu_s_per_million": round(thr.cpu[comp] / thr.readings * 1e6, 1) if thr.readings else None,
                      "peak_rss_mb": round(peaks.get(comp, 0.0)),
                      "cores": round(thr.cpu[comp] / thr.seconds, 2) if thr.seconds else None}
    lat = probe.latencies
    falls = falls_probe.latencies if falls_probe is not None else {}
    alert_lat = alerts.latencies if alerts is not None else {}
    dups: dict[str, int] = {}
    prev = base.duplicate_readings if base is not None else 0.0
    for label, value in dup_marks:
        dups[label] = dups.get(label, 0) + int(value - prev)
        prev = value
    return {
        "machine": machine_info(cfg.gateways if not cfg.use_running else
                                sum(1 for n in state.pids if n.startswith("gateway")),
                                cfg.storages if not cfg.use_running else
                                sum(1 for n in state.pids if n.startswith("storage"))),
        "config": {"duration_s": cfg.duration_s, "quick": cfg.quick, "publishers": cfg.publishers,
                   "sessions": sum(len(s) for s in sessions), "mode": mode, "rate": cfg.rate,
                   "window_readings": cfg.window_readings, "warmup_s": cfg.warmup_s,
                   "use_running": cfg.use_running, "profiled": profile is not None,
                   "readings_per_message": round(readings_per_message(mix), 2),
                   "mix": {a.name: round(a.share, 4) for a in mix}, "run_id": run_id,
                   "kafka": {"kind": state.kafka_kind or "external",
                             "start_s": state.kafka_start_s}},
        "baselines": baseline,
        "e2e": {"readings_per_s": round(thr.readings_per_s),
                "messages_per_s": round(thr.messages / thr.seconds) if thr.seconds else 0,
                "duration_s": cfg.duration_s, "window_s": round(thr.seconds, 1),
                "published": v["published"], "stored": v["stored"], "lost": v["lost"],
                "duplicated": v["duplicated"], "unexpected": v["unexpected"],
                "messages_published": v["messages_published"],
                "events_published": v["events_published"], "events_lost": v["events_lost"],
                "rejected": v["rejected"], "lost_detail": lost_detail,
                "duplicates_by_phase": dups},
        "storage": {**storage, "lost": v["feed_lost"]},
        "latency_ms": {"stored": percentiles(lat.get("latency", [])),
                       "anomaly": percentiles(falls.get("latency", [])),
                       "alert": percentiles(alert_lat.get("latency", []))},
        "latency_detail": {"rate_msgs_per_s": round(half), "samples": len(lat.get("latency", [])),
                           "detection_catch_up_s": catch_up_s and round(catch_up_s, 1),
                           "rollups_catch_up_s": round(rollups_s, 1),
                           "started_at": datetime.fromtimestamp(latency_phase.started_at, UTC)
                           .isoformat(timespec="seconds") if latency_phase.started_at else None,
                           "stored_at_max": percentiles(lat.get("max", [])),
                           "stored_during_pause": percentiles(lat.get("pause", [])),
                           "method": "probe device, 50 msg/s; row polled every 20 ms (upper bound)",
                           "timeline": timeline(probe.sent_at.get("latency", []),
                                                lat.get("latency", [])),
                           "probe_errors": probe.errors[:5],
                           "anomaly_samples": len(falls.get("latency", [])),
                           "anomaly_at_max": percentiles(falls.get("max", [])),
                           "anomaly_method": "a care pendant publishes 2 falls/s; its anomaly "
                                             "row polled every 20 ms (upper bound)",
                           "anomaly_errors": (falls_probe.errors[:5] if falls_probe else []),
                           "anomaly_segments": {
                               phase: {part: percentiles(v) for part, v in parts.items()}
                               for phase, parts in (falls_probe.segments if falls_probe else {}).items()},
                           "alert_samples": len(alert_lat.get("latency", [])),
                           "alert_at_max": percentiles(alert_lat.get("max", [])),
                           "alert_method": "a care coordinator's SSE stream (GET "
                                           "/v1/alerts/stream) receives each fall's alert, "
                                           "then resolves it through the API",
                           "alert_errors": (alerts.errors[:5] if alerts else []),
                           "cores": {c: round(v / latency_phase.seconds, 2)
                                     for c, v in latency_phase.cpu.items()}
                           if latency_phase.seconds else {}},
        "cost": cost,
        "pause_db": pause,
        "profile": profile,
        "ok": not failures,
        "failures": failures,
    }
