"""`lightning-adapt compare`: several methods on one task and model, on one timeline.

settings (each run's settings, from the modules' own) · plan (the runs, sweeps, searches) · config (`Compare`,
checked) · measured (what a run measured, in memory) · launch (one run) · console (what it prints) · run
(`run_compare`, `dry_run`) · command (the command line)."""

from lightning_adapt.compare.config import Compare
from lightning_adapt.compare.run import run_compare

__all__ = ["Compare", "run_compare"]
