"""The simulated lamp controller's command parsing and levels (pure model, no I/O)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest

from maillage.simulators.scenario import LightingPolicy
from maillage.simulators.streetlights import CommandError, LampModel, Schedule, parse_command
from maillage.simulators.territory import Lamp

NIGHT = datetime(2026, 12, 6, 22, 30, tzinfo=UTC)  # dark in Rennes
NOON = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def _lamp() -> LampModel:
    lamp = Lamp(device_id="l1", commune=0, cabinet="c1", street="s1", lat=48.1, lon=-1.7,
                tech="LED", nominal_w=50.0, installed_at=datetime(2024, 1, 1, tzinfo=UTC))
    sched = Schedule(48.1, -1.7, LightingPolicy(), ZoneInfo("Europe/Paris"), 0)
    return LampModel(lamp, sched, street=None, interval_s=60, injections=[], rng=random.Random(1))


@pytest.mark.parametrize(("doc", "at_night", "at_noon"), [
    ({"cmd": "dim", "level": 40}, 40.0, 0.0),
    ({"cmd": "on"}, 100.0, 100.0),
    ({"cmd": "off"}, 0.0, 0.0),
    ({"cmd": "auto"}, 100.0, 0.0),
    ({"cmd": "schedule", "steps": [{"at": "06:00", "level": 80}, {"at": "23:00", "level": 30}]},
     30.0, 0.0),
])
def test_levels_after_a_command(doc: dict[str, object], at_night: float, at_noon: float) -> None:
    """What a lamp shows at night (23:30 Paris) and at noon after each command."""
    lamp = _lamp()
    lamp.command(parse_command(doc, NIGHT), NIGHT)
    assert lamp.state(NIGHT)[0] == at_night
    assert lamp.state(NOON)[0] == at_noon


def test_a_schedule_wraps_past_midnight() -> None:
    """Before the first step of the day, the last step of the previous day holds."""
    order = parse_command({"cmd": "schedule", "steps": [{"at": "23:00", "level": 30},
                                                        {"at": "06:00", "level": 80}]}, NIGHT)
    assert order is not None
    assert order.level_at(time(2, 0)) == 30.0
    assert order.level_at(time(7, 0)) == 80.0
    assert order.level_at(time(23, 30)) == 30.0


@pytest.mark.parametrize("doc", [{"cmd": "schedule"}, {"cmd": "schedule", "steps": []},
                                 {"cmd": "schedule", "steps": [{"at": "25:00", "level": 1}]},
                                 {"cmd": "schedule", "steps": [{"at": "10:00", "level": 101}]},
                                 {"cmd": "dim"}, {"cmd": "blink"}])
def test_bad_commands_are_refused(doc: dict[str, object]) -> None:
    with pytest.raises(CommandError):
        parse_command(doc, NIGHT)
