# -*- coding: utf-8 -*-
"""One writer per run folder.

``compare`` and ``tune`` take an exclusive, non-blocking ``flock`` on ``<run folder>/.run.lock``
before they write anything there, and write their PID and command into it. A second command on
the same folder is refused at once with one line naming the holder's PID. The kernel releases the
lock when the holder's file is closed: on a normal exit, on an exception and on a kill (SIGKILL
included), so a lock file left behind never blocks the next run; only a live holder does.

A holder removes the lock file when it releases the lock, so a folder keeps no lock file after a
command that ended normally. To make that safe, a command that takes the lock checks that the
file it locked is still the one under the name (not one a releasing holder just removed) and
otherwise tries again.
"""

import fcntl
import json
import os
import time
from pathlib import Path

from recbole_kgin.errors import UsageError

LOCK_NAME = ".run.lock"


class RunFolderBusy(UsageError):
    """Another live command holds the run folder (one line, exit code 2)."""


class RunLock:
    """A held lock; :meth:`release` (or leaving a ``with`` block) gives it up."""

    def __init__(self, folder, fd):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fd = fd

    @property
    def held(self):
        return self._fd is not None

    def release(self):
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if _same_file(fd, self.path):
                os.unlink(self.path)  # while still holding the lock: see the module docstring
        except OSError:
            pass
        os.close(fd)  # closing the last descriptor of the open file releases the flock

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
        return False


def holder(folder):
    """What the holder wrote (``{"pid", "command", "since"}``), or None when nothing readable."""
    try:
        text = (Path(folder) / LOCK_NAME).read_text(encoding="utf-8")
        data = json.loads(text)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _describe(folder, option):
    info = None
    for _ in range(20):  # the holder writes its PID right after it takes the lock
        info = holder(folder)
        if info and info.get("pid"):
            break
        time.sleep(0.05)
    if not info or not info.get("pid"):
        who = "another command (PID unknown)"
    else:
        who = f"{info.get('command') or 'another command'} (PID {info['pid']}"
        who += f", since {info['since']})" if info.get("since") else ")"
    return (f"run folder {folder} is in use by {who}: wait for it to end, or use another "
            f"{option}")


def _same_file(fd, path):
    try:
        mine, named = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (mine.st_dev, mine.st_ino) == (named.st_dev, named.st_ino)


def _open_locked(folder, option):
    path = folder / LOCK_NAME
    for _ in range(100):
        try:
            fd = os.open(str(path), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as err:
            raise UsageError(f"cannot lock run folder {folder}: {err.strerror} ({path})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunFolderBusy(_describe(folder, option)) from None
        except OSError as err:
            os.close(fd)
            raise UsageError(f"cannot lock run folder {folder}: {err.strerror} ({path})") from None
        if _same_file(fd, path):
            return fd
        os.close(fd)  # its holder removed it while releasing: lock the current file
    raise UsageError(f"cannot lock run folder {folder}: {path} keeps being replaced")


def acquire(folder, command, option="--run"):
    """Lock ``folder`` (which must exist) for ``command``; a :class:`RunLock`, or
    :class:`RunFolderBusy` naming the holder's PID when another process holds it. Nothing in the
    folder changes when the lock is refused."""
    folder = Path(folder)
    fd = _open_locked(folder, option)
    record = {"pid": os.getpid(), "command": command,
              "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(record) + "\n").encode("utf-8"), 0)
    return RunLock(folder, fd)
