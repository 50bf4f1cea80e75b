"""Scoring a scenario run: labelled anomalies against detected ones, per kind.

The matching rule (also in docs/detection.md, "Scenario evaluation"):

- A label names a device, a kind and a window [start, end). A detection is one anomaly the
  stage raised (one anomaly id); its span runs from the earlier of its start and the simulated
  moment it was raised to the later of its end and the moment it was closed (the run's end
  while still open; the moment it was raised for a fall or a panic button, which a person
  closes, not a rule).
- A detection of kind K on device D matches a label of kind L on device E when K is a detector
  kind of L (`DETECTOR_KINDS`: the same name, except `sensor_offline` -> `device_offline` or
  `group_offline`), D is in E's scope (E itself; the device that stands for E's group in the
  registry, i.e. the care sensor's hub (`meta.hub`) or the lamp's cabinet (`meta.cabinet`); and,
  when E is such a hub or cabinet, the devices of its group), and its span overlaps
  [label start, label end + grace].
- A detection is also right when it matches a label whose kind makes it so although it is not
  that label's kind (`ALSO_RIGHT`): a device whose messages are held back by an outage
  (`late_reading`) is silent, and saying so (`device_offline`) is not a false alarm. It counts
  for precision, never for the recall of that other kind.
- Recall of a label kind = labels matched / labels. Precision = detections of its detector kinds
  that are right / detections of those kinds. Delay of a matched label = the first moment a
  matching detection was raised (simulated clock) minus the label's start (0 when the anomaly was
  already open). Detections of kinds that no label kind has (`unusual_value`, `baseline_shift`,
  `unexpected_export`, `burning_hours`, ...) are counted apart, with how many overlap a label of
  any kind in their device's scope.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from maillage.envelope import from_us
from maillage.processors.detection.model import IMMEDIATE_KINDS

DETECTOR_KINDS: dict[str, tuple[str, ...]] = {"sensor_offline": ("device_offline", "group_offline")}
"""Label kind -> the detector kinds that find it, where the names differ."""

ALSO_RIGHT: dict[str, frozenset[str]] = {"device_offline": frozenset({"late_reading"}),
                                         "group_offline": frozenset({"late_reading"})}
"""Detector kind -> label kinds (other than its own) that make a detection of it right."""

TARGET_RECALL = 0.95
TARGET_PRECISION = 0.90


def detector_kinds(label_kind: str) -> tuple[str, ...]:
    """The detector kinds whose anomalies find labels of `label_kind`."""
    return DETECTOR_KINDS.get(label_kind, (label_kind,))


@dataclass(frozen=True, slots=True)
class Label:
    """One injected anomaly: device, kind and window, epoch microseconds."""

    device_id: str
    kind: str
    start_us: int
    end_us: int
    params: Mapping[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class Detection:
    """One anomaly raised by the stage, with the simulated moments it was raised and closed."""

    id: str
    device_id: str
    kind: str
    start_us: int
    raised_us: int
    end_us: int | None = None
    closed_us: int | None = None
    evidence: dict[str, Any] = field(default_factory=dict)

    def span(self, run_end_us: int) -> tuple[int, int]:
        """[first, last] microsecond the anomaly covers, as the matching rule reads it."""
        if self.end_us is None:
            if self.kind in IMMEDIATE_KINDS:  # a person ends it, not the data: it is an instant
                return min(self.start_us, self.raised_us), self.raised_us
            return min(self.start_us, self.raised_us), run_end_us  # still open at the run's end
        last = max(self.end_us, self.raised_us,
                   self.closed_us if self.closed_us is not None else self.end_us)
        return min(self.start_us, self.raised_us), last


def scopes(relations: Mapping[str, str | None]) -> dict[str, frozenset[str]]:
    """Device -> devices whose anomalies may stand for it, from `device -> group head`."""
    members: dict[str, set[str]] = defaultdict(set)
    for device, head in relations.items():
        if head:
            members[head].add(device)
    out: dict[str, frozenset[str]] = {}
    for device, head in relations.items():
        scope = {device, *members.get(device, ())}
        if head:
            scope.add(head)
        out[device] = frozenset(scope)
    return out


def _overlaps(a: tuple[int, int], lo: int, hi: int) -> bool:
    return a[0] <= hi and a[1] >= lo


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (nearest rank) of values, None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _iso(us: int | None) -> str | None:
    return None if us is None else from_us(us).strftime("%Y-%m-%dT%H:%M:%SZ")


def score(labels: Iterable[Label], detections: Iterable[Detection], *,
          scope: Mapping[str, frozenset[str]], label_kinds: Iterable[str], run_end_us: int,
          grace_s: float, examples: int = 5,
          published: Mapping[str, list[int]] | None = None) -> dict[str, Any]:
    """Per-kind recall, precision and delay, plus the detections of kinds no label has.

    `published`: each device's publication times (sorted, µs); a missed label then says how
    many messages its device sent during its window (none: nothing could show it)."""
    labels = sorted(labels, key=lambda lb: (lb.start_us, lb.device_id, lb.kind))
    dets = sorted(detections, key=lambda d: (d.raised_us, d.device_id, d.kind, d.id))
    grace_us = round(grace_s * 1e6)
    # Labels reachable from each device their scope holds.
    by_device: dict[str, list[Label]] = defaultdict(list)
    for lb in labels:
        for dev in scope.get(lb.device_id, frozenset({lb.device_id})):
            by_device[dev].append(lb)
    kinds = list(dict.fromkeys([*label_kinds, *(lb.kind for lb in labels)]))
    finds: dict[str, set[str]] = defaultdict(set)  # detector kind -> label kinds it finds
    for lk in kinds:
        for dk in detector_kinds(lk):
            finds[dk].add(lk)
    first_seen: dict[int, int] = {}  # label index -> first raise of a matching detection
    index = {id(lb): i for i, lb in enumerate(labels)}
    right: dict[str, int] = Counter()
    by_kind: dict[str, int] = Counter()
    still_open: dict[str, int] = Counter()
    near_kinds: dict[str, list[str]] = {}  # false positive id -> label kinds it overlaps
    false_pos: dict[str, list[Detection]] = defaultdict(list)
    fp_overlaps: dict[str, Counter[str]] = defaultdict(Counter)
    unlabelled: dict[str, dict[str, Any]] = {}
    for det in dets:
        span = det.span(run_end_us)
        near = [lb for lb in by_device.get(det.device_id, ())
                if _overlaps(span, lb.start_us, lb.end_us + grace_us)]
        if det.kind not in finds:
            row = unlabelled.setdefault(det.kind, {"kind": det.kind, "detections": 0,
                                                   "overlapping_a_label": 0,
                                                   "by_label_kind": Counter()})
            row["detections"] += 1
            if near:
                row["overlapping_a_label"] += 1
                row["by_label_kind"].update({lb.kind for lb in near})
            continue
        by_kind[det.kind] += 1
        if det.end_us is None and det.kind not in IMMEDIATE_KINDS:
            still_open[det.kind] += 1
        ok = False
        for lb in near:
            if lb.kind in finds[det.kind]:
                ok = True
                i = index[id(lb)]
                first_seen[i] = min(first_seen.get(i, det.raised_us), det.raised_us)
            elif lb.kind in ALSO_RIGHT.get(det.kind, ()):
                ok = True
        if ok:
            right[det.kind] += 1
        else:
            false_pos[det.kind].append(det)
            near_kinds[det.id] = sorted({lb.kind for lb in near})
            fp_overlaps[det.kind].update(near_kinds[det.id])
    rows = []
    for lk in kinds:
        own = [(i, lb) for i, lb in enumerate(labels) if lb.kind == lk]
        dks = detector_kinds(lk)
        n_det = sum(by_kind[k] for k in dks)
        n_right = sum(right[k] for k in dks)
        matched = [i for i, _ in own if i in first_seen]
        delays = [max(0, first_seen[i] - labels[i].start_us) / 1e6 for i in matched]
        recall = len(matched) / len(own) if own else None
        precision = n_right / n_det if n_det else None
        overl: Counter[str] = Counter()
        fps: list[Detection] = []
        for k in dks:
            overl.update(fp_overlaps[k])
            fps.extend(false_pos[k])
        rows.append({
            "kind": lk, "detector_kinds": list(dks), "labels": len(own), "matched": len(matched),
            "recall": recall, "detections": n_det, "right": n_right, "precision": precision,
            "open_at_end": sum(still_open[k] for k in dks),
            "delay_s": {"p50": percentile(delays, 50), "p95": percentile(delays, 95)},
            "pass": bool(own) and recall is not None and recall >= TARGET_RECALL
            and precision is not None and precision >= TARGET_PRECISION,
            "missed": [_label_doc(lb, published) for i, lb in own
                       if i not in first_seen][:examples],
            "missed_silent": sum(1 for i, lb in own if i not in first_seen
                                 and published is not None
                                 and _count(published, lb) == 0),
            "false_positives": [{**_det_doc(d), "overlaps": near_kinds[d.id]}
                                for d in sorted(fps, key=lambda d: d.raised_us)][:examples],
            "false_positives_overlapping": dict(sorted(overl.items())),
            "false_positives_alone": sum(1 for d in fps if not near_kinds[d.id]),
        })
    extra = [{**row, "by_label_kind": dict(sorted(row["by_label_kind"].items()))}
             for _, row in sorted(unlabelled.items())]
    return {"kinds": rows, "unlabelled": extra}


def _count(published: Mapping[str, list[int]], lb: Label) -> int:
    """Messages the label's device published during its window."""
    times = published.get(lb.device_id, [])
    return bisect.bisect_left(times, lb.end_us) - bisect.bisect_left(times, lb.start_us)


def _label_doc(lb: Label, published: Mapping[str, list[int]] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"device_id": lb.device_id, "start": _iso(lb.start_us),
                           "end": _iso(lb.end_us), "params": dict(lb.params)}
    if published is not None:
        doc["published_in_window"] = _count(published, lb)
    return doc


def _det_doc(d: Detection) -> dict[str, Any]:
    return {"id": d.id, "device_id": d.device_id, "kind": d.kind, "start": _iso(d.start_us),
            "raised": _iso(d.raised_us), "end": _iso(d.end_us), "evidence": d.evidence}
