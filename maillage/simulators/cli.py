"""Kept for `maillage/cli/main.py` only: `maillage simulate` moved to `maillage.cli.simulate`.

The command is an entry point (floor 6); this module made simulators/ import cli/. The integrator
imports `maillage.cli.simulate` in cli/main.py and deletes this shim.
"""

from maillage.cli.simulate import simulate
from maillage.simulators.scenario import build_scenario, parse_start

__all__ = ["build_scenario", "parse_start", "simulate"]
