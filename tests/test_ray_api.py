"""recbole_kgin.ray_api: the current Ray Tune names when Ray has them, ray.air otherwise."""

import pytest
import ray
from packaging.version import Version

from recbole_kgin import ray_api


def test_current_api_detected_by_version():
    assert ray_api.has_current_api() == (Version(ray.__version__) >= Version("2.41"))


def test_run_config_current_names(tmp_path):
    if not ray_api.has_current_api():
        pytest.skip(f"Ray {ray.__version__} predates ray.tune.RunConfig")
    from ray import tune

    config = ray_api.run_config(max_failures=3, name="exp", storage_path=str(tmp_path))
    assert type(config) is tune.RunConfig and type(config.failure_config) is tune.FailureConfig
    assert config.failure_config.max_failures == 3
    assert (config.name, config.storage_path) == ("exp", str(tmp_path))


def test_run_config_fallback_names(tmp_path, monkeypatch):
    """The fallback builds ray.air's classes (the only ones Ray 2.6 to 2.40 have)."""
    from ray.air import FailureConfig, RunConfig

    monkeypatch.setattr(ray_api, "has_current_api", lambda: False)
    config = ray_api.run_config(max_failures=2, name="exp", storage_path=str(tmp_path))
    assert type(config) is RunConfig and type(config.failure_config) is FailureConfig
    assert config.failure_config.max_failures == 2


def test_importing_does_not_import_ray():
    import subprocess
    import sys

    code = "import sys, recbole_kgin.ray_api; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
