"""The scenario evaluation's matching rule on hand-made labels and anomalies."""

from __future__ import annotations

import inspect
from typing import Any

from maillage.cli.eval_scenario import scenario
from maillage.eval.scenario import RunOptions
from maillage.eval.scenario_match import Detection, Label, percentile, scopes, score

S = 1_000_000
T0 = 1_767_571_200 * S  # 2026-01-05T00:00:00Z
RUN_END = T0 + 86_400 * S

# Two lamps on a cabinet, a dwelling's button and motion sensor on their hub, a meter alone.
SCOPE = scopes({"lamp-1": "cab-1", "lamp-2": "cab-1", "cab-1": None, "btn": "hub", "motion": "hub",
                "hub": None, "mtr": None})


def _label(device: str, kind: str, start_s: int, end_s: int) -> Label:
    return Label(device, kind, T0 + start_s * S, T0 + end_s * S)


def _det(device: str, kind: str, start_s: int, end_s: int | None, raised_s: int | None = None,
         id_: str | None = None) -> Detection:
    raised = T0 + (raised_s if raised_s is not None else start_s) * S
    return Detection(id=id_ or f"{device}/{kind}/{start_s}", device_id=device, kind=kind,
                     start_us=T0 + start_s * S, raised_us=raised,
                     end_us=None if end_s is None else T0 + end_s * S,
                     closed_us=None if end_s is None else T0 + end_s * S)


def _score(labels: list[Label], dets: list[Detection], grace_s: float = 600) -> dict[str, Any]:
    return score(labels, dets, scope=SCOPE, label_kinds=["spike", "fall", "sensor_offline",
                                                         "cabinet_overconsumption",
                                                         "late_reading", "long_inactivity"],
                 run_end_us=RUN_END, grace_s=grace_s)


