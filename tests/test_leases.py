"""Kernels' leases on devices, through a real local agent: admitted like one-rank jobs (same
devices, same quotas, same kind of reasons), released when the kernel goes, and kept across
an agent killed with SIGKILL. Two accelerators come from ``local_accelerators``: the inventory
is config, the assignment and accounting are real.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jupyter_mlinfra.backends.local import leases
from jupyter_mlinfra.backends.local.agent_client import ensure_agent
from jupyter_mlinfra.capacity import Lease
from jupyter_mlinfra.jobs.store import JobStore
from jupyter_mlinfra.transport import UnixHTTPConnection

from .agents import AgentHome, private_agent
from .conftest import ME
from .test_restarts import agent_client, alive, kill_agent_hard, wait_state, wait_until

LEASES = "/mlinfra/agent/v1/leases"
ALLOCATIONS = "/mlinfra/agent/v1/allocations"

SETTINGS: dict[str, Any] = {
    "local_accelerators": [
        {"index": 0, "kind": "nvidia.com/gpu", "model": "A100-SXM4-80GB"},
        {"index": 1, "kind": "nvidia.com/gpu", "model": "A100-SXM4-80GB"},
    ],
    "flavors": [
        {"name": "cpu", "cpu": 0.25, "memory": "64Mi"},
        {
            "name": "a100x1",
            "accelerator": {"kind": "nvidia.com/gpu", "model": "A100", "count": 1},
            "cpu": 0.25,
            "memory": "64Mi",
        },
        {"name": "secret", "cpu": 0.25, "memory": "64Mi", "users": ["somebody-else"]},
    ],
    "environments": [{"name": "python", "framework": "generic"}],
    "default_flavor": "cpu",
    "groups": {"gpu-users": [ME]},
}

PRINT_DEVICES = "import os; print('CUDA_VISIBLE_DEVICES=' + os.environ['CUDA_VISIBLE_DEVICES'])"
WAIT_FOR_RELEASE = """
import os, pathlib, time
while not pathlib.Path(os.environ["RELEASE"]).exists():
    time.sleep(0.05)
