"""Hole 1: a relay (care hub, lighting cabinet) speaks only for the devices registered under it.

On dc046fb `Ingest._relay` re-keyed a hub's message to any registered device of its tenant: the
forged meter index and the other home's panic below were accepted (no rejection), so the
assertions on `relay_not_parent` failed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from maillage.ingest.registry_cache import RegistryCache
from maillage.ingest.validate import Ingest
from tests.reliability.conftest import register

NOW = datetime(2026, 11, 20, 22, tzinfo=UTC)


@pytest.fixture
def ingest(db_url: str, tenant: str) -> Ingest:
    register(db_url, tenant, [
        ("hub-a", "care_hub", {}), ("pendant-a", "care_button", {"hub": "hub-a"}),
        ("hub-b", "care_hub", {}), ("pendant-b", "care_button", {"hub": "hub-b"}),
        ("meter-1", "meter", {}),
        ("cab-1", "lighting_cabinet", {}), ("lamp-1", "streetlight", {"cabinet": "cab-1"}),
        ("lamp-2", "streetlight", {"cabinet": "cab-2"}),
        ("lamp-3", "streetlight", {"cabinet": "cab-1"}),
    ])
    cache = RegistryCache(db_url, listen=False)
    cache.load()
    return Ingest(cache, max_future=timedelta(minutes=5))


def _event(ingest: Ingest, tenant: str, sender: str, sensor: str) -> tuple[str | None, list[str]]:
    doc = {"ts": "2026-11-20T21:59:00Z", "event": "fall_detected", "sensor": sensor}
    out = ingest.convert(f"maillage/{tenant}/{sender}/up/event", orjson.dumps(doc), NOW)
    return (out.rejection.reason if out.rejection else None), [e.device_id for e in out.envelopes]


def test_a_hub_speaks_for_its_own_sensors(ingest: Ingest, tenant: str) -> None:
    """The hub's own pendant: re-keyed to it."""
    assert _event(ingest, tenant, "hub-a", "pendant-a") == (None, ["pendant-a"])


def test_a_hub_cannot_speak_for_another_home_or_a_meter(ingest: Ingest, tenant: str) -> None:
    """Another home's pendant, a meter: refused with their own reason, nothing produced."""
    assert _event(ingest, tenant, "hub-a", "pendant-b") == ("relay_not_parent", [])
    assert _event(ingest, tenant, "hub-a", "meter-1") == ("relay_not_parent", [])


def test_a_cabinet_speaks_only_for_its_lamps(ingest: Ingest, tenant: str) -> None:
    """SenML from a cabinet: its lamp accepted, another cabinet's lamp refuses the whole pack."""
    own = [{"bn": "cab-1/lamp-1/", "bt": NOW.timestamp() - 60, "n": "lamp_on", "v": 1},
           {"bn": "cab-1/lamp-3/", "n": "lamp_on", "v": 1}]
    out = ingest.convert(f"maillage/{tenant}/cab-1/up/senml", orjson.dumps(own), NOW)
    assert out.rejection is None
    assert sorted(e.device_id for e in out.envelopes) == ["lamp-1", "lamp-3"]
    mixed = own + [{"bn": "cab-1/lamp-2/", "n": "lamp_on", "v": 0}]
    out = ingest.convert(f"maillage/{tenant}/cab-1/up/senml", orjson.dumps(mixed), NOW)
    assert out.rejection is not None and out.rejection.reason == "relay_not_parent"
    assert out.envelopes == []
