"""Starting a job's ranks, when it goes wrong: a rank that cannot start fails its job alone, and
an agent killed at any instant of a gang's start leaves no rank twice and none untracked.

Real agents started as the server starts them, real rank processes, counted in ``/proc``.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jupyter_mlinfra.backends.local.agent_client import ensure_agent
from jupyter_mlinfra.backends.local.runner import is_alive, process_start_time
from jupyter_mlinfra.client import ClientError, JobsClient

from .agents import AgentHome, private_agent
from .test_queue_rules import as_user
from .test_restarts import CPUS, WAIT_FOR_RELEASE, kill_agent_hard, wait_state, write_config

SETTINGS: dict[str, Any] = {
    "local_accelerators": [{"index": i, "model": "A100"} for i in range(2)],
    "flavors": [
        {"name": "cpu", "cpu": CPUS, "memory": "256Mi"},  # holds the whole machine
        # each process of a gang holds the flavor's share of a CPU: 100 of them take 1 CPU
        {"name": "tiny", "cpu": "10m", "memory": "64Mi"},
        {"name": "gpu", "accelerator": {"kind": "nvidia.com/gpu"}, "cpu": 0.25, "memory": "64Mi"},
        {
            "name": "gpu2",
            "accelerator": {"kind": "nvidia.com/gpu", "count": 2},
            "cpu": 0.25,
            "memory": "64Mi",
        },
    ],
    "environments": [
        {"name": "python", "framework": "generic"},
        # a value no process can be given: the OS takes environments as C strings
        {"name": "broken", "framework": "generic", "env": {"BROKEN": "a\0b"}},
    ],
    "default_flavor": "tiny",
}


@pytest.fixture
def home() -> Iterator[AgentHome]:
    """A private agent home; its agent and every rank it started are stopped afterwards."""
    with private_agent("mlg-") as home:
        yield home


@pytest.fixture
def agent(tmp_path: Path, home: AgentHome, monkeypatch: pytest.MonkeyPatch) -> AgentHome:
    """``home``'s agent, started as a server starts it, configured by ``SETTINGS``."""
    config = write_config(tmp_path / "config", home, **SETTINGS)
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(config))
    ensure_agent(home.socket, str(home.data_dir), 0)
    return home


def states(home: AgentHome) -> dict[str, str]:
    """Every job's state, as the store has it."""
    with contextlib.closing(sqlite3.connect(home.data_dir / "jobs.sqlite")) as db:
        return dict(db.execute("SELECT id, state FROM jobs").fetchall())


# --- a rank that cannot start -----------------------------------------------------------------


def test_a_rank_that_cannot_start_fails_its_job_alone(tmp_path: Path, agent: AgentHome) -> None:
    release = tmp_path / "release"
    holder = as_user(agent, "carol")
    held = holder.submit(
        {"code": WAIT_FOR_RELEASE, "flavor": "cpu", "env": {"RELEASE": str(release)}}
    )
    wait_state(holder, held["id"], "running")
    # while the machine is held, bob's unstartable jobs queue ahead of alice's: once it is
    # free, one scheduling pass admits them all
    bob, alice = as_user(agent, "bob"), as_user(agent, "alice")
    broken = [bob.submit({"code": "pass", "flavor": "gpu", "environment": "broken"})]
    with contextlib.suppress(ClientError):  # refused at once is as good, if the API does
        broken.append(bob.submit({"code": "pass", "working_dir": "/tmp/a\0b"}))
    fine = alice.submit({"code": "print('alice ran')", "flavor": "gpu"})
    release.touch()

    done = wait_state(alice, fine["id"], "succeeded", "failed")
    assert done["state"] == "succeeded", done
    assert "".join(alice.logs(fine["id"])) == "alice ran\n"
    for job in broken:
        failed = wait_state(bob, job["id"], "failed", "succeeded")
        assert failed["state"] == "failed", failed
        assert failed["reason"] == "could not start rank 0: embedded null byte", failed
    # its device is free again: a job that needs both GPUs runs
    both = alice.submit({"code": "pass", "flavor": "gpu2"})
    assert wait_state(alice, both["id"], "succeeded", "failed")["state"] == "succeeded"

    # and an agent restart finds no job admitted, holding devices, nor starts one twice
    kill_agent_hard(agent)
    ensure_agent(agent.socket, str(agent.data_dir), 0)
    after = states(agent)
    assert "admitted" not in after.values(), after
    assert [after[job["id"]] for job in broken] == ["failed"] * len(broken)
    assert agent.live_ranks() == []


# --- an agent killed while it starts a gang ------------------------------------------------------

RANKS = 100
KILLS = int(os.environ.get("MLINFRA_GANG_KILLS", "10"))
"""Agent deaths during the start of one gang; a stress run sets more (README: Development)."""

HOLD = "import time\ntime.sleep(3600)\n"


