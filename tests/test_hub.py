"""Under a real JupyterHub: hub identity, and one local agent shared by every user as a hub
service.

The hub runs examples/jupyterhub/jupyterhub_config.py (with configurable-http-proxy from npm;
the test changes only ports, paths and the extension's settings, and, since its users have no
OS accounts, uses the "simple" spawner, which isolates nobody: test_hub_isolation.py runs the
example with accounts): alice is in group research, bob in students, carol a hub admin. The
extension's settings name no group member and no admin, so everything group- and
admin-related comes from the hub. Single-user servers are real
``jupyterhub-singleuser`` processes with the extension, reaching the shared agent with their
hub tokens. The machine has two accelerators (from ``local_accelerators``: the inventory is
config, the assignment is real).
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from jupyter_mlinfra.client import ClientError, Connection, KernelsClient
from jupyter_mlinfra.models.kernels import Kernel
from jupyter_mlinfra.watch import wait_kernel

from .hub import Hub, HubError, running_hub
from .test_leases import SETTINGS as TWO_GPUS

USERS = ("alice", "bob", "carol")

CPU, A100X1 = TWO_GPUS["flavors"][:2]  # tiny, so that a two-core machine fits them all
A100X2 = {**A100X1["accelerator"], "count": 2}

SETTINGS: dict[str, Any] = {
    "local_accelerators": TWO_GPUS["local_accelerators"],
    "flavors": [
        CPU,
        {**A100X1, "groups": ["research", "students"]},
        {**A100X1, "name": "a100x2", "accelerator": A100X2, "groups": ["research"]},
    ],
    "environments": [{"name": "python", "framework": "generic", "python": sys.executable}],
    "group_quotas": {"students": {"max_queued_jobs": 1}},
    "preemption_grace_seconds": 1,
    # the example's users have no OS accounts here: every job runs as the agent's account
    "run_ranks_as": "agent",
    "unsafe_ranks_as_root": True,
}

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def hub() -> Iterator[Hub]:
    with running_hub(SETTINGS) as hub:
        for user in USERS:
            hub.start_server(user)
        yield hub


@pytest.fixture(scope="module")
def tokens(hub: Hub) -> dict[str, str]:
    return {user: hub.token_for(user) for user in USERS}


@pytest.fixture(scope="module")
def sleeper(hub: Hub) -> str:
    script = hub.root / "sleeper.py"
    script.write_text("import time\nprint('started', flush=True)\ntime.sleep(600)\n")
    return str(script)


@pytest.fixture
def cleanup(hub: Hub, tokens: dict[str, str]) -> Iterator[None]:
    """Cancel every unfinished job after the test, as the admin."""
    yield
    unfinished = "jobs?state=queued,admitted,starting,running"
    page = hub.mlinfra("carol", tokens["carol"], "GET", unfinished)
    for job in page["jobs"]:
        try:
            hub.mlinfra("carol", tokens["carol"], "DELETE", f"jobs/{job['id']}")
        except HubError as error:
            assert error.status == 409  # it finished meanwhile


def submit(hub: Hub, user: str, token: str, script: str, flavor: str, **more: Any) -> Any:
    body = {"script": script, "flavor": flavor, "procs_per_node": 1, "name": f"{user}-{flavor}"}
    return hub.mlinfra(user, token, "POST", "jobs", {**body, **more})


def wait_state(hub: Hub, user: str, token: str, job_id: str, states: set[str]) -> Any:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = hub.mlinfra(user, token, "GET", f"jobs/{job_id}")
        if job["state"] in states:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still {job['state']}, wanted {states}")


def wait_judged(hub: Hub, user: str, token: str, job_id: str) -> Any:
    """The job once a scheduling pass has said why it waits (or admitted it)."""
    deadline = time.monotonic() + 30
    while not (job := hub.mlinfra(user, token, "GET", f"jobs/{job_id}"))["reason"]:
        assert job["state"] == "queued", job
        assert time.monotonic() < deadline, f"no scheduling pass judged job {job_id}"
        time.sleep(0.2)
    return job


def refused(hub: Hub, user: str, token: str, method: str, path: str, body: Any = None) -> int:
    """The status of a call to ``user``'s server that must fail."""
    with pytest.raises(HubError) as raised:
        hub.mlinfra(user, token, method, path, body)
    return raised.value.status


