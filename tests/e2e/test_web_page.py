"""The web page, rendered by headless Chromium, lists the token's devices from the live API."""

from __future__ import annotations

import shutil
import subprocess
import tempfile

import pytest

from tests.e2e.conftest import Stack


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("chromium is not installed: `make setup` installs it (Debian package chromium)")
    return found


def test_page_lists_devices_of_the_tenant(stack: Stack) -> None:
    """An energy manager's token shows its meter, never the care sensor of the same tenant."""
    tenant = stack.tenant()
    meter = stack.device(tenant, "meter")
    care = stack.device(tenant, "care_motion")
    token = stack.token(tenant, "energy_manager")
    with tempfile.TemporaryDirectory() as profile:
        out = subprocess.run(
            [_chromium(), "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-quic", "--no-first-run",
             f"--user-data-dir={profile}", "--virtual-time-budget=8000", "--dump-dom",
             f"{stack.api}/#token={token}"],
            capture_output=True, text=True, timeout=90,
        )
    dom = out.stdout
    assert "Équipements" in dom
    assert f'data-id="{meter.device_id}"' in dom
    assert care.device_id not in dom
    assert "1 équipement(s)" in dom
