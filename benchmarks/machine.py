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


def describe(device="cpu"):
    """One line: CPU, cores, RAM, Python, torch and its threads, and the GPU when ``device`` is
    cuda."""
    import torch

    gb = memory_gb()
    mem = "" if gb is None else f", {gb:.0f} GB RAM"
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else "no GPU used"
    return (f"{cpu_name()}, {cpu_count()} cores{mem}, Python {platform.python_version()}, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads), {gpu}")
