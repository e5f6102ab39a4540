"""Rank processes on this machine: start them pinned to their devices and CPUs, watch them,
stop them as a group, and find them again after an agent restart.

Each rank runs ``launch/entry.py`` with the environment's Python in a session of its own, so a
stop reaches everything the rank started (its process group) and ranks outlive the agent. The
entry point is copied into the job directory: a rank of another account may not be able to
read where the agent is installed (a Python under /root), but always its own job directory.

Two folders per attempt: the job directory (``jobs/<id>/<attempt>``), which the ranks read
and write (job description, pushed and pulled variables, ready markers, results), and the
log folder (``logs/<id>/<attempt>``), the agent's alone: it opens the log files and hands
them to the ranks, so a rank can write its log but never swap it for another file. When ranks
run as their owner's account (``accounts.py``) the job directory is that account's (0700), so
whatever the agent reads back from it is read as a file the owner could have replaced:
without following links, and only when it is a regular file of theirs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import stat
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path

from ...catalog import Environment
from ...jobs.spec import Job
from ...jobs.store import RankRecord
from ...launch import entry
from ...launch.contract import rank_env, rank_slots, thread_env
from .accounts import Account, RankAccounts

ExitCallback = Callable[[str, int, int, "int | None"], None]
"""Called with (job id, attempt, rank, exit code; None when it cannot be known)."""

ENTRY = Path(entry.__file__)
POLL_SECONDS = 0.5


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


def read_output(job_dir: Path, name: str) -> bytes | None:
    """A file the ranks wrote into ``job_dir``, or None unless it is a regular file of the
    job directory's owner with no other name: never through a link, never a FIFO that would
    block the agent, never another account's file, nor a hard link to one kept elsewhere. Only
    the agent (root) gives a job directory to an account, writable by it alone, so such a file
    was written as the job's owner."""
    try:
        fd = os.open(job_dir / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            return None
        if info.st_uid != os.stat(job_dir).st_uid:
            return None
        return handle.read()


def result_of(job_dir: Path, rank: int) -> dict[str, object] | None:
    """What a rank recorded about its end (entry.py): exit code, traceback, times."""
    data = read_output(job_dir, f"rank-{rank}.result.json")
    try:
        result = json.loads(data) if data is not None else None
    except ValueError:
        return None
    return result if isinstance(result, dict) else None


def exit_code_of(job_dir: Path, rank: int) -> int | None:
    """The exit code a rank recorded itself, for ranks this agent did not start."""
    code = (result_of(job_dir, rank) or {}).get("exit_code")
    return code if isinstance(code, int) else None


def ready_at(job_dir: Path, rank: int) -> float | None:
    """When the rank reported ready (its marker's time), or None when it has not."""
    try:
        return os.lstat(job_dir / f"rank-{rank}.ready").st_mtime
    except OSError:
        return None


class Runner:
    def __init__(
        self, data_dir: Path, on_exit: ExitCallback, accounts: RankAccounts | None = None
    ) -> None:
        self.data_dir = data_dir
        self.on_exit = on_exit
        self.accounts = accounts or RankAccounts()
        self._ranks: dict[tuple[str, int], list[RankRecord]] = {}
        self._watchers: set[asyncio.Task[None]] = set()

    def job_dir(self, job_id: str, attempt: int) -> Path:
        return self.data_dir / "jobs" / job_id / str(attempt)

    def log_path(self, job_id: str, attempt: int, rank: int) -> Path:
        return self.data_dir / "logs" / job_id / str(attempt) / f"rank-{rank}.log"

    def ranks(self, job_id: str, attempt: int) -> list[RankRecord]:
        return list(self._ranks.get((job_id, attempt), []))

    async def start(
        self,
        job: Job,
        environment: Environment,
        *,
        cpus: Sequence[Sequence[int]],
        master_port: int,
        base_env: Mapping[str, str],
        record: Callable[[RankRecord], None],
        push: bytes = b"",
    ) -> list[RankRecord]:
        """Start every rank of ``job``; ``cpus`` are the CPU indices of each node.

        Each rank is recorded (``record``, which writes it to the store) before it runs
        anything: it waits at its gate (``entry.py --gate``, on stdin) until the runner lets it
        through once ``record`` returned, and leaves having run nothing when stdin closes
        first, as when the agent dies. So an agent killed at any instant leaves no running rank
        it did not record. When a rank cannot start, whatever the reason (an environment the OS
        cannot encode, a missing interpreter, an owner without an account), the ranks started
        before it are killed and reaped, and ``RankStartError`` says which rank and why."""
        started: list[tuple[RankRecord, asyncio.subprocess.Process]] = []
        try:
            await self._start_ranks(
                job, environment, cpus, master_port, base_env, record, push, started
            )
        except Exception as error:
            for _, process in started:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)  # a child not reaped: still its pid
            for _, process in started:
                await process.wait()
            if isinstance(error, RankStartError):
                raise
            raise RankStartError("ranks", error) from error
        ranks = []
        for rank, process in started:
            self._watch(rank, process.wait())
            ranks.append(rank)
        self._ranks[(job.id, job.attempt)] = ranks
        return ranks

    async def _start_ranks(
        self,
        job: Job,
        environment: Environment,
        cpus: Sequence[Sequence[int]],
        master_port: int,
        base_env: Mapping[str, str],
        record: Callable[[RankRecord], None],
        push: bytes,
        started: list[tuple[RankRecord, asyncio.subprocess.Process]],
    ) -> None:
        """Start the ranks in order, each recorded then let through its gate; ``started``
        gets every rank process as soon as it exists, for ``start`` to kill on a failure."""
        spec = job.spec
        account = self.accounts.for_owner(job.owner)
        job_dir = self._prepare_job_dir(job, account, push)
        self._prepare_log_folder(job)
        python = environment.python or sys.executable
        # a rank of another account starts in its own job directory and changes to the job's
        # working directory itself (entry.py): the agent never enters a folder for a user
        cwd = str(job_dir) if account is not None else spec.working_dir or str(job_dir)
        for slot in rank_slots(spec.nodes, spec.procs_per_node):
            node_cpus = list(cpus[slot.node_rank]) if cpus else []
            per_rank = max(1, len(node_cpus) // spec.procs_per_node) if node_cpus else 1
            devices = job.devices[slot.node_rank] if job.devices else ()
            env = {
                **self.accounts.base_env(base_env, account),
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
                **(account.env() if account is not None else {}),
            }
            log_path = self.log_path(job.id, job.attempt, slot.rank)
            gate, let_through = os.pipe()
            with log_path.open("ab") as log, _closing(gate), _closing(let_through):
                try:
                    process = await asyncio.create_subprocess_exec(
                        python,
                        str(job_dir / ENTRY.name),
                        "--gate",
                        str(job_dir),
                        env=env,
                        stdin=gate,
                        stdout=log,
                        stderr=asyncio.subprocess.STDOUT,
                        start_new_session=True,
                        cwd=cwd,
                        # the account's ids and groups (none: the agent's), set after the fork
                        user=account.uid if account else None,
                        group=account.gid if account else None,
                        extra_groups=list(account.groups) if account else None,
                    )
                except Exception as error:
                    raise RankStartError(f"rank {slot.rank}", error) from error
                rank = RankRecord(
                    job.id,
                    job.attempt,
                    slot.rank,
                    slot.node_rank,
                    process.pid,
                    process_start_time(process.pid) or 0,
                    str(log_path),
                )
                started.append((rank, process))
                record(rank)
                os.write(let_through, entry.GO)

    def _prepare_job_dir(self, job: Job, account: Account | None, push: bytes) -> Path:
        """A fresh job directory with what the ranks read, handed to their account."""
        job_dir = self.job_dir(job.id, job.attempt)
        if job_dir.exists():  # left by an agent that stopped before starting it: not reused
            shutil.rmtree(job_dir)
        job_dir.mkdir(parents=True)
        spec = job.spec
        if push:
            (job_dir / "push.json").write_bytes(push)
        description = {
            "code": spec.code,
            "script": spec.script,
            "args": list(spec.args),
            "push_file": "push.json" if push else "",
            "pull": list(spec.pull),
            "cpus": [],  # per node: each rank's MLINFRA_CPUS
            "working_dir": spec.working_dir,
        }
        (job_dir / "job.json").write_text(json.dumps(description))
        shutil.copyfile(ENTRY, job_dir / ENTRY.name)
        if account is not None:
            _hand_over(job_dir, account)
        return job_dir

    def _prepare_log_folder(self, job: Job) -> None:
        """``logs/<id>/<attempt>``, private to the agent at every level."""
        attempt = self.log_path(job.id, job.attempt, 0).parent
        for folder in (attempt.parent.parent, attempt.parent, attempt):
            folder.mkdir(mode=0o700, exist_ok=True)

    def adopt(self, ranks: Sequence[RankRecord]) -> None:
        """Watch ranks a previous agent started; they are not our children, so poll them."""
        for rank in ranks:
            self._ranks.setdefault((rank.job_id, rank.attempt), []).append(rank)
            self._watch(rank, self._poll_until_gone(rank))

    async def _poll_until_gone(self, rank: RankRecord) -> int | None:
        while is_alive(rank.pid, rank.start_time):
            await asyncio.sleep(POLL_SECONDS)
        return exit_code_of(self.job_dir(rank.job_id, rank.attempt), rank.rank)

    def _watch(self, rank: RankRecord, exited: Awaitable[int | None]) -> None:
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


class RankStartError(Exception):
    """A rank of a job could not be started; the ranks started before it were stopped."""

    def __init__(self, what: str, cause: Exception) -> None:
        # the cause's text may hold what the OS could not encode: keep it printable and storable
        text = (str(cause) or type(cause).__name__).encode("utf-8", "backslashreplace").decode()
        super().__init__(f"could not start {what}: {text}")


@contextlib.contextmanager
def _closing(fd: int) -> Iterator[None]:
    """Close the file descriptor ``fd`` when done with it, however it ends."""
    try:
        yield
    finally:
        os.close(fd)


def _hand_over(job_dir: Path, account: Account) -> None:
    """Give the job directory and what the agent wrote there to the account the ranks run
    as, private to it: they write their results there, and read their pushed variables. The
    job's folder above it stays the agent's, passable but not listable (0711)."""
    for path in [job_dir, *job_dir.iterdir()]:
        os.chown(path, account.uid, account.gid, follow_symlinks=False)
    job_dir.chmod(0o700)
    job_dir.parent.chmod(0o711)


def _signal_all(ranks: Sequence[RankRecord], signum: signal.Signals) -> None:
    for rank in ranks:
        if is_alive(rank.pid, rank.start_time):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(rank.pid, signum)
