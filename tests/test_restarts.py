"""Jobs survive what happens around them: a Jupyter server restart, an agent killed with
SIGKILL, the agent leaving when idle, and a job outliving its max runtime. Real processes only:
a real ``jupyter lab``, a real agent started the way the server and the CLI start it, real ranks.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from jupyter_mlinfra.backends.local.agent_client import ensure_agent
from jupyter_mlinfra.backends.local.runner import process_start_time
from jupyter_mlinfra.client import Connection, JobsClient

from .agents import AgentHome, private_agent
from .conftest import ME
from .lab_server import running_lab
from .test_cli import clean_env, mlinfra

CPUS = len(os.sched_getaffinity(0))
"""What the agent counts as this machine's CPUs (os.cpu_count() unless pinned to fewer)."""

CATALOG: dict[str, Any] = {
    "flavors": [
        # one job at a time: a job of this flavor holds every CPU of the machine
        {"name": "cpu", "cpu": CPUS, "memory": "256Mi"},
        # several at a time, but never beside a "cpu" job
        {"name": "tiny", "cpu": 0.25, "memory": "64Mi"},
    ],
    "environments": [{"name": "python", "framework": "generic"}],
    "default_flavor": "cpu",
}

WAIT_FOR_RELEASE = """
import os, pathlib, time
print("started rank", os.environ["RANK"], "attempt", os.environ["MLINFRA_ATTEMPT"], flush=True)
while not pathlib.Path(os.environ["RELEASE"]).exists():
    time.sleep(0.05)
print("released rank", os.environ["RANK"])
"""

T = TypeVar("T")


@pytest.fixture
def home() -> Iterator[AgentHome]:
    """A private agent home; its agent and every rank it started are stopped afterwards."""
    with private_agent("mlr-") as home:
        yield home


def write_config(folder: Path, home: AgentHome, **settings: Any) -> Path:
    """A Jupyter config dir whose jupyter_server_config.json points at ``home``'s agent."""
    folder.mkdir(parents=True, exist_ok=True)
    document = {"MLInfraApp": {**home.settings, **CATALOG, **settings}}
    (folder / "jupyter_server_config.json").write_text(json.dumps(document))
    return folder


def agent_client(home: AgentHome) -> JobsClient:
    """Straight to the agent's socket, as the CLI talks to it when no server runs."""
    identity = json.dumps({"user": ME, "groups": [], "admin": False})
    return JobsClient(
        Connection("http://localhost/", source="local agent", socket=home.socket, identity=identity)
    )


@pytest.fixture
def client(tmp_path: Path, home: AgentHome, monkeypatch: pytest.MonkeyPatch) -> JobsClient:
    """``home``'s agent started as a server would start it, configured by ``tmp_path/config``
    (also for the CLI and the agents the tests start again), and a client to its socket."""
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(write_config(tmp_path / "config", home)))
    ensure_agent(home.socket, str(home.data_dir), 0)
    return agent_client(home)


def wait_until(check: Callable[[], T | None], what: str, timeout: float = 30) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def wait_state(client: JobsClient, job_id: str, *states: str, timeout: float = 30) -> Any:
    seen: dict[str, Any] = {}

    def reached() -> Any:
        seen["job"] = client.job(job_id)
        return seen["job"] if seen["job"]["state"] in states else None

    try:
        return wait_until(reached, f"job {job_id} to be {'/'.join(states)}", timeout)
    except AssertionError:
        raise AssertionError(f"job stayed {seen['job']['state']}: {seen['job']}") from None


def ranks_of(home: AgentHome, job_id: str) -> list[tuple[int, int, int, int, int | None]]:
    """(attempt, rank, pid, start time, exit code) of every rank the store recorded."""
    with contextlib.closing(sqlite3.connect(home.data_dir / "jobs.sqlite")) as db:
        rows = db.execute(
            "SELECT attempt, rank, pid, start_time, exit_code FROM ranks WHERE job_id = ? "
            "ORDER BY attempt, rank",
            (job_id,),
        ).fetchall()
    return [tuple(row) for row in rows]


def alive(pid: int) -> bool:
    """Running (a zombie nobody reaped yet has exited, so it does not count)."""
    return process_start_time(pid) is not None


