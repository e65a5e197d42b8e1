# -*- coding: utf-8 -*-
"""The parts of Ray Tune's API whose names moved between Ray versions, in one place.

Ray 2.41 gave Tune its own entry points: ``ray.tune.report``, ``ray.tune.get_context()`` (with
``get_trial_dir()``), ``ray.tune.RunConfig`` and ``ray.tune.FailureConfig``; the older
``ray.air.session`` / ``ray.air.RunConfig`` names warn on current Ray and are on their way out. This
module uses the current names when Ray has them and falls back to ``ray.air`` (Ray 2.6 to 2.40)
otherwise. Everything else the search uses (``Tuner``, ``TuneConfig``, schedulers, searchers,
``Callback``) kept its name and is imported from ``ray.tune`` directly.

Ray is imported lazily: importing this module does not import Ray.
"""


def has_current_api():
    """True when Ray Tune has the Ray >= 2.41 entry points (``ray.tune.get_context`` marks them:
    Ray <= 2.6 had an unrelated legacy ``ray.tune.report``, but never ``get_context``)."""
    from ray import tune

    return hasattr(tune, "get_context")


def report(metrics):
    """Report one result dict from inside a function trainable."""
    if has_current_api():
        from ray import tune

        tune.report(dict(metrics))
    else:
        from ray.air import session

        session.report(dict(metrics))


def trial_dir():
    """The running trial's own directory (inside a function trainable)."""
    if has_current_api():
        from ray import tune

        return tune.get_context().get_trial_dir()
    from ray.air import session

    return session.get_trial_dir()


def run_config(*, max_failures, **kwargs):
    """``RunConfig(failure_config=FailureConfig(max_failures=...), **kwargs)`` for the running Ray."""
    if has_current_api():
        from ray.tune import FailureConfig, RunConfig
    else:
        from ray.air import FailureConfig, RunConfig
    return RunConfig(failure_config=FailureConfig(max_failures=max_failures), **kwargs)
