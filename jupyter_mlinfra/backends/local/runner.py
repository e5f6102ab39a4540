"""Rank processes on this machine: start them pinned to their devices and CPUs, watch them,
stop them as a group, and find them again after an agent restart.

Each rank runs ``launch/entry.py`` with the environment's Python in a session of its own, so a
stop reaches everything the rank started (its process group) and ranks outlive the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ...catalog import Environment
from ...jobs.spec import Job
from ...launch import entry
from ...launch.contract import rank_env, rank_slots, thread_env

ExitCallback = Callable[[str, int, int, "int | None"], None]
"""Called with (job id, attempt, rank, exit code; None when it cannot be known)."""

ENTRY = Path(entry.__file__)
POLL_SECONDS = 0.5


@dataclass(frozen=True)
class RankProcess:
    job_id: str
    attempt: int
    rank: int
    node: int
    pid: int
    start_time: int
    """Clock ticks since boot when the process started: with the pid, its identity."""
    log_path: Path


def process_start_time(pid: int) -> int | None:
    """The start time of ``pid`` from /proc, or None when no such process lives."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # a zombie has exited already
        return None
    return int(fields[19])


def is_alive(pid: int, start_time: int) -> bool:
    return process_start_time(pid) == start_time


def result_of(job_dir: Path, rank: int) -> int | None:
    """The exit code a rank recorded itself (entry.py), for ranks this agent did not start."""
    try:
        return int(json.loads((job_dir / f"rank-{rank}.result.json").read_text())["exit_code"])
    except (OSError, ValueError, KeyError):
        return None


class Runner:
    def __init__(self, data_dir: Path, on_exit: ExitCallback) -> None:
        self.data_dir = data_dir
        self.on_exit = on_exit
        self._ranks: dict[tuple[str, int], list[RankProcess]] = {}
        self._watchers: set[asyncio.Task[None]] = set()

    def job_dir(self, job_id: str, attempt: int) -> Path:
        return self.data_dir / "jobs" / job_id / str(attempt)

    def ranks(self, job_id: str, attempt: int) -> list[RankProcess]:
        return list(self._ranks.get((job_id, attempt), []))

    async def start(
        self,
        job: Job,
        environment: Environment,
        *,
        cpus: Sequence[Sequence[int]],
        master_port: int,
        base_env: Mapping[str, str],
        push: bytes = b"",
    ) -> list[RankProcess]:
        """Start every rank of ``job``; ``cpus`` are the CPU indices of each node."""
        spec = job.spec
        job_dir = self.job_dir(job.id, job.attempt)
        job_dir.mkdir(parents=True, exist_ok=True)
        if push:
            (job_dir / "push.json").write_bytes(push)
        python = environment.python or sys.executable
        description = {
            "code": spec.code,
            "script": spec.script,
            "args": list(spec.args),
            "push_file": "push.json" if push else "",
            "pull": list(spec.pull),
            "cpus": [],  # per node: MLINFRA_CPUS below
            "working_dir": spec.working_dir,
        }
        (job_dir / "job.json").write_text(json.dumps(description))
        started: list[RankProcess] = []
        for slot in rank_slots(spec.nodes, spec.procs_per_node):
            node_cpus = list(cpus[slot.node_rank]) if cpus else []
            per_rank = max(1, len(node_cpus) // spec.procs_per_node) if node_cpus else 1
            devices = job.devices[slot.node_rank] if job.devices else ()
            env = {
                **base_env,
                **environment.env,
                **spec.env,
                **thread_env(per_rank),
                **rank_env(
                    environment.framework,
                    slot,
                    nodes=spec.nodes,
                    procs_per_node=spec.procs_per_node,
                    master_addr="127.0.0.1",
                    master_port=master_port,
                ),
                "CUDA_VISIBLE_DEVICES": ",".join(map(str, devices)),
                "MLINFRA_CPUS": ",".join(map(str, node_cpus)),
                "PYTHONUNBUFFERED": "1",
                "MLINFRA_JOB_ID": job.id,
                "MLINFRA_ATTEMPT": str(job.attempt),
            }
            log_path = job_dir / f"rank-{slot.rank}.log"
            with log_path.open("ab") as log:
                process = await asyncio.create_subprocess_exec(
                    python,
                    str(ENTRY),
                    str(job_dir),
                    env=env,
                    cwd=spec.working_dir or str(job_dir),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log,
                    stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True,
                )
            rank = RankProcess(
                job.id,
                job.attempt,
                slot.rank,
                slot.node_rank,
                process.pid,
                process_start_time(process.pid) or 0,
                log_path,
            )
            started.append(rank)
            self._watch(rank, process.wait())
        self._ranks[(job.id, job.attempt)] = started
        return started

    def adopt(self, ranks: Sequence[RankProcess]) -> None:
        """Watch ranks a previous agent started; they are not our children, so poll them."""
        for rank in ranks:
            self._ranks.setdefault((rank.job_id, rank.attempt), []).append(rank)
            self._watch(rank, self._poll_until_gone(rank))

    async def _poll_until_gone(self, rank: RankProcess) -> int | None:
        while is_alive(rank.pid, rank.start_time):
            await asyncio.sleep(POLL_SECONDS)
        return result_of(self.job_dir(rank.job_id, rank.attempt), rank.rank)

    def _watch(self, rank: RankProcess, exited: Awaitable[int | None]) -> None:
        async def watch() -> None:
            code = await exited
            if code is not None and code < 0:
                code = 128 - code  # killed by signal N: the shell's 128 + N
            self.on_exit(rank.job_id, rank.attempt, rank.rank, code)

        task = asyncio.ensure_future(watch())
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    async def stop(self, job_id: str, attempt: int, grace: float) -> None:
        """SIGTERM every rank's process group, then SIGKILL what is left after ``grace``."""
        ranks = self.ranks(job_id, attempt)
        _signal_all(ranks, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(is_alive(r.pid, r.start_time) for r in ranks):
            await asyncio.sleep(0.05)
        _signal_all(ranks, signal.SIGKILL)

    def forget(self, job_id: str, attempt: int) -> None:
        self._ranks.pop((job_id, attempt), None)

    async def close(self) -> None:
        """Stop watching (ranks keep running: a restarted agent adopts them)."""
        for task in list(self._watchers):
            task.cancel()
        for task in list(self._watchers):
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _signal_all(ranks: Sequence[RankProcess], signum: signal.Signals) -> None:
    for rank in ranks:
        if is_alive(rank.pid, rank.start_time):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(rank.pid, signum)
