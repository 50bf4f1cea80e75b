"""The KRaft cluster id handed to Kafka's storage tool is always a well-formed argument."""

from __future__ import annotations

import uuid
from pathlib import Path

from maillage.stack import apache_kafka
from maillage.stack.apache_kafka import new_cluster_id, prepare


def test_an_id_starting_with_a_dash_is_drawn_again() -> None:
    dash = uuid.UUID(bytes=bytes([0xF8]) + bytes(15))  # base64url of 0xF8... starts with '-'
    plain = uuid.UUID(bytes=bytes(16))
    draws = iter([dash, dash, plain])
    cid = new_cluster_id(lambda: next(draws))
    assert cid == "AAAAAAAAAAAAAAAAAAAAAA"
    assert len(cid) == 22


def test_ids_are_22_base64url_characters_never_an_option() -> None:
    for _ in range(2000):
        cid = new_cluster_id()
        assert len(cid) == 22 and not cid.startswith("-")


def test_a_stale_dash_id_is_replaced_and_formatting_succeeds(tmp_path: Path) -> None:
    """A cluster.id left by an old run that began with '-' no longer breaks `format`."""
    (tmp_path / "cluster.id").write_text("-" + "A" * 21 + "\n")
    (node,) = prepare(tmp_path, [(apache_kafka.free_port(), apache_kafka.free_port())])
    assert (node.directory / "data" / "meta.properties").exists()
    kept = (tmp_path / "cluster.id").read_text().strip()
    assert not kept.startswith("-")
    assert f"cluster.id={kept}" in (node.directory / "data" / "meta.properties").read_text()