def rank_processes(job_id: str) -> dict[int, list[int]]:
    """The live processes of each rank of ``job_id``, found by what the runner puts in every
    rank's environment; zombies (exited, not reaped yet) are not counted."""
    marker = f"MLINFRA_JOB_ID={job_id}".encode()
    found: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            environment = Path(entry.path, "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker in environment and process_start_time(int(entry.name)) is not None:
            rank = next(v[5:] for v in environment if v.startswith(b"RANK="))
            found.setdefault(int(rank), []).append(int(entry.name))
    return found


class Census:
    """Counts the job's rank processes over and over, in a thread, from submission to the end;
    notes every moment a rank existed twice."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.twice: list[dict[int, list[int]]] = []
        self.counts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            seen = rank_processes(self.job_id)
            self.counts += 1
            doubled = {rank: pids for rank, pids in seen.items() if len(pids) > 1}
            if doubled:
                self.twice.append(doubled)
            time.sleep(0.02)

    def __enter__(self) -> Census:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def state_of(home: AgentHome, job_id: str) -> str:
    with contextlib.closing(sqlite3.connect(home.data_dir / "jobs.sqlite", timeout=10)) as db:
        (state,) = db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return str(state)


class Killer:
    """SIGKILLs the agent at random instants of a gang's start: a random time after the job
    is admitted, within a window that follows how long starts take (wider after a kill that
    came while the ranks were being started, narrower after one that came too late)."""

    def __init__(self, home: AgentHome, client: JobsClient, job_id: str, seed: int) -> None:
        self.home, self.client, self.job_id = home, client, job_id
        self.rng = random.Random(seed)
        self.window = 1.0
        self.states: list[str] = []

    def kill_during_start(self) -> None:
        """One kill, then a new agent, as the next request of a user would start one."""
        status = self.home.status()
        assert status is not None
        if state_of(self.home, self.job_id) in ("starting", "running"):
            # the last kill came once every rank had started (adopted since): start anew
            self.client.cancel(self.job_id)
            self.client.retry(self.job_id)
        deadline = time.monotonic() + 120
        while (state := state_of(self.home, self.job_id)) != "admitted":
            assert time.monotonic() < deadline, f"the gang was never admitted again: {state}"
            time.sleep(0.002)
        time.sleep(self.rng.uniform(0, self.window))
        kill_agent_hard(self.home, int(status["pid"]))
        state = state_of(self.home, self.job_id)
        self.window *= 1.25 if state == "admitted" else 0.6
        self.states.append(state)
        ensure_agent(self.home.socket, str(self.home.data_dir), 0)


def test_a_gang_cancelled_while_its_ranks_start_ends_with_none_left(agent: AgentHome) -> None:
    client = as_user(agent, "ada")
    job = client.submit({"code": HOLD, "procs_per_node": RANKS, "name": "gang"})
    deadline = time.monotonic() + 120
    while state_of(agent, job["id"]) != "admitted" or len(rank_processes(job["id"])) < 5:
        assert time.monotonic() < deadline, "the gang's start never began"
        time.sleep(0.005)
    cancelled = client.cancel(job["id"])  # answered once the start ended and its ranks did
    assert (cancelled["state"], cancelled["reason"]) == ("cancelled", "cancelled"), cancelled
    assert rank_processes(job["id"]) == {}  # nor does the start go on after the answer
    assert state_of(agent, job["id"]) == "cancelled"


def test_an_agent_killed_while_starting_a_gang_leaves_each_rank_once(
    agent: AgentHome,
) -> None:
    client = as_user(agent, "ada")
    job = client.submit({"code": HOLD, "procs_per_node": RANKS, "name": "gang"})
    seed = int(os.environ.get("MLINFRA_GANG_SEED") or time.time_ns())
    killer = Killer(agent, client, job["id"], seed)
    with Census(job["id"]) as census:
        for _ in range(KILLS):
            killer.kill_during_start()
        running = wait_state(client, job["id"], "running", timeout=120)
        alive = rank_processes(job["id"])
        assert sorted(alive) == list(range(RANKS))
        assert all(len(pids) == 1 for pids in alive.values()), alive
        # every rank that runs is the one the store records for the attempt
        with contextlib.closing(sqlite3.connect(agent.data_dir / "jobs.sqlite")) as db:
            rows = db.execute(
                "SELECT rank, pid, start_time FROM ranks WHERE job_id = ? AND attempt = ?",
                (job["id"], running["attempt"]),
            ).fetchall()
        assert {rank: [pid] for rank, pid, _ in rows} == alive
        assert all(is_alive(pid, started) for _, pid, started in rows)
        cancelled = client.cancel(job["id"])
        assert cancelled["state"] == "cancelled"
        assert rank_processes(job["id"]) == {}  # nothing left untracked
    assert census.twice == [], f"ranks that ran twice: {census.twice[:3]}"
    assert census.counts > KILLS  # it did look, throughout
    print(  # the stress run's figures (pytest -s)
        f"seed {seed}: {KILLS} kills of the agent while starting {RANKS} ranks (the job "
        f"then: {json.dumps({s: killer.states.count(s) for s in set(killer.states)})}); "
        f"{census.counts} censuses, none with a rank twice; 0 left after cancel"
    )
