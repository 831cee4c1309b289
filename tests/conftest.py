"""Shared test settings: no display, reproducible hypothesis runs, few threads."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import pytest
import torch
from hypothesis import settings

# Derandomised: a failure found once is found on every run and on every machine.
settings.register_profile("course", derandomize=True, deadline=None, max_examples=60)
settings.load_profile("course")


@pytest.fixture
def one_torch_thread():
    """Tiny models are many small ops: on a shared 2-core machine one torch thread ran them ~9x faster
    than two. Modules that evaluate models use it for every test (``pytestmark``)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def quick_checkpoints(tmp_path_factory):
    """The explorable experiments (long_range, streaming) trained once per session through the CLI's
    --quick path (a few steps per model, evaluated in full), with one torch thread. Tests that use it
    read this folder and never write to it."""
    from globattn_lite import experiments as E

    out = tmp_path_factory.mktemp("quick_checkpoints")
    before = torch.get_num_threads()
    for name in ("long_range", "streaming"):
        E.main([name, "--quick", "--out", str(out), "--threads", "1"])
    torch.set_num_threads(before)
    return out
