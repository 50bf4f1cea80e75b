"""The lit-commune stack, shared with tests/commands (see tests/commands/lighting_stack.py)."""

from __future__ import annotations

import pytest

from tests.commands.lighting_stack import LightingWorld, shared_world


@pytest.fixture  # cheap: the world is shared (and stopped once its folders ran)
def lighting(request: pytest.FixtureRequest) -> LightingWorld:
    return shared_world(request)
