"""Following a job or a kernel's start from the Python client (CLI, magics, widgets) through a
real ``jupyter lab``: its changes come pushed on the server's live websocket, so a waiting
job's start reaches the follower though it would ask only once an hour; where nothing is pushed
(the local agent's socket, a server that cannot be reached, or while the server says its
changes stopped) it is asked for, and ``close`` ends a wait at once."""

from __future__ import annotations

import json
import os
import signal
import threading
from typing import Any

import pytest

from jupyter_mlinfra.backends.local.agent_client import stop_agent
from jupyter_mlinfra.client import Connection, JobsClient, KernelsClient
from jupyter_mlinfra.follow import follow
from jupyter_mlinfra.live_client import open_live
from jupyter_mlinfra.watch import JobWatch, wait_kernel

from .agents import AgentHome
from .conftest import ME
from .lab_server import LabServer
from .waits import wait_until

NEVER = 3600.0
"""A poll interval no test lasts: whatever the follower learns, it learned from a push."""
SLEEPER = "import time\nprint('sleeping', flush=True)\ntime.sleep(60)"


@pytest.fixture(scope="module")
def lab_config() -> dict[str, Any]:
    return {"default_quota": {"max_running_jobs": 1}}  # a second job really queues


@pytest.fixture
def client(lab: LabServer) -> JobsClient:
    return JobsClient(Connection(lab.base_url, lab.token))


def submit(client: JobsClient, name: str, code: str) -> Any:
    return client.submit({"code": code, "name": name, "flavor": "cpu"})


def test_a_waiting_job_is_followed_by_the_servers_push(client: JobsClient) -> None:
    blocker = submit(client, "blocker", SLEEPER)
    wait_until(lambda: client.job(blocker["id"])["state"] == "running")
    waiting = submit(client, "waiting", "print('after')\n")
    statuses: list[str] = []
    lines: list[str] = []
    ended: dict[str, Any] = {}

    def follower() -> None:
        ended["job"] = follow(
            client,
            waiting["id"],
            on_status=lambda job: statuses.append(job["state"]),
            on_line=lines.append,
            poll_seconds=NEVER,
        )

    thread = threading.Thread(target=follower, daemon=True)
    thread.start()
    wait_until(lambda: statuses)
    assert statuses == ["queued"]
    client.cancel(blocker["id"])  # the waiting job's turn: only a push can tell the follower
    thread.join(timeout=120)
    assert not thread.is_alive(), statuses
    assert ended["job"]["state"] == "succeeded", ended
    assert lines == ["after\n"]
    assert statuses[0] == "queued" and statuses[-1] == "succeeded", statuses


QUIET = """
import time
print("before", flush=True)
time.sleep(10)
print("after", flush=True)
"""
"""A job that prints nothing for longer than the impatient client's requests may take."""


def test_a_followed_log_waits_out_a_job_that_prints_nothing_for_a_while(
    client: JobsClient, lab: LabServer
) -> None:
    """A training step may print nothing for minutes: the followed log waits for the next
    line, however soon the client's other requests would give up (here 5 s)."""
    quiet = submit(client, "quiet", QUIET)
    wait_until(lambda: "before" in "".join(client.logs(quiet["id"])))
    impatient = JobsClient(Connection(lab.base_url, lab.token), timeout=5)
    assert list(impatient.logs(quiet["id"], follow=True)) == ["before\n", "after\n"]
    assert client.job(quiet["id"])["state"] == "succeeded"


def test_a_kernels_start_is_followed_by_its_id_through_the_servers_push(
    lab: LabServer, home: AgentHome
) -> None:
    """``POST kernels`` answers at once; while the agent that grants the lease cannot answer
    (stopped) the kernel is starting, and its start's end reaches the waiting client only by a
    push: it would ask once an hour."""
    kernels = KernelsClient(Connection(lab.base_url, lab.token))
    wait_kernel(kernels, kernels.start_kernel(flavor="cpu")["id"])  # the agent runs
    pids = home.agent_pids()
    assert pids
    seen: list[str] = []
    ended: dict[str, Any] = {}
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        kernel = kernels.start_kernel(flavor="cpu")
        assert kernel["state"] == "starting"

        def waiter() -> None:
            ended["kernel"] = wait_kernel(
                kernels, kernel["id"], on_change=lambda k: seen.append(k["state"]),
                poll_seconds=NEVER,
            )  # fmt: skip

        thread = threading.Thread(target=waiter, daemon=True)
        thread.start()
        wait_until(lambda: seen)
        assert seen == ["starting"]
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    thread.join(timeout=120)
    assert not thread.is_alive(), seen
    assert ended["kernel"]["id"] == kernel["id"] and ended["kernel"]["state"] == "running"
    assert seen[-1] == "running", seen
    for listed in kernels.kernels()["kernels"]:
        if listed["state"] == "running":
            kernels.stop_kernel(listed["id"])


def test_close_ends_a_wait_for_the_next_change_at_once(client: JobsClient) -> None:
    job = submit(client, "closed", SLEEPER)
    with JobWatch(client, job["id"], poll_seconds=NEVER) as watch:
        assert watch.pushed
        got: list[Any] = []
        thread = threading.Thread(target=lambda: got.append(watch.next()), daemon=True)
        thread.start()
        wait_until(lambda: watch.job["state"] == "running" or not thread.is_alive())
        watch.close()
        thread.join(timeout=30)
        assert not thread.is_alive()
    client.cancel(job["id"])


def test_without_a_websocket_the_job_is_asked_for(home: AgentHome, client: JobsClient) -> None:
    """The local agent's socket has no websocket: the watch asks, every ``poll_seconds``."""
    identity = json.dumps({"user": ME, "groups": [], "admin": False})
    agent = JobsClient(Connection("http://localhost/", socket=home.socket, identity=identity))
    job = submit(client, "asked", SLEEPER)
    with JobWatch(agent, job["id"], poll_seconds=0.05) as watch:
        assert not watch.pushed
        client.cancel(job["id"])
        while watch.job["state"] != "cancelled":
            assert watch.next(60) is not None, watch.job
    assert open_live(Connection("http://127.0.0.1:9/"), timeout=5) is None  # nothing listens


def test_a_watch_reads_the_job_again_when_the_server_pushes_again(
    home: AgentHome, client: JobsClient
) -> None:
    """The agent stops: the server says its changes stopped (``live`` false) and the watch
    would ask, once an hour; the cancel starts another agent, the server follows it and says
    so (``live`` true), and the watch reads the job again or has its change pushed."""
    job = submit(client, "adopted", SLEEPER)
    wait_until(lambda: client.job(job["id"])["state"] == "running")
    with JobWatch(client, job["id"], poll_seconds=NEVER) as watch:
        wait_until(lambda: watch.next(0.05) is None and watch.pushed)  # the server follows
        got: list[Any] = []
        thread = threading.Thread(target=lambda: got.append(watch.next()), daemon=True)
        thread.start()
        stop_agent(home.socket)  # its ranks keep running: the next agent adopts them
        wait_until(lambda: not watch.pushed)
        client.cancel(job["id"])
        thread.join(timeout=120)
        assert not thread.is_alive(), watch.job
    assert got[0]["state"] == "cancelled", got
