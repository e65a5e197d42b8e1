# -*- coding: utf-8 -*-
"""Third-party notices that say nothing to our user, silenced in one place.

* RecBole 1.2.1's pandas ``FutureWarning`` (``feat[field].fillna(..., inplace=True)``, a chained
  assignment that pandas 3 will reject; RecBole's result is right today);
* RecBole's and torch's beta notice for sparse CSR tensors;
* Ray's token-authentication notices when it starts a local cluster.

``RECBOLE_KGIN_WARNINGS=1`` shows them all again. The command line installs this; so does every
Ray trial (a process of its own).
"""

import logging
import os
import warnings

SWITCH = "RECBOLE_KGIN_WARNINGS"
RAY_LOGGERS = ("ray._private.authentication.authentication_token_setup",)


def wanted():
    return os.environ.get(SWITCH, "").strip().lower() in ("1", "true", "yes", "on")


def install():
    """Idempotent; does nothing when the switch asks for the warnings."""
    if wanted():
        return
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"recbole\.")
    warnings.filterwarnings("ignore", message=r".*chained assignment using an inplace method")
    warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
    for name in RAY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def worker_env():
    """Environment for Ray workers: Python's own warning filter, set before any import."""
    if wanted():
        return {SWITCH: "1"}
    return {"PYTHONWARNINGS": "ignore::DeprecationWarning,ignore::FutureWarning"}
