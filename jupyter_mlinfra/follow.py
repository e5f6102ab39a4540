"""Watching one job from a client: its status line when it changes, its logs as they come.

Shared by the CLI (``submit``, ``logs -f``) and the magics (``--wait``), so a job reads the same
in a terminal and in a notebook. While the job waits its changes come pushed (``JobWatch``);
while it runs its log streams, and the stream's end says the attempt ended.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .client import JobsClient
from .text import status_line
from .watch import JobWatch

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
    attempt), and return the finished job. ``poll_seconds``: how often the job is asked for
    where its changes are not pushed."""
    shown = ""
    streamed = 0
    """The attempt whose logs were streamed."""
    while True:
        # watched only while nothing else is read: a socket left unread while the log
        # streams would pile up every change the server pushes
        with JobWatch(client, job_id, poll_seconds=poll_seconds) as watch:
            job = watch.job
            while True:
                line = status_line(job)
                if line != shown:
                    on_status(job)
                    shown = line
                if job["state"] in FINISHED:
                    if job["started"] and streamed != job["attempt"]:
                        # it ran and ended unseen: its output is still to be shown
                        for text in client.logs(job_id):
                            on_line(text)
                    return job
                if job["state"] == "running" and streamed != job["attempt"]:
                    break
                job = watch.next() or watch.job  # None only once closed
        for text in client.logs(job_id, follow=True):
            on_line(text)
        streamed = job["attempt"]
