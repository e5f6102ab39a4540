"""Watching one job from a client: its status line when it changes, its logs as they come.

Shared by the CLI (``submit``, ``logs -f``) and the magics (``--wait``), so a job reads the same
in a terminal and in a notebook.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .client import JobsClient
from .text import status_line

if TYPE_CHECKING:
    from .models.jobs import Job

FINISHED = ("succeeded", "failed", "cancelled", "preempted")


def follow(
    client: JobsClient,
    job_id: str,
    *,
    on_status: Callable[[Job], None],
    on_line: Callable[[str], None],
    poll_seconds: float = 0.5,
) -> Job:
    """Report status changes while the job waits, stream its logs while it runs (each
    attempt), and return the finished job."""
    shown = ""
    streamed = 0
    """The attempt whose logs were streamed."""
    while True:
        job = client.job(job_id)
        line = status_line(job)
        if line != shown:
            on_status(job)
            shown = line
        if job["state"] in FINISHED:
            if job["started"] and streamed != job["attempt"]:
                # it ran and ended between two polls: its output is still to be shown
                for text in client.logs(job_id):
                    on_line(text)
            return job
        if job["state"] == "running":
            for text in client.logs(job_id, follow=True):
                on_line(text)
            streamed = job["attempt"]
            continue
        time.sleep(poll_seconds)
