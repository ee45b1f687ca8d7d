import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings

# hypothesis: the same examples on every run by default, so `make test` and CI
# are deterministic; `HYPOTHESIS_PROFILE=explore` draws new random examples,
# ten times as many, and keeps failing ones in .hypothesis/ to replay them.
settings.register_profile(
    "deterministic",
    derandomize=True,
    database=None,
    deadline=None,  # timing-dependent checks would make a run depend on load
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile(
    "explore",
    derandomize=False,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "deterministic")
settings.load_profile(PROFILE)
EXPLORE_FACTOR = 10


def pytest_report_header(config):
    return f"hypothesis profile: {PROFILE}"


def pytest_collection_modifyitems(config, items):
    # Tests set their own max_examples (their cost in the default run), which
    # would override the profile's; exploring multiplies each one's.
    if PROFILE != "explore":
        return
    for item in items:
        test = getattr(item, "obj", None)
        own = getattr(test, "_hypothesis_internal_use_settings", None)
        if own is None or getattr(test, "_explore_scaled", False):
            continue
        test._hypothesis_internal_use_settings = settings(
            own, max_examples=own.max_examples * EXPLORE_FACTOR
        )
        test._explore_scaled = True


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    # Two cores, shared: one torch thread is faster than two on these machines.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