def kill_agent_hard(home: AgentHome, pid: int | None = None) -> int:
    """SIGKILL the agent (no cleanup of any kind) and wait until it is gone; its pid. Given
    ``pid`` (asked for beforehand), the kill asks the agent nothing first: it lands at once."""
    if pid is None:
        status = home.status()
        assert status is not None, "no agent to kill"
        pid = int(status["pid"])
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not alive(pid), "the killed agent to be gone", 30)
    return pid


def conditions(client: JobsClient, job_id: str) -> list[tuple[str, str]]:
    return [(e["condition"], e["message"]) for e in client.events(job_id)]


# --- a Jupyter server restart -----------------------------------------------------------------


def test_restarting_the_server_keeps_the_running_and_the_queued_job(
    tmp_path: Path, home: AgentHome
) -> None:
    write_config(tmp_path / "config", home)
    release = tmp_path / "release"
    with running_lab(tmp_path) as lab:
        client = JobsClient(Connection(lab.base_url, lab.token))
        first = client.submit(
            {"code": WAIT_FOR_RELEASE, "name": "first", "env": {"RELEASE": str(release)}}
        )
        first = wait_state(client, first["id"], "running")
        second = client.submit({"code": "print('second ran')", "name": "second"})
        wait_until(lambda: client.job(second["id"])["position"] == 1, "the second to wait")
        assert client.job(second["id"])["state"] == "queued"
        agent = home.status()
        assert agent is not None
        ranks = ranks_of(home, first["id"])
        assert len(ranks) == 1 and alive(ranks[0][2])

    # no server now: the agent and the running rank carry on without it
    assert home.status() == {**agent, "running": 1, "queued": 1}
    assert alive(ranks[0][2])

    with running_lab(tmp_path) as lab:
        client = JobsClient(Connection(lab.base_url, lab.token))
        listed = client.jobs(limit=100)["jobs"]
        assert sorted(j["id"] for j in listed) == sorted([first["id"], second["id"]])
        assert client.job(first["id"])["state"] == "running"
        assert client.job(second["id"])["state"] == "queued"
        assert ranks_of(home, first["id"]) == ranks  # the same process, never restarted
        release.touch()
        done = wait_state(client, first["id"], "succeeded", "failed")
        assert done["state"] == "succeeded", done
        assert (done["attempt"], done["exit_code"]) == (1, 0)
        after = wait_state(client, second["id"], "succeeded", "failed")
        assert after["state"] == "succeeded", after
        assert after["started"] >= done["finished"]
        assert "".join(client.logs(second["id"])) == "second ran\n"
        assert [c for c, _ in conditions(client, first["id"])] == [
            "Queued",
            "Admitted",
            "Started",
            "Finished",
        ]
        assert len(client.jobs(limit=100)["jobs"]) == 2
        assert home.status()["pid"] == agent["pid"]  # type: ignore[index]


# --- the agent killed with SIGKILL --------------------------------------------------------------


