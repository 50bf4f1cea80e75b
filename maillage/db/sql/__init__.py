"""SQL statements kept as `.sql` files beside this module (readable, diffable), loaded by name."""

from __future__ import annotations

from functools import cache
from importlib.resources import files


@cache
def load(name: str) -> str:
    """The text of `<name>.sql` (read once per process)."""
    return files(__name__).joinpath(f"{name}.sql").read_text(encoding="utf-8")