def test_groups_and_admin_status_come_from_the_hub(hub: Hub, tokens: dict[str, str]) -> None:
    def flavors(user: str) -> list[str]:
        listing = hub.mlinfra(user, tokens[user], "GET", "flavors")
        return [f["name"] for f in listing["flavors"]]

    assert flavors("alice") == ["cpu", "a100x1", "a100x2"]
    assert flavors("bob") == ["cpu", "a100x1"]
    alice = hub.mlinfra("alice", tokens["alice"], "GET", "whoami")
    carol = hub.mlinfra("carol", tokens["carol"], "GET", "whoami")
    assert (alice["user"], alice["groups"], alice["admin"]) == ("alice", ["research"], False)
    assert (carol["user"], carol["admin"]) == ("carol", True)
    assert refused(hub, "bob", tokens["bob"], "GET", "flavors/a100x2") == 403


def start_kernel(hub: Hub, user: str, token: str, flavor: str) -> Kernel:
    """``user``'s kernel on ``flavor``, started through the hub's proxy as their own Python
    client starts it (answered at once, followed by its id pushed on the live websocket)."""
    client = KernelsClient(Connection(f"{hub.url}user/{user}/", token))
    return wait_kernel(client, client.start_kernel(flavor=flavor)["id"])


@pytest.mark.usefixtures("cleanup")
def test_users_share_one_capacity_one_queue_and_quotas(
    hub: Hub, tokens: dict[str, str], sleeper: str
) -> None:
    alice = submit(hub, "alice", tokens["alice"], sleeper, "a100x2")
    held = wait_state(hub, "alice", tokens["alice"], alice["id"], {"starting", "running"})
    assert sorted(held["devices"][0]) == [0, 1]

    # bob's job waits for alice's GPUs: one capacity, one queue for both servers
    bob = submit(hub, "bob", tokens["bob"], sleeper, "a100x1")
    waiting = wait_judged(hub, "bob", tokens["bob"], bob["id"])
    assert waiting["state"] == "queued"
    assert "nvidia.com/gpu" in waiting["reason"]

    # the students' quota (one queued job each) holds across the shared agent
    with pytest.raises(HubError) as over_quota:
        submit(hub, "bob", tokens["bob"], sleeper, "a100x1")
    assert over_quota.value.status == 422
    assert "1 of 1 queued jobs" in over_quota.value.body["message"]

    # kernels lease their devices from the same agent: none left for bob's kernel
    with pytest.raises(ClientError) as full:
        start_kernel(hub, "bob", tokens["bob"], "a100x1")
    assert (full.value.status, full.value.field) == (409, "flavor")
    assert "a100x1 is full" in full.value.message

    whoami = hub.mlinfra("bob", tokens["bob"], "GET", "whoami")  # usage from the shared agent
    assert (whoami["usage"]["gpus"], whoami["usage"]["queued_jobs"]) == (0, 1)
    assert hub.mlinfra("bob", tokens["bob"], "GET", "capacity")["allocations"] == 1


@pytest.mark.usefixtures("cleanup")
def test_a_user_cannot_see_or_touch_another_users_job(
    hub: Hub, tokens: dict[str, str], sleeper: str
) -> None:
    job = submit(hub, "alice", tokens["alice"], sleeper, "cpu")
    bob, path = tokens["bob"], f"jobs/{job['id']}"
    for method, sub in (("GET", ""), ("GET", "/logs"), ("GET", "/events"), ("DELETE", "")):
        assert refused(hub, "bob", bob, method, path + sub) == 404
    assert refused(hub, "bob", bob, "POST", path + "/retry") == 404
    assert refused(hub, "bob", bob, "GET", "jobs?owner=alice") == 403
    assert job["id"] not in {j["id"] for j in hub.mlinfra("bob", bob, "GET", "jobs")["jobs"]}

    # bob's server cannot reach alice's server with his token: not one her server accepts
    assert refused(hub, "alice", bob, "GET", path) == 401

    # the agent is on TCP, reachable by anyone here: a forged identity header changes nothing
    forged = {"X-MLInfra-Identity": json.dumps({"user": "alice", "admin": True})}
    direct = f"{hub.agent_url}mlinfra/api/v1/{path}"
    with pytest.raises(HubError) as as_bob:
        hub.request("GET", direct, bob, headers=forged)
    assert as_bob.value.status == 404
    with pytest.raises(HubError) as no_token:
        hub.request("GET", direct, "", headers=forged)
    assert no_token.value.status == 401
    own = hub.request("GET", direct, tokens["alice"])
    assert own["owner"] == "alice"

    # what others hold counts, but not whose it is or which job
    wait_state(hub, "alice", tokens["alice"], job["id"], {"starting", "running"})
    held = f"{hub.agent_url}mlinfra/agent/v1/allocations"
    seen_by_bob = hub.request("GET", held, bob)["allocations"]
    assert seen_by_bob
    assert all(a["owner"] == "" and job["id"] not in a["holder"] for a in seen_by_bob)
    seen_by_carol = hub.request("GET", held, tokens["carol"])["allocations"]
    assert f"job:{job['id']}" in {a["holder"] for a in seen_by_carol}

    # nor can a user's server reconfigure the shared agent
    with pytest.raises(HubError) as policy:
        hub.request("PUT", f"{hub.agent_url}mlinfra/agent/v1/policy", bob, {"flavors": []})
    assert policy.value.status == 403


