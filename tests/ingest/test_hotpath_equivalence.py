"""The ingest hot path decides and encodes exactly as the reference implementation did.

`data/hotpath_golden.json.gz` holds, for each message of the seeded corpus of `hotpath_corpus`
(realistic payloads re-stamped, and mutated ones), the digest of what the gateway takes from
`Ingest.convert`: the DLQ reason, detail and who it was, or each record's kind, key, Kafka value
bytes and reading count. It was written by `scripts/hotpath_diff.py --golden` from the commit
named in the file, before the fast path existed (pydantic validation of every envelope).
"""

from __future__ import annotations

import gzip
from datetime import timedelta
from pathlib import Path
from typing import Any

import hotpath_corpus as corpus
import orjson
import pytest

from maillage.envelope import Envelope
from maillage.ingest.validate import Ingest

GOLDEN = Path(__file__).parent / "data" / "hotpath_golden.json.gz"


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    return orjson.loads(gzip.decompress(GOLDEN.read_bytes()))


@pytest.fixture(scope="module")
def ingest() -> Ingest:
    return Ingest(corpus.registry(), max_future=timedelta(minutes=5))


def test_outcomes_equal_the_reference(golden: dict[str, Any], ingest: Ingest) -> None:
    """Same accept/reject decision, same reason and detail, same Kafka bytes, message by message."""
    messages = corpus.messages(golden["messages"], golden["seed"])
    differ = []
    for i, ((topic, payload, received), (expected, reason)) in enumerate(
            zip(messages, golden["outcomes"], strict=True)):
        entry = corpus.outcome_entry(ingest.convert(topic, payload, received))
        if corpus.digest(entry) != expected:
            differ.append(f"message {i} {topic} {payload[:200]!r} received {received}: "
                          f"reference {reason}, now {str(entry)[:400]}")
    accepted = sum(1 for _, r in golden["outcomes"] if r == "accepted")
    assert accepted > golden["messages"] // 4  # the corpus exercises both paths
    assert not differ, f"{len(differ)} outcomes differ:\n" + "\n".join(differ[:10])


def test_trusted_envelopes_equal_validated_ones(golden: dict[str, Any], ingest: Ingest) -> None:
    """Every envelope the parsers build unvalidated passes validation unchanged."""
    checked = 0
    for topic, payload, received in corpus.messages(golden["messages"] // 2, golden["seed"]):
        for env in ingest.convert(topic, payload, received).envelopes:
            checked += 1
            again = Envelope(tenant=env.tenant, device_id=env.device_id, kind=env.kind,
                             ts=env.ts, received_at=env.received_at,
                             source_format=env.source_format, seq=env.seq, values=env.values,
                             event=env.event, attrs=env.attrs,
                             unknown_metrics=env.unknown_metrics)
            assert again.to_kafka() == env.to_kafka()
            assert again.key == env.key
    assert checked > 1000
