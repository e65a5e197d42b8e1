"""Shared fixtures. ``device`` runs a test on the CPU and, when torch sees one, on a CUDA GPU;
without a GPU the CUDA case is reported as skipped (``pytest -rs`` shows why)."""

import pytest
import torch


def cuda_available():
    return torch.cuda.is_available()


@pytest.fixture(params=["cpu", "cuda"])
def device(request):
    if request.param == "cuda" and not cuda_available():
        pytest.skip("no CUDA device")
    return torch.device(request.param)


@pytest.fixture
def cuda_device():
    if not cuda_available():
        pytest.skip("no CUDA device")
    return torch.device("cuda")


# The slow tests (a two-node Ray cluster on loopback, trials sharing a declared GPU) take minutes;
# the default suite leaves them out (reported as deselected) and .ci/run runs them with --run-slow.
def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true",
                     help="also run the tests marked slow (multi-node Ray, shared GPU)")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: minutes long; run with --run-slow (CI does)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]