"""


@pytest.fixture
def home() -> Iterator[AgentHome]:
    with private_agent("mll-") as home:
        yield home


def start_agent(
    tmp_path: Path,
    home: AgentHome,
    monkeypatch: pytest.MonkeyPatch,
    idle_timeout: float = 0,
    **settings: Any,
) -> None:
    """An agent whose Jupyter config is ``SETTINGS`` plus ``settings``."""
    folder = tmp_path / "config"
    folder.mkdir(exist_ok=True)
    document = {"MLInfraApp": {**home.settings, **SETTINGS, **settings}}
    (folder / "jupyter_server_config.json").write_text(json.dumps(document))
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(folder))
    ensure_agent(home.socket, str(home.data_dir), idle_timeout)


def call(
    home: AgentHome,
    method: str,
    path: str,
    body: Any = None,
    *,
    user: str = ME,
    groups: tuple[str, ...] = (),
    admin: bool = False,
) -> tuple[int, Any]:
    """(status, JSON body) of one request to the agent's socket as ``user``."""
    identity = json.dumps({"user": user, "groups": list(groups), "admin": admin})
    headers = {"X-MLInfra-Identity": identity, "Content-Type": "application/json"}
    connection = UnixHTTPConnection(home.socket, 10)
    try:
        data = None if body is None else json.dumps(body).encode()
        connection.request(method, path, body=data, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def lease(home: AgentHome, kernel_id: str, flavor: str = "a100x1", **kw: Any) -> tuple[int, Any]:
    body = {"kernel_id": kernel_id, "flavor": flavor, "environment": "python"}
    return call(home, "POST", LEASES, body, **kw)


def held(home: AgentHome) -> dict[str, list[int]]:
    """Holder -> devices, as the server reads capacity from the agent."""
    status, body = call(home, "GET", ALLOCATIONS)
    assert status == 200
    return {a["holder"]: a["devices"] for a in body["allocations"]}


def test_leases_get_their_own_devices_and_a_full_flavor_is_refused_with_the_reason(
    tmp_path: Path, home: AgentHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    start_agent(tmp_path, home, monkeypatch)
    status, first = lease(home, "k-1")
    assert status == 201, first
    assert first["owner"] == ME and first["flavor"] == "a100x1" and first["pid"] is None
    assert first["environment"] == "python" and first["cpu"] == 0.25
    assert first["memory_bytes"] == 64 * 2**20
    status, second = lease(home, "k-2")
    assert status == 201, second
    assert sorted(first["devices"] + second["devices"]) == [0, 1]
    assert len(first["cpus"]) == len(second["cpus"]) == 1
    assert first["cpus"] != second["cpus"]
    assert held(home) == {"kernel:k-1": first["devices"], "kernel:k-2": second["devices"]}

    status, refused = lease(home, "k-3")
    assert status == 409, refused
    assert refused == {
        "message": "flavor a100x1 is full: waiting for 1 × nvidia.com/gpu (A100), 0 free; "
        "no jobs ahead",
        "field": "flavor",
    }
    # a kernel restart asks again with its id and keeps what it holds, asked for anew
    status, again = lease(home, "k-1")
    assert status == 200 and again == {**first, "requested": again["requested"]}
    assert again["requested"] > first["requested"]
    # CPU-only kernels still fit
    status, plain = lease(home, "k-cpu", "cpu")
    assert status == 201 and plain["devices"] == []

    assert lease(home, "k-4", "nope")[0] == 404
    assert lease(home, "k-4", "secret") == (
        403,
        {"message": f"user {ME!r} may not use flavor 'secret'", "field": "flavor"},
    )
    status, body = call(home, "POST", LEASES, {"kernel_id": "k-4", "environment": "conda-x"})
    assert (status, body["field"]) == (404, "environment")

    mine = call(home, "GET", LEASES)[1]["leases"]
    assert [x["kernel_id"] for x in mine] == ["k-1", "k-2", "k-cpu"]
    assert call(home, "GET", LEASES, user="other")[1] == {"leases": []}
    assert len(call(home, "GET", LEASES, user="root", admin=True)[1]["leases"]) == 3
    # only the owner (or an admin) may bind or release
    assert call(home, "DELETE", f"{LEASES}/k-2", user="other")[0] == 404
    assert call(home, "PUT", f"{LEASES}/k-2", {"pid": 1}, user="other")[0] == 404
    assert call(home, "DELETE", f"{LEASES}/k-2") == (200, {"released": True})
    assert call(home, "DELETE", f"{LEASES}/k-2")[0] == 404
    status, third = lease(home, "k-3")
    assert status == 201 and third["devices"] == second["devices"]
    assert call(home, "DELETE", f"{LEASES}/k-3", user="root", admin=True)[0] == 200


def test_jobs_and_leases_share_the_devices(
    tmp_path: Path, home: AgentHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    start_agent(tmp_path, home, monkeypatch)
    client = agent_client(home)
    release = tmp_path / "release"
    running = client.submit(
        {
            "code": WAIT_FOR_RELEASE,
            "flavor": "a100x1",
            "env": {"RELEASE": str(release)},
            "max_runtime_seconds": 300,
        }
    )
    running = wait_state(client, running["id"], "running")
    status, kernel = lease(home, "k-1")
    assert status == 201 and kernel["devices"] != running["devices"][0]

    status, refused = lease(home, "k-2")
    assert status == 409
    assert refused["message"].startswith(
        "flavor a100x1 is full: waiting for 1 × nvidia.com/gpu (A100), 0 free; no jobs ahead; "
        "likely free in ~"
    )
    assert refused["message"].endswith("m (max runtime of 1 running job)")

    waiting = client.submit({"code": PRINT_DEVICES, "flavor": "a100x1"})
    queued = wait_until(
        lambda: (job := client.job(waiting["id"]))["position"] == 1 and job, "the job to queue"
    )
    assert queued["state"] == "queued"
    assert queued["reason"] == "waiting for 1 × nvidia.com/gpu (A100), 0 free; no jobs ahead"
    status, refused = lease(home, "k-2")
    assert status == 409 and "; 1 job ahead; likely free in" in refused["message"]

    assert call(home, "DELETE", f"{LEASES}/k-1")[0] == 200
    done = wait_state(client, waiting["id"], "succeeded")
    assert done["devices"] == [kernel["devices"]]
    log = home.data_dir / "logs" / waiting["id"] / "1" / "rank-0.log"
    assert f"CUDA_VISIBLE_DEVICES={kernel['devices'][0]}" in log.read_text()
    release.touch()
    wait_state(client, running["id"], "succeeded")


def test_a_quota_counts_leases_as_gpus(
    tmp_path: Path, home: AgentHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    start_agent(tmp_path, home, monkeypatch, group_quotas={"gpu-users": {"max_gpus": 1}})
    groups = ("gpu-users",)
    assert lease(home, "k-1", groups=groups)[0] == 201
    assert lease(home, "k-2", groups=groups) == (
        409,
        {"message": "user quota: 1 of 1 GPUs in use", "field": "flavor"},
    )
    assert lease(home, "k-other", user="other", groups=groups)[0] == 201  # another user's own


def test_a_lease_lives_as_long_as_its_kernel_process_even_across_agent_restarts(
    tmp_path: Path, home: AgentHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    start_agent(tmp_path, home, monkeypatch)
    kernel = subprocess.Popen(["sleep", "60"])
    try:
        assert lease(home, "k-1")[0] == 201
        assert call(home, "PUT", f"{LEASES}/k-1", {"pid": 2**22 + 7})[0] == 400
        status, bound = call(home, "PUT", f"{LEASES}/k-1", {"pid": kernel.pid})
        assert status == 200 and bound["pid"] == kernel.pid

        kill_agent_hard(home)
        # the next agent finds the lease in the store; it stays while the kernel runs, even
        # with a short idle timeout
        ensure_agent(home.socket, str(home.data_dir), 1)
        assert held(home) == {"kernel:k-1": bound["devices"]}
        time.sleep(2.5)
        status, listing = call(home, "GET", LEASES)
        assert status == 200 and listing["leases"] == [bound]

        kernel.kill()
        kernel.wait()
        pid = home.agent_pids()[0]
        # released within a few ticks; then, idle and holding nothing, the agent leaves
        wait_until(lambda: not alive(pid), "the agent to release the lease and exit", 60)
        with contextlib.closing(JobStore(home.data_dir / "jobs.sqlite")) as store:
            assert store.leases() == []
    finally:
        kernel.kill()
        kernel.wait()


def test_leases_expire_when_no_kernel_binds_them_or_their_process_is_gone() -> None:
    now = 1000.0
    unbound = Lease("k", ME, "a100x1", "python", (0,), (), 0.25, 0, now, now)
    assert leases.expiry(unbound, now + leases.UNBOUND_SECONDS - 1, None) is None
    assert leases.expiry(unbound, now + leases.UNBOUND_SECONDS + 1, None) == (
        f"no kernel process bound within {leases.UNBOUND_SECONDS:g} s"
    )
    bound = Lease("k", ME, "a100x1", "python", (0,), (), 0.25, 0, now, now, 42, 7)
    assert leases.expiry(bound, now + 10_000, None) is None  # alive: held however long
    assert leases.expiry(bound, now + 1, now) is None  # a restart's gap
    assert leases.expiry(bound, now + leases.GONE_GRACE_SECONDS, now) == (
        "kernel process 42 is gone"
    )


def test_the_store_keeps_leases(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    store = JobStore(path)
    first = Lease("k-1", ME, "a100x1", "python", (1,), (0,), 0.25, 2**26, 1.0, 1.0)
    store.add_lease(first)
    store.add_lease(Lease("k-2", ME, "cpu", "python", (), (), 0.25, 2**26, 2.0, 2.0))
    bound = store.bind_lease("k-1", 42, 7)
    assert bound == Lease("k-1", ME, "a100x1", "python", (1,), (0,), 0.25, 2**26, 1.0, 1.0, 42, 7)
    store.close()
    store = JobStore(path)
    try:
        assert [x.kernel_id for x in store.leases()] == ["k-1", "k-2"]
        assert store.lease("k-1") == bound
        assert store.release_lease("k-2") and not store.release_lease("k-2")
        assert bound.allocation().holder == "kernel:k-1"
    finally:
        store.close()
