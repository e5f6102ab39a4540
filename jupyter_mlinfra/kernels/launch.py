"""What a flavor kernel's process gets: its environment variables and its pinned command.

Pure. The variables are the ones a job's rank gets for the same resources (``contract.py``'s
thread variables, ``CUDA_VISIBLE_DEVICES``, ``MLINFRA_CPUS``), so code behaves the same in a
notebook and in a job.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from ..capacity import Lease
from ..catalog import Environment
from ..launch.contract import thread_env

PIN = Path(__file__).resolve().parent.parent / "launch" / "pin.py"


def kernel_env(lease: Lease, environment: Environment) -> dict[str, str]:
    """Variables added to the kernel's environment; they win over the environment's own."""
    threads = len(lease.cpus) or max(1, math.floor(lease.cpu))
    return {
        **environment.env,
        **thread_env(threads),
        "CUDA_VISIBLE_DEVICES": ",".join(map(str, lease.devices)),
        "MLINFRA_CPUS": ",".join(map(str, lease.cpus)),
        "MLINFRA_FLAVOR": lease.flavor,
        "MLINFRA_ENVIRONMENT": lease.environment,
        "MLINFRA_KERNEL_ID": lease.kernel_id,
    }


def pinned_command(python: str, cpus: Sequence[int], command: Sequence[str]) -> list[str]:
    """``command``, started through ``pin.py`` so that it runs on ``cpus`` only; unchanged
    when there are none to pin to. ``-I -S``: pin.py needs no site-packages, and starts
    faster without them."""
    if not cpus:
        return list(command)
    return [python, "-I", "-S", str(PIN), ",".join(map(str, cpus)), "--", *command]
