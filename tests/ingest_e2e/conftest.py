"""A real `maillage up` with two gateways on the shared subscription, for the ingest tests."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from ingest_e2e_helpers import IngestStack

from tests.e2e.conftest import start_stack


@pytest.fixture(scope="session")
def stack() -> Iterator[IngestStack]:
    """One `maillage up` with MAILLAGE_GATEWAY_PROCESSES=2 for the ingest tests."""
    root = Path(tempfile.mkdtemp(prefix="maillage-ingest-", dir="/tmp"))
    root.chmod(0o755)
    data_dir = root / "data"
    saved = os.environ.get("MAILLAGE_GATEWAY_PROCESSES")
    os.environ["MAILLAGE_GATEWAY_PROCESSES"] = "2"
    try:
        proc, status = start_stack(data_dir)
    finally:
        if saved is None:
            os.environ.pop("MAILLAGE_GATEWAY_PROCESSES")
        else:
            os.environ["MAILLAGE_GATEWAY_PROCESSES"] = saved
    try:
        yield IngestStack(data_dir, status)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        if not os.environ.get("MAILLAGE_TEST_KEEP"):
            shutil.rmtree(root, ignore_errors=True)