def test_a_new_agent_adopts_ranks_that_outlived_a_killed_one(
    tmp_path: Path, home: AgentHome, client: JobsClient
) -> None:
    config = tmp_path / "config"
    live, early = tmp_path / "release-live", tmp_path / "release-early"
    adopted = client.submit(
        {
            "code": WAIT_FOR_RELEASE,
            "name": "adopted",
            "flavor": "tiny",
            "procs_per_node": 2,
            "env": {"RELEASE": str(live)},
        }
    )
    finished_meanwhile = client.submit(
        {
            "code": WAIT_FOR_RELEASE,
            "name": "meanwhile",
            "flavor": "tiny",
            "env": {"RELEASE": str(early)},
        }
    )
    for job in (adopted, finished_meanwhile):
        wait_state(client, job["id"], "running")
    queued_body = {"code": "print('queued ran')", "name": "queued", "idempotency_key": "q-1"}
    queued = client.submit(queued_body)  # needs every CPU: waits for both
    wait_until(lambda: client.job(queued["id"])["position"] == 1, "the queued job to wait")
    ranks = ranks_of(home, adopted["id"])
    assert [r[1] for r in ranks] == [0, 1]

    old_pid = kill_agent_hard(home)
    assert all(alive(pid) for _, _, pid, _, _ in ranks), "ranks must outlive the agent"
    early.touch()  # this job ends while no agent watches it
    meanwhile_pids = [r[2] for r in ranks_of(home, finished_meanwhile["id"])]
    wait_until(lambda: not any(map(alive, meanwhile_pids)), "the unwatched job to end")

    # a user's next command starts a new agent, as it would any time
    listing = mlinfra("jobs", "--json", env=clean_env(JUPYTER_CONFIG_DIR=str(config)))
    assert listing.returncode == 0, listing.stderr
    states = {j["id"]: j["state"] for j in json.loads(listing.stdout)["jobs"]}
    assert states[adopted["id"]] == "running" and states[queued["id"]] == "queued"
    assert len(states) == 3
    status = home.status()
    assert status is not None and status["pid"] != old_pid

    again = client.submit(queued_body)  # the idempotency key still names the same job
    assert again["id"] == queued["id"]

    ended = wait_state(client, finished_meanwhile["id"], "succeeded", "failed")
    assert ended["state"] == "succeeded", ended
    assert ended["exit_code"] == 0
    assert [r[4] for r in ranks_of(home, finished_meanwhile["id"])] == [0]

    assert client.job(adopted["id"])["state"] == "running"
    live.touch()
    done = wait_state(client, adopted["id"], "succeeded", "failed")
    assert done["state"] == "succeeded", done
    assert (done["attempt"], done["exit_code"]) == (1, 0)
    after = ranks_of(home, adopted["id"])
    assert [r[:4] for r in after] == [r[:4] for r in ranks]  # same pids and start times
    assert [r[4] for r in after] == [0, 0]  # their exits are recorded
    logs = "".join(client.logs(adopted["id"]))
    assert "[rank 0] released rank 0" in logs and "[rank 1] released rank 1" in logs
    assert "Requeued" not in [c for c, _ in conditions(client, adopted["id"])]

    ran = wait_state(client, queued["id"], "succeeded", "failed")
    assert ran["state"] == "succeeded", ran
    assert "".join(client.logs(queued["id"])) == "queued ran\n"
    assert len(client.jobs(limit=100)["jobs"]) == 3


FAIL_ON_FIRST_ATTEMPT = """
import os, time
if os.environ["MLINFRA_ATTEMPT"] == "1":
    time.sleep(300)  # killed while no agent runs
print("attempt", os.environ["MLINFRA_ATTEMPT"], "succeeded")
"""


def test_ranks_that_died_with_no_agent_are_lost_and_retried_by_policy(
    home: AgentHome, client: JobsClient
) -> None:
    body = {"code": FAIL_ON_FIRST_ATTEMPT, "flavor": "tiny"}
    retried = client.submit({**body, "name": "retried", "retry": {"max_restarts": 1}})
    # a retry policy for other exit codes only: a lost job is not one of them
    kept = client.submit(
        {**body, "name": "kept", "retry": {"max_restarts": 1, "on_exit_codes": [3]}}
    )
    for job in (retried, kept):
        wait_state(client, job["id"], "running")
    pids = [r[2] for job in (retried, kept) for r in ranks_of(home, job["id"])]

    kill_agent_hard(home)
    for pid in pids:
        os.killpg(pid, signal.SIGKILL)
    wait_until(lambda: not any(map(alive, pids)), "the ranks to die")
    ensure_agent(home.socket, str(home.data_dir), 0)

    lost = wait_state(client, kept["id"], "failed", "succeeded")
    assert lost["state"] == "failed", lost
    assert lost["reason"] == "lost: agent restarted"
    assert (lost["attempt"], lost["exit_code"]) == (1, None)

    done = wait_state(client, retried["id"], "succeeded", "failed")
    assert done["state"] == "succeeded", done
    assert (done["attempt"], done["exit_code"]) == (2, 0)
    assert "".join(client.logs(retried["id"])) == "attempt 2 succeeded\n"
    assert ("Requeued", "lost: agent restarted; retry in 1 s") in conditions(client, retried["id"])
    assert [r[:2] for r in ranks_of(home, retried["id"])] == [(1, 0), (2, 0)]
    assert ranks_of(home, retried["id"])[1][4] == 0
    assert len(client.jobs(limit=100)["jobs"]) == 2


