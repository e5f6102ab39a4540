"""Processes of an interrupted gang start: what an agent that died while starting a job's ranks
may have left behind, found again and killed before the job is queued again.

A rank runs nothing before the agent recorded it (``entry.py --gate``), so what a dead agent
started is, at worst, ranks it recorded (by pid and start time) and ranks that never passed
their gate and are leaving by themselves. Both carry the attempt in their environment
(``MLINFRA_JOB_ID``, ``MLINFRA_ATTEMPT``), as does anything a recorded rank started since: the
agent looks for that marker in ``/proc`` as well as at its records, so nothing of the attempt
still runs when it is started again.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterable
from pathlib import Path

from ...jobs.store import RankRecord
from .runner import is_alive, process_start_time


def marked(job_id: str, attempt: int) -> list[tuple[int, int]]:
    """(pid, start time) of every live process whose environment marks it as one of this
    attempt's (its ranks and what they started). Processes the agent may not inspect (another
    account's, when it does not run as root) are not its ranks' and are skipped."""
    wanted = {f"MLINFRA_JOB_ID={job_id}".encode(), f"MLINFRA_ATTEMPT={attempt}".encode()}
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environment = Path(entry.path, "environ").read_bytes()
        except OSError:
            continue
        if wanted <= set(environment.split(b"\0")):
            started = process_start_time(int(entry.name))
            if started is not None:
                found.append((int(entry.name), started))
    return found


def left_behind(job_id: str, attempt: int, records: Iterable[RankRecord]) -> list[tuple[int, int]]:
    """Every process still alive of an attempt whose start was interrupted: its recorded ranks
    and whatever carries its marker."""
    alive = {(r.pid, r.start_time) for r in records if is_alive(r.pid, r.start_time)}
    return sorted(alive | set(marked(job_id, attempt)))


def kill(processes: Iterable[tuple[int, int]]) -> None:
    """SIGKILL each process that is still the one named (pid and start time), with its process
    group when it leads one (a rank: everything it started that kept the group)."""
    for pid, started in processes:
        if not is_alive(pid, started):
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
