"""A real `maillage up` with two gateways on the shared subscription, for the ingest tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.conftest import running_stack
from tests.ingest_e2e.ingest_e2e_helpers import IngestStack


@pytest.fixture(scope="package")  # stopped once the tests of the folder ran
def stack() -> Iterator[IngestStack]:
    """One `maillage up` with MAILLAGE_GATEWAY_PROCESSES=2 for the ingest tests."""
    with running_stack("maillage-ingest-", env_extra={"MAILLAGE_GATEWAY_PROCESSES": "2"}) as (data_dir, status):
        yield IngestStack(data_dir, status)
