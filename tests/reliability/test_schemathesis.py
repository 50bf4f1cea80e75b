"""schemathesis against a real API process: every operation of `/openapi.json`, with a real token of
each role, answers without a server error and as its schema says.

The schema is read when the test runs, so every route that exists then is fuzzed, whoever added
it. Each operation gets `MAILLAGE_FUZZ_EXAMPLES` generated cases per role (default 6: the whole
file stays under two minutes on a quiet 2-core machine; raise it for a long run). Checks:
`not_a_server_error` (no 5xx) and `response_schema_conformance` (a documented answer matches its
schema). A token the fuzzing revoked itself (`POST /v1/tokens/{id}/revoke` with a small id) is
replaced before the next operation. The live alert stream (declared `text/event-stream`) does not
end, so it is left to `tests/e2e/test_alerts_e2e.py`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.e2e.conftest import Stack

log = logging.getLogger(__name__)

EXAMPLES = int(os.environ.get("MAILLAGE_FUZZ_EXAMPLES", "6"))
ROLES = ("opendata", "care_coordinator", "energy_manager", "admin")

pytestmark = pytest.mark.timeout(600)


class _Adapter(requests.adapters.BaseAdapter):
    """requests' HTTP adapter behind a plain BaseAdapter: schemathesis counts the pooled
    connections of an HTTPAdapter, which the urllib3-future pool of this environment refuses."""

    def __init__(self) -> None:
        super().__init__()
        self._inner = requests.adapters.HTTPAdapter()

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        return self._inner.send(request, **kwargs)

    def close(self) -> None:
        self._inner.close()


def _streams(definition: dict[str, Any]) -> bool:
    return any("text/event-stream" in (r.get("content") or {})
               for r in definition.get("responses", {}).values() if isinstance(r, dict))


def _fuzz(op: Any, call: Callable[[Any], None]) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=op.as_strategy())
    def run(case: Any) -> None:
        call(case)

    run()


@pytest.mark.parametrize("role", ROLES)
def test_no_server_error_and_answers_match_the_schema(up: Stack, role: str) -> None:
    tenant = up.tenant()
    up.device(tenant, "meter")
    up.device(tenant, "care_button")
    token = [up.token(tenant, role)]

    def headers() -> dict[str, str]:
        return {"Authorization": f"Bearer {token[0]}"}

    schema = schemathesis.openapi.from_url(up.api + "/openapi.json")
    session = requests.Session()
    for prefix in ("http://", "https://"):
        session.mount(prefix, _Adapter())
    failures: list[str] = []
    operations = 0

    cases = [0]

    def call(case: Any) -> None:
        cases[0] += 1
        try:
            case.call_and_validate(base_url=up.api, session=session, headers=headers(), timeout=30,
                                   checks=[not_a_server_error, response_schema_conformance])
        except (BaseExceptionGroup, requests.ConnectionError) as exc:  # failed checks; a dropped answer
            failures.append(f"{case.operation.label}: {str(exc)[:1500]}")

    for result in schema.get_all_operations():
        op = result.ok()
        if _streams(op.definition.raw):
            continue
        operations += 1
        _fuzz(op, call)
        if httpx.get(up.api + "/v1/me", headers=headers(), timeout=30).status_code == 401:
            token[0] = up.token(tenant, role)  # the fuzzing revoked it
    assert operations > 20, "the schema lost its operations"
    assert cases[0] >= operations, "fewer cases than operations: generation failed"
    log.warning("%s: %d operations, %d cases, %d failing", role, operations, cases[0], len(failures))
    assert not failures, f"{len(failures)} failing cases for {role}:\n" + "\n".join(failures[:10])
