"""The machine description recorded beside every benchmark figure."""

import os
import platform


def cpu_name():
    """The CPU's model name (``/proc/cpuinfo``), or what ``platform`` knows."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return cpu


def memory_gb():
    """Total RAM in GB (``/proc/meminfo``), or None."""
    try:
        with open("/proc/meminfo") as f:
            return int(f.readline().split()[1]) / 2**20
    except (OSError, ValueError, IndexError):
        return None


def cpu_count():
    return os.cpu_count()
