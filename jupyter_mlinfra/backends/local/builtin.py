"""The zero-config catalog: this machine described as flavors, and the Pythons it has.

A ``cpu`` flavor always; per GPU model, flavors of 1, 2, 4 ... GPUs up to all of them (powers
of two keep gangs aligned so devices never fragment), each with its share of CPUs and memory.
"""

from __future__ import annotations

import re
import sys
from typing import Any

from ...capacity import Machine
from ...quantities import format_memory

GiB = 2**30


def builtin_catalog(machine: Machine, frameworks: set[str]) -> dict[str, Any]:
    return {
        "flavors": [_cpu_flavor(machine), *_gpu_flavors(machine)],
        "environments": _environments(frameworks),
        "default_flavor": "cpu",
        "default_environment": "python",
    }


def _cpu_flavor(machine: Machine) -> dict[str, Any]:
    memory = max(GiB, min(4 * GiB, machine.memory_bytes // 4) // GiB * GiB)
    return {
        "name": "cpu",
        "display_name": f"CPU · 1 core · {format_memory(memory)}",
        "description": f"One CPU core of {machine.hostname}",
        "cpu": 1,
        "memory": memory,
    }


def _gpu_flavors(machine: Machine) -> list[dict[str, Any]]:
    by_model: dict[tuple[str, str], int] = {}
    for device in machine.devices:
        by_model[(device.kind, device.model)] = by_model.get((device.kind, device.model), 0) + 1
    slugs = _slugs([model for _, model in by_model])
    flavors = []
    for (kind, model), total in by_model.items():
        slug = slugs[model]
        counts = sorted({c for c in (1, 2, 4, 8, 16, 32) if c <= total} | {total})
        for count in counts:
            share = count / len(machine.devices)
            cpu = max(1, int(machine.cpus * share))
            memory = max(GiB, int(machine.memory_bytes * share) // GiB * GiB)
            flavors.append({
                "name": f"{slug}x{count}",
                "display_name": f"{count} × {model} · {cpu} CPU · {format_memory(memory)}",
                "description": f"{count} of the {total} {model} GPUs of {machine.hostname}",
                "accelerator": {"kind": kind, "model": model, "count": count},
                "cpu": cpu,
                "memory": memory,
            })  # fmt: skip
    return flavors


def _slugs(models: list[str]) -> dict[str, str]:
    """Short flavor-name stems: the model's first word ("h100"), or all of it where two models
    share a first word ("geforce-rtx-4090" beside "geforce-rtx-3090")."""

    def slug(text: str) -> str:
        return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "gpu"

    short = {model: slug(model.split(" ")[0]) for model in models}
    clashing = {s for s in short.values() if list(short.values()).count(s) > 1}
    return {model: slug(model) if short[model] in clashing else short[model] for model in models}


def _environments(frameworks: set[str]) -> list[dict[str, Any]]:
    python = sys.executable
    environments = [{
        "name": "python",
        "display_name": f"Python {sys.version_info.major}.{sys.version_info.minor}",
        "description": "This server's Python",
        "framework": "generic",
        "python": python,
    }]  # fmt: skip
    names = {"pytorch": "PyTorch", "tensorflow": "TensorFlow", "jax": "JAX"}
    for framework in sorted(frameworks & set(names)):
        environments.append({
            "name": framework,
            "display_name": names[framework],
            "description": f"{names[framework]} installed in this server's Python",
            "framework": framework,
            "python": python,
        })  # fmt: skip
    return environments
