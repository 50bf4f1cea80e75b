"""The phases of one benchmark run, on its own embedded stack or on a running one.

1. set-up: the stack, the message mix, the bench devices, the latency probe;
2. baselines: raw MQTT (publishers -> Mosquitto -> one subscriber), raw Kafka (one aiokafka
   producer -> Tansu -> one consumer), raw COPY into `readings`;
3. throughput: the device sessions publish as fast as the pipeline stores (closed loop: what
   is published but not yet stored stays under `window` readings), for `duration_s`; figures
   over the part after the warm-up; CPU per component over the same part;
4. storage figure: envelopes produced straight to Kafka, drained by the storage processor alone,
   against the raw COPY;
5. latency: the sessions publish at half the maximum; the probe times publication -> row stored;
6. optionally the database is stopped (SIGSTOP) for a while under load, then resumed;
7. verification: everything drained, rows counted per device and metric against what was sent.

This module runs them in order; the parts live beside it: `config` (what a run is asked for),
`accounts` (devices and broker accounts), `raw` (the baselines, timed), `phases` (publishing,
storage figure, pause, profiling), `progress` (backlog and drains), `verify`, `document` (the
result JSON), `queries` (the SQL the bench runs itself).
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import tempfile
import threading
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from maillage import topics
from maillage.bench import accounts, phases, raw
from maillage.bench.alert_probe import AlertProbe
from maillage.bench.config import TENANT, BenchConfig, BenchError
from maillage.bench.document import document
from maillage.bench.falls import FallProbe
from maillage.bench.fleet import Archetype, build_mix
from maillage.bench.phases import Phase
from maillage.bench.probes import Counters, LatencyProbe, ResourceSampler, component_of
from maillage.bench.progress import Progress
from maillage.bench.publish import MAX, PublisherPool, Session, WorkerResult, WorkerSpec
from maillage.bench.report import Dashboard
from maillage.bench.verify import verify
from maillage.config import Settings
from maillage.processors.detection.processor import GROUP as DETECTION_GROUP

__all__ = ["Bench", "BenchConfig", "BenchError", "default_docs_path"]

log = logging.getLogger(__name__)


class Bench:
    """One run; `run()` returns the JSON document."""

    def __init__(self, config: BenchConfig, settings: Settings, ui: Dashboard) -> None:
        self.config = config
        self.settings = settings
        self.ui = ui
        self.run_id = time.strftime("r%m%d%H%M%S") + secrets.token_hex(2)
        self.failures: list[str] = []
        self.state: Any = None
        self.mix: list[Archetype] = []
        self.sessions: list[list[Session]] = []
        self.device_pks: dict[str, int] = {}
        self.pool: PublisherPool | None = None
        self.latency_phase = Phase()
        self.worker_results: list[WorkerResult] = []
        self.probe: LatencyProbe | None = None
        self.falls: FallProbe | None = None
        self.alerts: AlertProbe | None = None
        self.sampler: ResourceSampler | None = None
        self.counters: Counters | None = None
        self.progress: Progress | None = None
        self.feed_counts: Counter[tuple[str, str]] = Counter()
        self.raw_user = f"bench-raw-{self.run_id}"
        self.raw_password = secrets.token_urlsafe(18)
        self.t0 = int(time.time()) - 10 * 86400  # measurement times of the bench devices start here
        self.lost_detail: list[str] = []
        self.doc: dict[str, Any] = {}

    # --- set-up -------------------------------------------------------------------------------

    def _start_stack(self, stack: ExitStack) -> Any:
        from maillage.stack.process import free_port
        from maillage.stack.state import running_state
        from maillage.stack.supervisor import Supervisor

        if self.config.use_running:
            self.state = running_state(self.settings)
            return self.state
        if self.config.data_dir is not None:
            data_dir = self.config.data_dir
        else:
            data_dir = Path(tempfile.mkdtemp(prefix="maillage-bench-"))
            if not self.config.keep_data:
                stack.callback(shutil.rmtree, data_dir, ignore_errors=True)
        self.settings = self.settings.model_copy(update={
            "data_dir": data_dir, "gateway_processes": self.config.gateways,
            "storage_processes": self.config.storages, "api_port": free_port()})
        sup = Supervisor(self.settings)
        stack.callback(sup.shutdown)
        self.state = sup.start()
        return self.state

    def _db(self) -> str:
        return str(self.state.database_url)

    def _register(self) -> dict[str, str]:
        """Register the bench devices and the raw-MQTT account; returns passwords by username."""
        self.sessions, mqtt_specs, silent = accounts.plan_sessions(
            run_id=self.run_id, mix=self.mix, sessions=self.config.sessions,
            publishers=self.config.publishers)
        self.device_pks, passwords = accounts.register_bench_devices(
            db_url=self._db(), settings=self.settings, run_id=self.run_id, mqtt_specs=mqtt_specs,
            silent=silent, raw_user=self.raw_user, raw_password=self.raw_password)
        return passwords

    def _unregister(self) -> None:
        """Remove the bench's broker accounts (rows stay: they are the measured data)."""
        accounts.remove_broker_accounts(settings=self.settings, run_id=self.run_id,
                                        sessions=self.sessions, raw_user=self.raw_user)

    def _pids(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for name, pid in self.state.pids.items():
            out.setdefault(component_of(name), []).append(pid)
        if self.pool is not None:
            out["publishers"] = self.pool.pids
        return out

    # --- the run -----------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        cfg = self.config
        with ExitStack() as stack:
            self.ui.phase("starting", None)
            mix_box: list[list[Archetype]] = []
            mixer = threading.Thread(target=lambda: mix_box.append(build_mix()), daemon=True)
            mixer.start()
            self._start_stack(stack)
            mixer.join()
            if not mix_box:
                raise BenchError("could not build the message mix from the territory simulator")
            self.mix = mix_box[0]
            self.counters = Counters(Path(self.settings.data_dir) / "prometheus")
            if not self.counters.available():
                log.warning("no Prometheus counters in %s: progress is counted in SQL (slower)",
                            self.counters.directory)
                self.counters = None
            passwords = self._register()
            if cfg.use_running:
                stack.callback(self._unregister)
            self.progress = progress = Progress(db_url=self._db(), ui=self.ui, quick=cfg.quick,
                                                device_pks=self.device_pks, counters=self.counters)
            self.ui.finish(f"stack ready, {sum(len(s) for s in self.sessions)} device sessions, "
                           f"{len(self.mix)} archetypes")
            progress.base = progress.snap()  # before the probe's first reading
            self.sampler = ResourceSampler(self._pids)
            self.sampler.start()
            stack.callback(self.sampler.stop)
            probe_user = f"{TENANT}/{self.run_id}-probe"
            self.probe = progress.probe = LatencyProbe(
                self.state.mqtt_host, self.state.mqtt_port, probe_user, passwords[probe_user],
                f"{topics.device_prefix(TENANT, self.run_id + '-probe')}up/json", self._db(),
                self.device_pks[f"{self.run_id}-probe"])
            self.probe.phase = "warm-up"
            self.probe.start()
            stack.callback(self.probe.stop)
            fall_user = f"{TENANT}/{self.run_id}-fall"
            self.falls = FallProbe(
                self.state.mqtt_host, self.state.mqtt_port, fall_user, passwords[fall_user],
                f"{topics.device_prefix(TENANT, self.run_id + '-fall')}up/event", self._db(),
                TENANT, f"{self.run_id}-fall", kafka_bootstrap=self.state.kafka_bootstrap,
                fetch_wait_ms=5 if self.state.kafka_kind == "tansu" else 500)
            self.falls.start()
            stack.callback(self.falls.stop)
            self.alerts = AlertProbe(str(self.state.api_url),
                                     accounts.coordinator_token(db_url=self._db(), run_id=self.run_id),
                                     f"{self.run_id}-fall", self.falls.alert_sent, self.falls.lock)
            self.alerts.start()
            stack.callback(self.alerts.stop)

            baseline = {
                "mqtt_msgs_per_s": round(raw.mqtt_baseline(
                    host=self.state.mqtt_host, port=self.state.mqtt_port, raw_user=self.raw_user,
                    raw_password=self.raw_password, run_id=self.run_id, sessions=self.sessions,
                    mix=self.mix, t0=self.t0, seconds=cfg.baseline_s, ui=self.ui)),
                "kafka_records_per_s": round(raw.kafka_baseline(
                    bootstrap=self.state.kafka_bootstrap,
                    partitions=self.settings.topic_partitions(embedded=self.state.kafka_kind == "tansu"),
                    run_id=self.run_id, sessions=self.sessions, mix=self.mix, t0=self.t0,
                    seconds=cfg.baseline_s, ui=self.ui)),
                "copy_rows_per_s": round(raw.copy_baseline(
                    db_url=self._db(), device_pks=self.device_pks, t0=self.t0,
                    seconds=cfg.baseline_s, ui=self.ui))}
            self.ui.phase("pipeline ready?", None)
            if not self.probe.wait_first(90):
                raise BenchError("no reading got through the pipeline in 90 s (see the logs in "
                                 f"{self.settings.data_dir}/logs)")
            self.probe.phase = None
            self.ui.finish("first reading stored")
            specs = [WorkerSpec(w, self.state.mqtt_host, self.state.mqtt_port,
                                [Session(s.username, passwords[s.username], s.topic, s.archetype, s.weight)
                                 for s in sessions], self.mix, self.t0, client_prefix=f"bench-{self.run_id}")
                     for w, sessions in enumerate(self.sessions)]
            self.pool = progress.pool = PublisherPool(specs)
            self.pool.start()
            stack.callback(self.pool.stop, 30)
            phases.wait_ready(self.pool)
            progress.drain("before the run", timeout_s=60)

            # throughput
            self.probe.phase = self.falls.phase = "max"
            recordings = phases.start_profile(profile_dir=cfg.profile_dir, duration_s=cfg.duration_s,
                                              warmup_s=cfg.warmup_s, pids=self.state.pids)
            self.sampler.reset_peaks()
            mode = "max" if cfg.rate is None else "rate"
            thr = phases.publish_phase(
                "throughput" + ("" if cfg.rate is None else f" at {cfg.rate:,.0f} msg/s"),
                cfg.duration_s, pool=self.pool, sampler=self.sampler, progress=progress, ui=self.ui,
                window=cfg.window_readings, rate=MAX if cfg.rate is None else cfg.rate,
                closed=cfg.rate is None, warmup_s=cfg.warmup_s)
            self.probe.phase = self.falls.phase = None
            peaks = self.sampler.peaks()
            profile = phases.finish_profile(recordings, profile_dir=cfg.profile_dir)
            progress.drain("throughput")
            max_msgs = thr.messages / thr.seconds if thr.seconds else 0.0

            storage, self.feed_counts = phases.storage_figure(
                e2e_readings_per_s=thr.readings_per_s, kafka_bootstrap=self.state.kafka_bootstrap,
                mix=self.mix, device_pks=self.device_pks, t0=self.t0, storage_s=cfg.storage_s,
                sampler=self.sampler, progress=progress, ui=self.ui, failures=self.failures)
            storage["copy_rows_per_s"] = baseline["copy_rows_per_s"]
            storage["ratio"] = round(storage["rows_per_s"] / baseline["copy_rows_per_s"], 3) \
                if baseline["copy_rows_per_s"] else None

            # latency at half the maximum, once detection is done with the earlier phases' backlog
            catch_up_s = None
            if any(n.startswith("detection") for n in self.state.pids):
                catch_up_s, behind, settled = progress.catch_up(
                    "before the latency phase", bootstrap=self.state.kafka_bootstrap,
                    groups={DETECTION_GROUP: [topics.READINGS, topics.EVENTS, topics.STATUS]})
                if not settled:
                    self.failures.append(f"detection still {behind:,} records behind after "
                                         f"{catch_up_s:.0f} s, before the latency phase")
            rollups_s, queued, settled = progress.rollups_drained("before the latency phase")
            if not settled:
                self.failures.append(f"{queued:,} rollup queue entries left after {rollups_s:.0f} s, "
                                     "before the latency phase")
            half = max(1.0, max_msgs / 2)
            self.probe.phase = self.falls.phase = "latency"
            self.latency_phase = phases.publish_phase(
                "latency at 50 %", cfg.latency_s, pool=self.pool, sampler=self.sampler,
                progress=progress, ui=self.ui, window=cfg.window_readings, rate=half, closed=False)
            self.probe.phase = self.falls.phase = None
            progress.drain("latency")

            pause = phases.pause_db(
                half, postgres_pid=self.state.pids.get("postgres"), pause_s=cfg.pause_db_s,
                quick=cfg.quick, pool=self.pool, sampler=self.sampler, progress=progress,
                probe=self.probe, ui=self.ui, window=cfg.window_readings) \
                if cfg.pause_db_s > 0 else None
            for comp, v in self.sampler.peaks().items():
                peaks[comp] = max(peaks.get(comp, 0.0), v)

            self.worker_results = self.pool.stop(timeout_s=60)
            for r in self.worker_results:
                if r.errors:
                    self.failures.append(f"publisher {r.index}: " + "; ".join(r.errors[:3]))
            self.probe.stop()
            self.falls.stop()
            if self.alerts is not None:
                self.alerts.stop()
            progress.drain("final", final=True)
            self.falls.split()  # the falls' events are stored by now
            verification = verify(
                ui=self.ui, progress=progress, worker_results=self.worker_results,
                sessions=self.sessions, mix=self.mix, probe=self.probe, run_id=self.run_id,
                feed_counts=self.feed_counts, failures=self.failures, lost_detail=self.lost_detail)

        self.doc = document(
            config=cfg, state=self.state, run_id=self.run_id, sessions=self.sessions, mix=self.mix,
            baseline=baseline, thr=thr, storage=storage, pause=pause, verification=verification,
            peaks=peaks, profile=profile, mode=mode, half=half, probe=self.probe,
            falls_probe=self.falls, alerts=self.alerts, base=progress.base,
            dup_marks=progress.dup_marks, lost_detail=self.lost_detail,
            latency_phase=self.latency_phase, catch_up_s=catch_up_s, rollups_s=rollups_s,
            failures=self.failures)
        return self.doc


def default_docs_path() -> Path:
    """docs/benchmarks.md of the source tree this package runs from, else of the working directory."""
    here = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"
    return here if here.parent.is_dir() else Path(os.getcwd()) / "docs" / "benchmarks.md"
