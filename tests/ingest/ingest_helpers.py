"""Helpers for the parser tests: message contexts and TIC frames built independently."""

from __future__ import annotations

from datetime import UTC, datetime

from maillage.ingest.formats import MessageContext

RECEIVED = datetime(2026, 11, 23, 17, 5, 0, tzinfo=UTC)


def ctx(channel: str, device_type: str | None = None) -> MessageContext:
    """A context for a device `dev-1` of tenant `t1`, received at RECEIVED."""
    return MessageContext("t1", "dev-1", channel, RECEIVED, device_type)


def _check(text: str) -> str:
    # Written apart from the parser on purpose: modulo 64 of the character codes, shifted by 32.
    return chr(sum(ord(c) for c in text) % 64 + 32)


def hist_group(label: str, data: str) -> bytes:
    """A historique group: checksum over `LABEL SP DATA` (the SP before it excluded)."""
    body = f"{label} {data}"
    return f"\n{body} {_check(body)}\r".encode("ascii")


def std_group(label: str, data: str, horodate: str | None = None) -> bytes:
    """A standard group: checksum over everything up to and including the last TAB."""
    body = f"{label}\t{horodate}\t{data}\t" if horodate is not None else f"{label}\t{data}\t"
    return f"\n{body}{_check(body)}\r".encode("ascii")


def frame(groups: list[bytes], stx: bool = True) -> bytes:
    """Groups wrapped in STX ... ETX (or bare)."""
    body = b"".join(groups)
    return b"\x02" + body + b"\x03" if stx else body
