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