RANK_ONE_FAILS = """
import os, pathlib, signal, time
ready = pathlib.Path(os.environ["RELEASE"] + ".rank0-ready")
if os.environ["RANK"] == "1":
    while not ready.exists():  # fail only once rank 0 ignores SIGTERM, however slow its start
        time.sleep(0.02)
    raise SystemExit(7)
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # only SIGKILL after the grace period stops it
ready.touch()
deadline = time.time() + 60
while not pathlib.Path(os.environ["RELEASE"]).exists() and time.time() < deadline:
    time.sleep(0.05)
"""


def test_a_gang_whose_rank_failed_before_the_kill_still_fails_and_stops(
    tmp_path: Path, home: AgentHome, client: JobsClient
) -> None:
    release = tmp_path / "release"
    job = client.submit(
        {"code": RANK_ONE_FAILS, "procs_per_node": 2, "env": {"RELEASE": str(release)}}
    )
    # rank 1's exit is recorded and rank 0 is being stopped (it ignores SIGTERM) when the
    # agent dies: the new agent must finish the stop and fail the job, not wait for rank 0.
    # The agent SIGKILLs rank 0 5 s after rank 1's exit: its pid is known before, so that
    # the kill asks it nothing and lands well within those 5 s, however loaded the machine.
    status = home.status()
    assert status is not None
    wait_until(lambda: [r[4] for r in ranks_of(home, job["id"])] == [None, 7], "rank 1 to fail")
    kill_agent_hard(home, status["pid"])
    survivor = ranks_of(home, job["id"])[0][2]
    assert alive(survivor)
    ensure_agent(home.socket, str(home.data_dir), 0)
    done = wait_state(client, job["id"], "succeeded", "failed", timeout=60)
    assert done["state"] == "failed", done
    assert (done["reason"], done["exit_code"]) == ("rank 1 exited with 7", 7)
    assert not alive(survivor)
    assert home.live_ranks() == []


# --- idleness and max runtime -------------------------------------------------------------------


def test_the_agent_leaves_when_idle_and_comes_back_for_a_submission(
    tmp_path: Path, home: AgentHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path / "config", home, agent_idle_timeout=2)
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(config))
    first = ensure_agent(home.socket, str(home.data_dir), 2)["pid"]
    wait_until(lambda: not alive(first), "the idle agent to exit", 60)
    assert not Path(home.socket).exists()

    release = tmp_path / "release"
    script = tmp_path / "wait.py"
    script.write_text(f"import os\nos.environ['RELEASE'] = {str(release)!r}\n{WAIT_FOR_RELEASE}")
    env = clean_env(JUPYTER_CONFIG_DIR=str(config))
    submitted = mlinfra("submit", str(script), "--detach", env=env)
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    status = home.status()
    assert status is not None and status["pid"] != first
    second = status["pid"]
    client = agent_client(home)
    wait_state(client, job_id, "running")
    time.sleep(3)  # longer than the idle timeout, without a request: a running job keeps it
    assert alive(second)
    release.touch()
    assert wait_state(client, job_id, "succeeded", "failed")["state"] == "succeeded"
    wait_until(lambda: not alive(second), "the agent to exit once idle again", 60)


SPAWN_AND_SLEEP = """
import os, pathlib, subprocess, time
child = subprocess.Popen(["sleep", "60"])
pathlib.Path(os.environ["PIDFILE"]).write_text(str(child.pid))
time.sleep(60)
"""


def test_max_runtime_is_enforced_on_the_whole_process_group(
    tmp_path: Path, home: AgentHome, client: JobsClient
) -> None:
    pidfile = tmp_path / "child.pid"
    job = client.submit(
        {"code": SPAWN_AND_SLEEP, "max_runtime_seconds": 1, "env": {"PIDFILE": str(pidfile)}}
    )
    child = int(wait_until(lambda: pidfile.read_text() if pidfile.exists() else None, "the child"))
    done = wait_state(client, job["id"], "succeeded", "failed", "cancelled", timeout=50)
    assert done["state"] == "failed", done
    assert done["reason"] == "max runtime of 1 s exceeded"
    assert done["attempt"] == 1
    # stopped after its 1 s, and long before its own 60 s sleep would have ended it
    assert 1 <= done["finished"] - done["started"] < 50
    assert home.live_ranks() == []
    wait_until(lambda: not alive(child), "the rank's child to be gone", 30)