@pytest.mark.usefixtures("cleanup")
def test_the_admin_sees_reprioritises_and_cancels_everybodys_jobs(
    hub: Hub, tokens: dict[str, str], sleeper: str
) -> None:
    carol = tokens["carol"]
    alice = submit(hub, "alice", tokens["alice"], sleeper, "a100x2")
    wait_state(hub, "alice", tokens["alice"], alice["id"], {"starting", "running"})
    bob = submit(hub, "bob", tokens["bob"], sleeper, "a100x1")

    listed = hub.mlinfra("carol", carol, "GET", "jobs")["jobs"]
    assert {alice["id"], bob["id"]} <= {j["id"] for j in listed}
    queue = hub.mlinfra("carol", carol, "GET", "queue")
    assert [j["id"] for j in queue["jobs"]] == [bob["id"]]

    usage = hub.mlinfra("carol", carol, "GET", "usage")
    users = {u["user"]: u for u in usage["users"]}
    assert users["alice"]["usage"]["gpus"] == 2
    assert users["bob"]["usage"]["queued_jobs"] == 1
    assert users["bob"]["quota"]["max_queued_jobs"] == 1
    groups = {g["group"]: g for g in usage["groups"]}
    assert groups["research"]["usage"]["gpus"] == 2
    assert groups["students"]["member_quota"]["max_queued_jobs"] == 1
    assert refused(hub, "bob", tokens["bob"], "GET", "usage") == 403

    # only admins reprioritise
    high = {"priority": "high"}
    assert refused(hub, "bob", tokens["bob"], "PATCH", f"jobs/{bob['id']}", high) == 403
    moved = hub.mlinfra("carol", carol, "PATCH", f"jobs/{bob['id']}", high)
    assert moved["priority"] == "high"
    events = hub.mlinfra("bob", tokens["bob"], "GET", f"jobs/{bob['id']}/events")["events"]
    assert any(e["reason"] == "Reprioritised" and "carol" in e["message"] for e in events)

    # the admin cancels alice's job; bob's then gets the GPU
    cancelled = hub.mlinfra("carol", carol, "DELETE", f"jobs/{alice['id']}")
    assert cancelled["state"] == "cancelled"
    history = hub.mlinfra("alice", tokens["alice"], "GET", f"jobs/{alice['id']}/events")
    assert any("cancelled by carol" in e["message"] for e in history["events"])
    wait_state(hub, "bob", tokens["bob"], bob["id"], {"starting", "running"})
    assert hub.mlinfra("carol", carol, "DELETE", f"jobs/{bob['id']}")["state"] == "cancelled"


@pytest.mark.usefixtures("cleanup")
def test_queue_all_from_the_cli_shows_everybody_and_their_quotas(
    hub: Hub, tokens: dict[str, str], sleeper: str
) -> None:
    submit(hub, "alice", tokens["alice"], sleeper, "a100x1")
    submit(hub, "bob", tokens["bob"], sleeper, "cpu")

    def queue_all(user: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "jupyter_mlinfra.cli", "queue", "--all",
             "--url", f"{hub.url}user/{user}/", "--token", tokens[user]],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    shown = queue_all("carol")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert any("alice" in line and "a100x1" in line for line in lines)
    assert any("bob" in line and "cpu" in line for line in lines)
    assert any(line.startswith("bob") and "students" in line for line in lines)
    assert any(line.startswith("research") and "alice" in line for line in lines)
    not_admin = queue_all("bob")
    assert not_admin.returncode == 1
    assert "only admins" in not_admin.stderr


