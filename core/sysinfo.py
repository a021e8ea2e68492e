"""The machine a measurement ran on (benchmarks and evaluation reports record it)."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path
from typing import Any


def machine_info() -> dict[str, Any]:
    """CPU model, core counts, memory, load and library versions."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gb = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    versions: dict[str, str | None] = {}
    for pkg in ("numpy", "torch", "hnswlib", "av", "pillow"):
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    return {"cpu_model": cpu, "cpu_count": os.cpu_count(), "cpus_usable": usable,
            "mem_total_gb": mem_gb, "platform": platform.platform(),
            "python": platform.python_version(), "load_average": load, **versions}
