"""Kept for `maillage/bench/runner.py` only: the dynsec client moved to `maillage.registry.dynsec`.

The integrator points that import at the registry and deletes this module.
"""

from maillage.registry.dynsec import DynsecClient

__all__ = ["DynsecClient"]
