"""Kept for code written against the old name: the metric vocabulary is `maillage.vocabulary`.

Not Prometheus (that is `maillage.observability`). Import `maillage.vocabulary` in new code; the
integrator removes this module once the detection work imports it from there.
"""

from maillage.vocabulary import CUMULATIVE, KNOWN, METRIC_UNITS, Metric, is_valid_name

__all__ = ["CUMULATIVE", "KNOWN", "METRIC_UNITS", "Metric", "is_valid_name"]
