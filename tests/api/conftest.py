"""The API in process (FastAPI's TestClient) over the session's real, migrated database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from maillage.api.app import create_app


@pytest.fixture(scope="module")
def client(db_url: str) -> Iterator[TestClient]:
    """A client of the API (its lifespan opens the pools on the real database)."""
    with TestClient(create_app(db_url)) as c:
        yield c
