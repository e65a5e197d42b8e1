# -*- coding: utf-8 -*-
"""The parts of Ray Tune's API that moved between Ray versions, in one place.

Ray >= 2.10 has ``ray.tune.report``, ``ray.tune.get_context`` and ``ray.tune.RunConfig`` /
``FailureConfig``; older Ray (2.3 to 2.9) only has ``ray.air.session`` and ``ray.air.RunConfig``.
"""

from ray import tune

if hasattr(tune, "get_context") and hasattr(tune, "RunConfig"):
    from ray.tune import FailureConfig, RunConfig

    def report(metrics):
        """Report one result of the running trial."""
        tune.report(dict(metrics))

    def trial_dir():
        """The running trial's directory (Ray's local trial directory)."""
        return tune.get_context().get_trial_dir()

else:  # pragma: no cover - old Ray
    from ray.air import FailureConfig, RunConfig, session

    def report(metrics):
        session.report(dict(metrics))

    def trial_dir():
        return session.get_trial_dir()

__all__ = ["FailureConfig", "RunConfig", "report", "trial_dir"]
