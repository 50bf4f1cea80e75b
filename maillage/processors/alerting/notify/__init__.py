"""One module per notification channel: `webhook`, `email` (the live stream is the API's)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Outcome:
    """One delivery attempt: whether the receiver took it, and what it said."""

    ok: bool
    detail: str
    retry: bool = True
    """False: retrying cannot help (e.g. a malformed address); given up at once."""
