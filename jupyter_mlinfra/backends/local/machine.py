"""Detect this machine: usable CPUs, memory (cgroup limits included) and GPUs.

GPUs come from ``nvidia-smi``, restricted to ``CUDA_VISIBLE_DEVICES`` when it is set, so a
server started on a subset of a shared machine only offers that subset.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
from collections.abc import Mapping
from pathlib import Path

from ...capacity import Device, Machine

NVIDIA_GPU = "nvidia.com/gpu"
_QUERY = "--query-gpu=index,uuid,name,memory.total"


def detect_machine(environ: Mapping[str, str] | None = None) -> Machine:
    environ = os.environ if environ is None else environ
    return Machine(
        hostname=socket.gethostname(),
        cpus=len(os.sched_getaffinity(0)),
        memory_bytes=_memory_bytes(),
        devices=tuple(_nvidia_devices(environ)),
    )


def detect_frameworks() -> set[str]:
    """Frameworks importable by this server's Python, without importing them (that is slow)."""
    modules = {"pytorch": "torch", "tensorflow": "tensorflow", "jax": "jax"}
    return {name for name, module in modules.items() if importlib.util.find_spec(module)}


def _memory_bytes() -> int:
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        return physical
    return min(physical, int(limit)) if limit.isdigit() else physical


def _nvidia_devices(environ: Mapping[str, str]) -> list[Device]:
    smi = shutil.which("nvidia-smi", path=environ.get("PATH"))
    if smi is None:
        return []
    try:
        result = subprocess.run(
            [smi, _QUERY, "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=10, check=True,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return []
    return parse_nvidia_smi(result.stdout, environ.get("CUDA_VISIBLE_DEVICES"))


def parse_nvidia_smi(output: str, visible: str | None) -> list[Device]:
    """Devices from ``nvidia-smi --query-gpu=index,uuid,name,memory.total`` (MiB, CSV).

    ``visible`` follows CUDA's rules: indices or UUIDs, in order, renumbered from 0, and an
    empty value hides every device.
    """
    rows = []
    for line in output.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 4 or not parts[0].isdigit():
            continue
        index, uuid, name, memory = parts
        mib = int(memory) if memory.isdigit() else 0
        rows.append((int(index), uuid, name.removeprefix("NVIDIA ").strip(), mib * 2**20))
    if visible is not None:
        wanted = [v.strip() for v in visible.split(",") if v.strip()]
        chosen = []
        for token in wanted:
            match = [r for r in rows if str(r[0]) == token or r[1] == token]
            if not match:
                break  # CUDA ignores everything from the first invalid entry on
            chosen.append(match[0])
        rows = chosen
    return [
        Device(index=i, kind=NVIDIA_GPU, model=name, memory_bytes=mem)
        for i, (_, _, name, mem) in enumerate(rows)
    ]
