# -*- coding: utf-8 -*-
"""Whether a process still runs: how temporary files and locks left by killed commands are told
from those of live ones. Imports nothing of ours."""

import os


def pid_alive(pid):
    """True while process ``pid`` of this host runs (another user's counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # another user's process, or not a PID at all
        return True
    return True
