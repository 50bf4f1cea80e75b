"""Metered savings with the CalTRACK daily methods, through opendsm (LF Energy), behind one function.

`metered_savings` fits opendsm's daily model (`DailyModel`, its current CalTRACK daily method:
heating and cooling degree-day terms, weekday/weekend and season splits chosen by the data)
on the baseline days, predicts the reporting days from their outdoor temperature, and returns
the avoided energy (predicted minus measured, over the days having both) with its ASHRAE
Guideline 14 uncertainty as opendsm computes it (`ReportingMetrics`, 90 % by default). The fit
statistics it returns let the savings query recompute that uncertainty for any window of
reporting days in SQL. opendsm is slow to import (numba, scikit-fda): it is imported here, in
the call, never on the API's import path.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from maillage.errors import MaillageError

log = logging.getLogger(__name__)

METHOD = "CalTRACK daily (opendsm {version} DailyModel, current settings)"


class InsufficientData(MaillageError):
    """The baseline or reporting data do not allow a CalTRACK daily model (opendsm's reason)."""


@dataclass(frozen=True)
class Day:
    """A reporting day with a measured and a predicted consumption (kWh)."""

    day: date
    observed_kwh: float
    predicted_kwh: float

    @property
    def avoided_kwh(self) -> float:
        return self.predicted_kwh - self.observed_kwh


@dataclass(frozen=True)
class MeteredResult:
    """Avoided energy over a reporting period, its uncertainty and the fit behind it."""

    method: str
    days: list[Day]
    baseline_days: int
    n: float
    n_prime: float
    cvrmse_adj: float
    t_stat: float
    confidence: float
    uncertainty_kwh: float
    model: dict[str, Any] = field(repr=False)

    @property
    def observed_kwh(self) -> float:
        return sum(d.observed_kwh for d in self.days)

    @property
    def predicted_kwh(self) -> float:
        return sum(d.predicted_kwh for d in self.days)

    @property
    def avoided_kwh(self) -> float:
        return self.predicted_kwh - self.observed_kwh


def metered_savings(*, daily_kwh: Mapping[date, float],
                    temperatures_c: Sequence[tuple[datetime, float]], tz: str,
                    baseline: tuple[date, date], reporting: tuple[date, date],
                    confidence: float = 0.90) -> MeteredResult:
    """Fit on `baseline` days, predict `reporting` days (local dates in `tz`, ends exclusive).

    `daily_kwh`: consumption per local day (missing days are gaps); `temperatures_c`: outdoor
    temperature readings (aware times, °C, any interval: averaged per hour). Raises
    `InsufficientData` with opendsm's reason when a model cannot be fitted or used.
    """
    import pandas as pd

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import opendsm
        from opendsm.common.metrics import ReportingMetrics
        from opendsm.eemeter import DailyBaselineData, DailyModel, DailyReportingData
        from opendsm.eemeter.common.exceptions import DataSufficiencyError, DisqualifiedModelError

    if not temperatures_c:
        raise InsufficientData("no outdoor temperature in the project's periods")
    ts = pd.DatetimeIndex([t for t, _ in temperatures_c]).tz_convert("UTC")
    # Inputs rounded to what was measured (1e-6 °F; 1 Wh a day below): opendsm's choice of
    # model is sensitive to float noise (docs/savings.md, "Rounding"), and rollups add some.
    temp_f = pd.Series([round(c * 9 / 5 + 32, 6) for _, c in temperatures_c], index=ts,
                       dtype="float64")
    temp_f = temp_f.sort_index().resample("1h").mean()  # opendsm reads hourly temperatures

    def meter(period: tuple[date, date]) -> Any:
        days = pd.date_range(period[0], period[1] - timedelta(days=1), freq="D", tz=tz)
        values = [_wh(daily_kwh.get(d.date(), math.nan)) for d in days]
        series = pd.Series(values, index=days, dtype="float64", name="observed")
        if series.isna().all():
            raise InsufficientData(f"no consumption between {period[0]} and {period[1]}")
        return series

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            logging.getLogger("eemeter").setLevel(logging.ERROR)  # its data warnings, per call
            base = DailyBaselineData.from_series(meter(baseline), temp_f, is_electricity_data=True)
            model = DailyModel().fit(base)
            rep = DailyReportingData.from_series(meter(reporting), temp_f, is_electricity_data=True)
            pred = model.predict(rep)
            metrics = ReportingMetrics(baseline_metrics=model.baseline_metrics,
                                       reporting_df=pred, data_frequency="daily",
                                       confidence_level=confidence)
            uncertainty = metrics.total_savings_uncertainty
            t_stat = float(metrics.t_stat)
    except (DataSufficiencyError, DisqualifiedModelError, ValueError) as exc:
        raise InsufficientData(f"{type(exc).__name__}: {exc}") from exc
    days = [Day(day=ix.date(), observed_kwh=float(o), predicted_kwh=float(p))
            for ix, o, p in zip(pred.index, pred["observed"], pred["predicted"], strict=True)
            if math.isfinite(o) and math.isfinite(p)]
    if not days:
        raise InsufficientData("no reporting day has both a consumption and a temperature")
    bm = model.baseline_metrics
    return MeteredResult(
        method=METHOD.format(version=getattr(opendsm, "__version__", "?")),
        days=days, baseline_days=int(bm.n), n=float(bm.n), n_prime=float(bm.n_prime),
        cvrmse_adj=float(bm.cvrmse_adj), t_stat=t_stat, confidence=confidence,
        uncertainty_kwh=float(uncertainty) if uncertainty is not None else math.nan,
        model=json.loads(model.to_json(), parse_constant=lambda _: None))  # NaN: not JSON


def _wh(kwh: float) -> float:
    """kWh rounded to the Wh (a meter's resolution), NaN kept."""
    return round(kwh * 1000) / 1000 if math.isfinite(kwh) else math.nan


def window_uncertainty_kwh(*, predicted_kwh: float, days: int, months: int, n: float,
                           n_prime: float, cvrmse_adj: float, t_stat: float) -> float:
    """ASHRAE Guideline 14 savings uncertainty of `days` reporting days, as opendsm's
    `ReportingMetrics` computes it for daily models (the same formula runs in SQL in
    `maillage.db.savings`; tests compare both to opendsm)."""
    if days <= 0:
        return 0.0
    approx = math.sqrt(n / n_prime * (1 + 2 / n_prime) * days)
    base = abs(predicted_kwh / days * cvrmse_adj) * t_stat * approx
    return (-0.00024 * months**2 + 0.03535 * months + 1.00286) * base