@pytest.mark.usefixtures("cleanup")
def test_jobs_stay_their_owners_across_a_server_restart(
    hub: Hub, tokens: dict[str, str], sleeper: str
) -> None:
    job = submit(hub, "alice", tokens["alice"], sleeper, "cpu")
    wait_state(hub, "alice", tokens["alice"], job["id"], {"starting", "running"})
    hub.stop_server("alice")
    hub.start_server("alice")
    again = hub.mlinfra("alice", tokens["alice"], "GET", f"jobs/{job['id']}")
    assert again["owner"] == "alice"
    assert again["state"] in ("starting", "running")
    assert refused(hub, "bob", tokens["bob"], "GET", f"jobs/{job['id']}") == 404


@pytest.mark.usefixtures("cleanup")
def test_a_kernels_gpu_is_nobody_elses_until_it_shuts_down(
    hub: Hub, tokens: dict[str, str], sleeper: str
) -> None:
    bob, alice = tokens["bob"], tokens["alice"]
    kernel = start_kernel(hub, "bob", bob, "a100x1")
    try:
        assert kernel["owner"] == "bob" and len(kernel["devices"]) == 1
        # alice's two-GPU job waits for the GPU bob's kernel holds, on another user's server
        job = submit(hub, "alice", alice, sleeper, "a100x2")
        waiting = wait_judged(hub, "alice", alice, job["id"])
        assert waiting["state"] == "queued" and "nvidia.com/gpu" in waiting["reason"], waiting
    finally:
        hub.mlinfra("bob", bob, "DELETE", f"kernels/{kernel['id']}")
    started = wait_state(hub, "alice", alice, job["id"], {"starting", "running"})
    assert sorted(started["devices"][0]) == [0, 1]


def test_the_shared_agent_needs_the_hub_services_url(tmp_path: Any) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
    result = subprocess.run(
        [sys.executable, "-m", "jupyter_mlinfra.cli", "agent", "--hub",
         "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60, check=False, env=env,
    )  # fmt: skip
    assert result.returncode == 1
    assert "JUPYTERHUB_SERVICE_URL must name a host and port" in result.stderr


PLANT = """
import os, pickle

class Payload:
    def __reduce__(self):
        return (os.system, ("touch " + os.environ["MARKER"],))

path = os.environ["VICTIM"] + "/pull.pkl"
with open(path + ".tmp", "wb") as planted:
    pickle.dump({"x": Payload()}, planted)
os.replace(path + ".tmp", path)
"""


@pytest.mark.usefixtures("cleanup")
def test_where_all_jobs_share_one_account_the_agent_says_so_and_hands_out_no_results(
    hub: Hub, tokens: dict[str, str]
) -> None:
    """Issue 11's pull attack on a hub without OS accounts: bob's job replaces the variables
    alice's job pulled with a pickle that runs his code when loaded; alice is never given it."""
    agent_account = pwd.getpwuid(os.geteuid()).pw_name
    for user in USERS:
        isolation = hub.mlinfra(user, tokens[user], "GET", "whoami")["isolation"]
        assert (isolation["ranks_run_as"], isolation["isolated"]) == (agent_account, False)
        assert f"every hub user's jobs run as {agent_account!r}" in isolation["reason"]
        assert "no job's results are handed out" in isolation["reason"]
    assert "every hub user's jobs run as" in hub.log()  # the agent's warning at its start

    alice, bob = tokens["alice"], tokens["bob"]
    code = {"code": "x = 41 + 1", "pull": ["x"], "flavor": "cpu", "procs_per_node": 1}
    victim = hub.mlinfra("alice", alice, "POST", "jobs", code)
    wait_state(hub, "alice", alice, victim["id"], {"succeeded"})
    marker = hub.root / f"bob-ran-in-{victim['id']}"
    folder = hub.agent.data_dir / "jobs" / victim["id"] / "1"
    env = {"VICTIM": str(folder), "MARKER": str(marker)}
    attack = hub.mlinfra("bob", bob, "POST", "jobs", {"code": PLANT, "env": env, "flavor": "cpu"})
    planted = wait_state(hub, "bob", bob, attack["id"], {"succeeded", "failed"})
    assert planted["state"] == "succeeded", planted

    with pytest.raises(HubError) as pulled:
        hub.mlinfra("alice", alice, "GET", f"jobs/{victim['id']}/result")
    assert pulled.value.status == 403
    assert pulled.value.body["message"].startswith(
        f"job {victim['id']}'s results are not handed out: this agent runs every user's jobs "
        "as its own account, so another user's job may have written them"
    )
    assert not marker.exists()
