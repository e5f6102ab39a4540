"""The kernels table of ``jupyter mlinfra kernels`` for kernels the CLI test cannot make: one
still starting on a cluster, one restarted after the OOM killer."""

from __future__ import annotations

from typing import Any

from jupyter_mlinfra.text import kernel_rows

NOW = 10_000.0


def kernel(**overrides: Any) -> dict[str, Any]:
    return {
        "id": "k1", "owner": "ada", "flavor": "a100x1", "environment": "pytorch",
        "devices": [], "state": "running", "phase": "ready", "reason": "",
        "last_activity": NOW - 65, "last_exit": None, **overrides,
    }  # fmt: skip


def test_starting_running_and_restarted_kernels() -> None:
    starting = kernel(
        state="starting", phase="pulling", reason='Pulling image "pytorch" (12 s)', devices=[]
    )
    restarted = kernel(
        id="k2", devices=[0, 1], last_exit={"at": NOW - 30, "reason": "OOMKilled: out of memory"}
    )
    _, first, second = kernel_rows({"kernels": [starting, restarted]}, now=NOW)
    assert first == (
        "k1", "ada", "a100x1", "pytorch", "starting: pulling", "-", "-",
        'Pulling image "pytorch" (12 s)',
    )  # fmt: skip
    assert second == (
        "k2", "ada", "a100x1", "pytorch", "running", "0,1", "1m05s",
        "restarted 30s ago after: OOMKilled: out of memory",
    )  # fmt: skip
