"""Shared test settings: no display, reproducible hypothesis runs, few threads."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

from hypothesis import settings  # noqa: E402

# Derandomised: a failure found once is found on every run and on every machine.
settings.register_profile("course", derandomize=True, deadline=None, max_examples=60)
settings.load_profile("course")
