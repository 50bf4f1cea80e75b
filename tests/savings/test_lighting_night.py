"""One lamp-night by hand: which cause each interval gets, and what is left to `other`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from maillage.processors.savings.lighting import Interval, LampInfo, intervals, lamp_night

DUSK = datetime(2026, 1, 14, 17, 0, tzinfo=UTC)
DAWN = DUSK + timedelta(hours=14)
STEP = timedelta(minutes=10)


def lamp(*, adaptive: bool = False) -> LampInfo:
    """A 36 W LED that replaced a 70 W sodium lamp (78.4 W with its ballast)."""
    return LampInfo(device_id="l1", pk=1, lat=48.1, lon=-1.7, tech="LED", system_w=36.0,
                    reference_w=78.4, replaced_tech="HPS", adaptive=adaptive, depression_deg=3.0,
                    cabinet="c1", site=None, district=None, commune=None)


def night(levels: list[tuple[float, float]], start: datetime = DUSK) -> list[Interval]:
    """Intervals of STEP from `start`, (level %, power W) reported at each end."""
    out, t = [], start
    for level, power in levels:
        out.append(Interval(t, t + STEP, power * STEP.total_seconds() / 3600, power, level))
        t += STEP
    return out


FULL, DIM, OFF = (100.0, 36.0), (50.0, 19.44), (0.0, 0.0)


@pytest.mark.parametrize(("adaptive", "cause"), [(False, "switch_off"), (True, "presence")])
def test_mid_night_switch_off(adaptive: bool, cause: str) -> None:
    """Off between two lit stretches is a switch-off (presence on a presence-driven street)."""
    n = 14 * 6
    ivs = night([FULL] * 36 + [OFF] * 30 + [FULL] * (n - 66))
    r = lamp_night(lamp(adaptive=adaptive), ivs, (DUSK, DAWN))
    assert r["reference_wh"] == pytest.approx(78.4 * 14)
    assert r["led_retrofit"] == pytest.approx((78.4 - 36) * 14)
    assert r[cause] == pytest.approx(36 * 5)
    assert r["dimming"] == 0 and r["other_wh"] == pytest.approx(0, abs=1e-9)


def test_dimming_and_edges() -> None:
    """Dimmed hours are dimming; a lamp lit 10 minutes late is the clock (`other`), one lit
    an hour late was switched off."""
    late = night([OFF] + [FULL] * 40 + [DIM] * 30 + [FULL] * 13)
    r = lamp_night(lamp(), late, (DUSK, DAWN))
    assert r["dimming"] == pytest.approx((36 - 19.44) * 5)
    assert r["switch_off"] == 0
    assert r["other_wh"] == pytest.approx(36 / 6)  # the 10 minutes off at dusk
    later = night([OFF] * 6 + [FULL] * 78)
    assert lamp_night(lamp(), later, (DUSK, DAWN))["switch_off"] == pytest.approx(36)


def test_failures_gaps_and_day_burning_are_no_saving() -> None:
    """Commanded on and drawing nothing, a two-hour gap, burning after dawn: all `other`."""
    failed = night([FULL] * 30 + [(100.0, 0.0)] * 24 + [FULL] * 30)
    assert lamp_night(lamp(), failed, (DUSK, DAWN))["switch_off"] == 0
    gap = night([FULL] * 30) + [Interval(DUSK + 30 * STEP, DUSK + 30 * STEP + timedelta(hours=2),
                                         0.0, 0.0, 0.0)]
    assert lamp_night(lamp(), gap, (DUSK, DAWN))["switch_off"] == 0
    burning = night([FULL] * 90)  # an hour past dawn
    r = lamp_night(lamp(), burning, (DUSK, DAWN))
    assert r["measured_wh"] == pytest.approx(36 * 15)
    assert r["other_wh"] == pytest.approx(-36)
    assert sum(r[k] for k in ("led_retrofit", "dimming", "switch_off", "presence", "other_wh")) \
        == pytest.approx(r["reference_wh"] - r["measured_wh"])


def test_counter_energy_preferred_when_plausible() -> None:
    """The counter's step is the interval's energy; a reset falls back to power x time."""
    t0 = DUSK
    series = [(t0, 36.0, 100.0, 1000.0), (t0 + STEP, 36.0, 100.0, 1006.5),
              (t0 + 2 * STEP, 36.0, 100.0, 3.0)]
    ivs = intervals(series, 36.0)
    assert [iv.energy_wh for iv in ivs] == pytest.approx([6.5, 6.0])
