"""Watching one job from a client: its status as one line, and its logs as they come.

Shared by the CLI (``submit``, ``logs -f``) and the magics (``--wait``), so a job reads the same
in a terminal and in a notebook.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .client import JobsClient
from .text import duration, eta_text

WAITING = ("queued", "admitted", "starting")
FINISHED = ("succeeded", "failed", "cancelled", "preempted")


def status_line(job: dict[str, Any], now: float | None = None) -> str:
    """One line a person reads at a glance: state, then why and until when."""
    now = time.time() if now is None else now
    name = job["name"] or job["id"]
    state = job["state"]
    ranks = job["nodes"] * job["procs_per_node"]
    if state == "queued":
        parts = [f"{name}: queued"]
        if job["position"]:
            parts.append(f"position {job['position']}")
        if job["reason"]:
            parts.append(job["reason"])
        if job["eta"] is not None or job["eta_basis"]:
            basis = f" ({job['eta_basis']})" if job["eta_basis"] else ""
            parts.append(f"starts {eta_text(job['eta'], now)}{basis}")
        return " · ".join(parts)
    if state in ("admitted", "starting"):
        return f"{name}: {state} on {job['flavor']}"
    if state == "running":
        return f"{name}: running {ranks} rank{'s' * (ranks != 1)} on {job['flavor']} · " + duration(
            now - (job["started"] or now)
        )
    took = ""
    if job["started"] and job["finished"]:
        took = f" in {duration(job['finished'] - job['started'])}"
    exit_code = f" (exit {job['exit_code']})" if state == "failed" and job["exit_code"] else ""
    reason = f": {job['reason']}" if state != "succeeded" and job["reason"] else ""
    return f"{name}: {state}{took}{exit_code}{reason}"


def follow(
    client: JobsClient,
    job_id: str,
    *,
    on_status: Callable[[dict[str, Any]], None],
    on_line: Callable[[str], None],
    poll_seconds: float = 0.5,
) -> dict[str, Any]:
    """Report status changes while the job waits, stream its logs while it runs (each
    attempt), and return the finished job."""
    shown = ""
    while True:
        job = client.job(job_id)
        line = status_line(job)
        if line != shown:
            on_status(job)
            shown = line
        if job["state"] in FINISHED:
            return job
        if job["state"] == "running":
            for text in client.logs(job_id, follow=True):
                on_line(text)
            continue
        time.sleep(poll_seconds)
