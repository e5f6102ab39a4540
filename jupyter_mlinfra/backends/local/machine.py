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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ...capacity import Device, Machine
from ...errors import CatalogError
from ...quantities import parse_memory

NVIDIA_GPU = "nvidia.com/gpu"
_QUERY = "--query-gpu=index,uuid,name,memory.total"


def detect_machine(
    environ: Mapping[str, str] | None = None, inventory: Sequence[Mapping[str, Any]] = ()
) -> Machine:
    """This machine; ``inventory`` (the admin's list of accelerators) replaces GPU detection."""
    environ = os.environ if environ is None else environ
    devices = parse_inventory(inventory) if inventory else _nvidia_devices(environ)
    return Machine(
        hostname=socket.gethostname(),
        cpus=len(os.sched_getaffinity(0)),
        memory_bytes=_memory_bytes(),
        devices=tuple(devices),
    )


def parse_inventory(inventory: Sequence[Mapping[str, Any]]) -> list[Device]:
    """Devices from ``local_accelerators``: each ``{index, kind, model, memory}``; one precise
    error per problem, as for the catalog."""
    problems, devices, seen = [], [], set()
    for position, entry in enumerate(inventory):
        where = f"local_accelerators[{position}]"
        if not isinstance(entry, Mapping):
            problems.append(f"{where}: must be a mapping with index, kind, model")
            continue
        unknown = sorted(set(entry) - {"index", "kind", "model", "memory"})
        if unknown:
            problems.append(
                f"{where}: unknown field {unknown[0]!r}; known: index, kind, model, memory"
            )
        index = entry.get("index", position)
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            problems.append(f"{where}.index: must be a whole number >= 0, got {index!r}")
            continue
        if index in seen:
            problems.append(f"{where}.index: device {index} is listed twice")
        seen.add(index)
        kind, model = entry.get("kind", NVIDIA_GPU), entry.get("model", "")
        if not isinstance(kind, str) or not kind or not isinstance(model, str):
            problems.append(f"{where}: kind and model must be strings (kind not empty)")
            continue
        try:
            memory = parse_memory(entry.get("memory", 0))
        except ValueError as error:
            problems.append(f"{where}.memory: {error}")
            continue
        devices.append(Device(index=index, kind=kind, model=model, memory_bytes=memory))
    if problems:
        raise CatalogError(problems)
    return sorted(devices, key=lambda d: d.index)


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