def _row(report: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(r for r in report["kinds"] if r["kind"] == kind)


def test_scopes_follow_the_registry_relation() -> None:
    """A member's scope holds its head; a head's scope holds its members; a loner only itself."""
    assert SCOPE["btn"] == {"btn", "hub"}
    assert SCOPE["hub"] == {"hub", "btn", "motion"}
    assert SCOPE["lamp-1"] == {"lamp-1", "cab-1"}
    assert SCOPE["mtr"] == {"mtr"}


def test_match_miss_and_false_positive() -> None:
    """One spike found 60 s late, one missed, one detection on no label."""
    labels = [_label("mtr", "spike", 1000, 1300), _label("mtr", "spike", 5000, 5200)]
    dets = [_det("mtr", "spike", 1060, 1300), _det("mtr", "spike", 9000, 9100)]
    row = _row(_score(labels, dets), "spike")
    assert (row["labels"], row["matched"], row["recall"]) == (2, 1, 0.5)
    assert (row["detections"], row["right"], row["precision"]) == (2, 1, 0.5)
    assert row["delay_s"] == {"p50": 60.0, "p95": 60.0}
    assert [m["start"] for m in row["missed"]] == ["2026-01-05T01:23:20Z"]
    assert [f["start"] for f in row["false_positives"]] == ["2026-01-05T02:30:00Z"]
    assert row["false_positives"][0]["overlaps"] == [] and row["false_positives_alone"] == 1
    assert row["pass"] is False


def test_grace_after_the_label_end() -> None:
    """A detection starting within the grace after the label's end matches; after it, not."""
    labels = [_label("mtr", "spike", 1000, 1200)]
    assert _row(_score(labels, [_det("mtr", "spike", 1700, 1800)], grace_s=600),
                "spike")["matched"] == 1
    late = _score(labels, [_det("mtr", "spike", 1900, 2000)], grace_s=600)
    assert _row(late, "spike")["matched"] == 0 and _row(late, "spike")["right"] == 0


def test_kind_and_device_must_agree() -> None:
    """A detection of another kind, or on an unrelated device, does not match."""
    labels = [_label("mtr", "spike", 1000, 1200)]
    report = _score(labels, [_det("mtr", "fall", 1000, 1200), _det("lamp-1", "spike", 1000, 1200)])
    assert _row(report, "spike")["matched"] == 0
    assert _row(report, "spike")["detections"] == 1 and _row(report, "spike")["right"] == 0
    assert _row(report, "fall")["detections"] == 1 and _row(report, "fall")["right"] == 0


def test_hub_and_cabinet_stand_for_their_members_and_back() -> None:
    """A label on a care sensor is found on its hub; one on a cabinet on a lamp of it."""
    labels = [_label("btn", "fall", 100, 400), _label("cab-1", "cabinet_overconsumption", 0, 3600),
              _label("hub", "long_inactivity", 0, 7200)]
    dets = [_det("hub", "fall", 120, 130), _det("lamp-2", "cabinet_overconsumption", 60, 3600),
            _det("motion", "long_inactivity", 3600, 7200),
            _det("lamp-1", "fall", 120, 130)]  # a lamp is no relation of the button
    report = _score(labels, dets)
    assert _row(report, "fall")["matched"] == 1 and _row(report, "fall")["right"] == 1
    assert _row(report, "fall")["detections"] == 2
    assert _row(report, "cabinet_overconsumption")["recall"] == 1.0
    assert _row(report, "long_inactivity")["recall"] == 1.0


def test_sensor_offline_is_found_as_device_offline_and_outage_is_not_a_false_alarm() -> None:
    """sensor_offline <- device_offline; a device_offline during a late_reading label is right
    (the device was silent) but does not count for late_reading's recall."""
    labels = [_label("btn", "sensor_offline", 0, 7200), _label("mtr", "late_reading", 0, 7200)]
    dets = [_det("btn", "device_offline", 2700, 7200), _det("mtr", "device_offline", 2700, 7200),
            _det("motion", "device_offline", 2700, 3000)]
    report = _score(labels, dets)
    off = _row(report, "sensor_offline")
    assert off["detector_kinds"] == ["device_offline", "group_offline"]
    assert (off["matched"], off["detections"], off["right"]) == (1, 3, 2)
    assert off["delay_s"]["p50"] == 2700.0
    assert _row(report, "late_reading")["matched"] == 0


def test_open_anomaly_runs_to_the_end_and_raise_time_counts() -> None:
    """An anomaly still open covers until the run's end; an anomaly dated back (event time)
    still matches by the moment it was raised, and its delay is measured from that moment."""
    labels = [_label("mtr", "spike", 80_000, 80_100), _label("btn", "fall", 1000, 1060)]
    dets = [_det("mtr", "spike", 70_000, None, id_="open"),
            _det("btn", "fall", 900, 950, raised_s=1030)]
    report = _score(labels, dets)
    assert _row(report, "spike")["matched"] == 1
    assert _row(report, "spike")["delay_s"]["p50"] == 0  # already open: no delay
    fall = _row(report, "fall")
    assert fall["matched"] == 1 and fall["delay_s"]["p50"] == 30.0


def test_flapping_detections_of_one_label_are_all_right() -> None:
    """Three anomalies over one label: one label matched, three right detections."""
    labels = [_label("mtr", "spike", 0, 600)]
    dets = [_det("mtr", "spike", s, s + 60) for s in (0, 200, 400)]
    row = _row(_score(labels, dets), "spike")
    assert (row["matched"], row["detections"], row["right"], row["precision"]) == (1, 3, 3, 1.0)
    assert row["pass"] is True


def test_unlabelled_kinds_are_counted_apart_and_every_label_kind_reported() -> None:
    """unusual_value has no label kind; kinds without labels still have their row."""
    labels = [_label("mtr", "spike", 0, 600)]
    dets = [_det("mtr", "unusual_value", 100, 200), _det("mtr", "unusual_value", 50_000, 50_100)]
    report = _score(labels, dets)
    assert [r["kind"] for r in report["kinds"]] == ["spike", "fall", "sensor_offline",
                                                    "cabinet_overconsumption", "late_reading",
                                                    "long_inactivity"]
    assert report["unlabelled"] == [{"kind": "unusual_value", "detections": 2,
                                     "overlapping_a_label": 1, "by_label_kind": {"spike": 1}}]
    fall = _row(report, "fall")
    assert (fall["labels"], fall["recall"], fall["precision"], fall["pass"]) == (0, None, None,
                                                                                   False)


def test_false_positives_name_the_labels_they_overlap() -> None:
    """A zero_consumption raised during a meter_stuck label is wrong, and says it overlapped."""
    labels = [_label("mtr", "meter_stuck", 0, 7200)]
    report = score(labels, [_det("mtr", "zero_consumption", 3600, 7200)], scope=SCOPE,
                   label_kinds=["meter_stuck", "zero_consumption"], run_end_us=RUN_END,
                   grace_s=0)
    row = _row(report, "zero_consumption")
    assert row["false_positives_overlapping"] == {"meter_stuck": 1}
    assert row["false_positives"][0]["overlaps"] == ["meter_stuck"]
    assert row["false_positives_alone"] == 0
    assert row["precision"] == 0.0


def test_percentile_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([5.0, 1.0, 3.0, 2.0], 50) == 2.0
    assert percentile([float(i) for i in range(1, 101)], 95) == 95.0


def test_fall_left_open_is_an_instant_not_a_window() -> None:
    """A fall is closed by a person, not a rule: left open, it does not find the next fall."""
    labels = [_label("btn", "fall", 1000, 2000), _label("btn", "fall", 50_000, 51_000)]
    report = _score(labels, [_det("btn", "fall", 1000, None)])
    fall = _row(report, "fall")
    assert (fall["matched"], fall["right"], fall["open_at_end"]) == (1, 1, 0)
    assert fall["missed"][0]["start"] == "2026-01-05T13:53:20Z"
    spike = _row(_score([_label("mtr", "spike", 0, 60)], [_det("mtr", "spike", 0, None)]), "spike")
    assert spike["open_at_end"] == 1


def test_missed_label_says_how_many_messages_could_have_shown_it() -> None:
    """With the publication times, a missed label carries the count of its device's messages."""
    labels = [_label("mtr", "spike", 1000, 1200), _label("btn", "fall", 5000, 5100)]
    published = {"mtr": [T0 + s * S for s in (900, 1000, 1120, 1200)], "btn": [T0 + 4000 * S]}
    report = score(labels, [], scope=SCOPE, label_kinds=["spike", "fall"], run_end_us=RUN_END,
                   grace_s=0, published=published)
    assert _row(report, "spike")["missed"][0]["published_in_window"] == 2
    assert _row(report, "spike")["missed_silent"] == 0
    assert _row(report, "fall")["missed_silent"] == 1


def test_command_defaults_are_the_run_defaults() -> None:
    """`maillage eval scenario` without options runs what docs/detection.md measured."""
    params = inspect.signature(scenario).parameters
    run = RunOptions()
    assert (params["seed"].default, params["days"].default, params["warmup_days"].default,
            params["tail_hours"].default, params["grace"].default, params["silent_step"].default,
            params["examples"].default) == (run.seed, run.days, run.warmup_days, run.tail_h,
                                            run.grace_s, run.silent_step_s, run.examples)
