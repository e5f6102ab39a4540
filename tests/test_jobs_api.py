"""Jobs through a real jupyter server and a real local agent, with real rank processes."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from .agents import AgentHome
from .jobs_client import TERMINAL, call, failure, wait_for
from .waits import until

SOCKET_PAIR = """
import os, socket
rank, port = int(os.environ["RANK"]), int(os.environ["MASTER_PORT"])
if rank == 0:
    server = socket.create_server(("127.0.0.1", port))
    conn, _ = server.accept()
    conn.sendall(b"from rank 0")
    print("rank 0 got:", conn.recv(100).decode())
else:
    import time
    deadline = time.monotonic() + 60  # rank 0 may take long to listen on a loaded machine
    while True:
        try:
            conn = socket.create_connection(("127.0.0.1", port))
            break
        except OSError:
            assert time.monotonic() < deadline, "rank 0 never listened"
            time.sleep(0.05)
    conn.sendall(b"from rank 1")
    print("rank 1 got:", conn.recv(100).decode())
"""


async def test_two_rank_job_exchanges_data_and_logs_both_ranks(jp_fetch: Any) -> None:
    job = await call(
        jp_fetch, "jobs", "POST", {"code": SOCKET_PAIR, "procs_per_node": 2, "name": "pair"}
    )
    assert job["state"] == "queued" and job["flavor"] == "cpu" and job["environment"] == "python"
    done = await wait_for(jp_fetch, job["id"], TERMINAL)
    assert done["state"] == "succeeded", done
    assert done["exit_code"] == 0
    logs = await call(jp_fetch, f"jobs/{job['id']}/logs")
    assert "[rank 0] rank 0 got: from rank 1" in logs
    assert "[rank 1] rank 1 got: from rank 0" in logs
    assert await call(jp_fetch, f"jobs/{job['id']}/logs", rank="1") == "rank 1 got: from rank 0\n"
    events = (await call(jp_fetch, f"jobs/{job['id']}/events"))["events"]
    assert [e["condition"] for e in events] == ["Queued", "Admitted", "Started", "Finished"]


async def test_gpu_job_gets_its_devices(jp_fetch: Any) -> None:
    code = "import os; print('visible', os.environ['CUDA_VISIBLE_DEVICES'])"
    job = await call(jp_fetch, "jobs", "POST", {"code": code, "flavor": "a100x1"})
    assert job["procs_per_node"] == 1  # one per accelerator of the flavor
    done = await wait_for(jp_fetch, job["id"], TERMINAL)
    assert done["state"] == "succeeded", done
    assert done["devices"] == [[0]]
    logs = await call(jp_fetch, f"jobs/{job['id']}/logs")
    assert logs == "visible 0\n"


@pytest.mark.parametrize(
    ("body", "status", "field", "words"),
    [
        ({"code": "1", "gpus": 2}, 400, "gpus", "unknown field"),
        ({"code": "1", "script": "x.py"}, 400, "code", "exactly one of code"),
        ({"code": "1", "source": "print(1)"}, 400, "source", "only a script has a source"),
        ({"code": "1", "nodes": 0}, 400, "nodes", "between 1 and 64"),
        ({"code": "1", "procs_per_node": 0}, 400, "procs_per_node", "between 1 and 256, got 0"),
        ({"code": "1", "procs_per_node": -2}, 400, "procs_per_node", "between 1 and 256"),
        ({"code": "1", "priority": "urgent"}, 400, "priority", "unknown class 'urgent'"),
        # priority classes are entitlements: a user has the default one (and those granted)
        ({"code": "1", "priority": "high"}, 403, "priority", "may not use priority class 'high'"),
        ({"code": "1", "flavor": "nope"}, 404, "flavor", "unknown flavor 'nope'"),
        ({"code": "1", "flavor": "a100x4"}, 403, "flavor", "may not use flavor 'a100x4'"),
        ({"code": "1", "flavor": "a100x1", "nodes": 5}, 422, "flavor", ""),
        (
            {"code": "1", "nodes": 64, "procs_per_node": 256},
            422,
            "procs_per_node",
            "256 processes per node take 16384 CPUs in all (a CPU each",
        ),
    ],
)
async def test_bad_submissions_are_refused_with_the_field(
    jp_fetch: Any, body: dict[str, Any], status: int, field: str, words: str
) -> None:
    code, error = await failure(jp_fetch, "jobs", "POST", body)
    assert (code, error["field"]) == (status, field), error
    assert words in error["message"]


async def test_processes_beyond_the_flavors_are_counted_as_cpus(jp_fetch: Any) -> None:
    """The cpu flavor is sized for one process (1 CPU): a job of two holds a CPU for each, and
    its ranks are pinned to those two, a thread pool of one each; one process per accelerator
    stays within the flavor's share."""
    hold = (
        "import os, time\n"
        "print(len(os.sched_getaffinity(0)), os.environ['OMP_NUM_THREADS'], flush=True)\n"
        "time.sleep(60)"
    )
    before = (await call(jp_fetch, "capacity"))["cpu"]["free"]
    job = await call(jp_fetch, "jobs", "POST", {"code": hold, "procs_per_node": 2})
    await wait_for(jp_fetch, job["id"], {"running"})
    assert before - (await call(jp_fetch, "capacity"))["cpu"]["free"] == 2
    logs = await until(lambda: _both_ranks(jp_fetch, job["id"]))
    assert sorted(logs) == ["[rank 0] 2 1", "[rank 1] 2 1"]
    await call(jp_fetch, f"jobs/{job['id']}", "DELETE")
    gpu = await call(jp_fetch, "jobs", "POST", {"code": hold, "flavor": "a100x1"})
    await wait_for(jp_fetch, gpu["id"], {"running"})
    assert before - (await call(jp_fetch, "capacity"))["cpu"]["free"] == 0.5  # the flavor's
    await call(jp_fetch, f"jobs/{gpu['id']}", "DELETE")


async def _both_ranks(jp_fetch: Any, job_id: str) -> list[str] | None:
    lines = (await call(jp_fetch, f"jobs/{job_id}/logs")).splitlines()
    return lines if len(lines) == 2 else None


async def test_idempotency_key(jp_fetch: Any) -> None:
    body = {"code": "print(1)", "idempotency_key": "cell-42"}
    first = await call(jp_fetch, "jobs", "POST", body)
    again = await call(jp_fetch, "jobs", "POST", body)
    assert again["id"] == first["id"]
    code, error = await failure(jp_fetch, "jobs", "POST", {**body, "code": "print(2)"})
    assert (code, error["field"]) == (409, "idempotency_key")


async def test_the_queued_jobs_quota_refuses_more(jp_fetch: Any) -> None:
    hold = {"code": "import time; time.sleep(60)", "flavor": "a100x1"}
    jobs = [await call(jp_fetch, "jobs", "POST", hold) for _ in range(4)]  # all 4 GPUs
    for job in jobs:
        await wait_for(jp_fetch, job["id"], {"running"})
    jobs += [await call(jp_fetch, "jobs", "POST", hold) for _ in range(10)]  # group quota: 10
    code, error = await failure(jp_fetch, "jobs", "POST", hold)
    assert (code, error["field"]) == (422, "queue")
    assert error["message"].startswith("user quota: 10 of 10 queued jobs")
    for job in jobs:
        await call(jp_fetch, f"jobs/{job['id']}", "DELETE")


class TestWithoutQuotas:
    @pytest.fixture
    def mlinfra_config(self, mlinfra_config: dict[str, Any]) -> dict[str, Any]:
        return {**mlinfra_config, "default_quota": {}, "group_quotas": {}}

    async def test_concurrent_submissions_with_keys_create_each_job_once(
        self, jp_fetch: Any
    ) -> None:
        bodies = [{"code": "pass", "idempotency_key": f"k{i}", "name": f"n{i}"} for i in range(200)]
        results = await asyncio.gather(
            *(call(jp_fetch, "jobs", "POST", body) for body in bodies + bodies)
        )
        assert len({job["id"] for job in results}) == 200
        page = await call(jp_fetch, "jobs", limit="1000")
        assert len(page["jobs"]) == 200


async def test_failing_rank_fails_the_job_with_its_traceback_and_retries(jp_fetch: Any) -> None:
    code = (
        "import os, time\n"
        "if os.environ['RANK'] == '1':\n"
        "    raise ValueError('rank one broke')\n"
        "time.sleep(30)"
    )
    body = {"code": code, "procs_per_node": 2, "retry": {"max_restarts": 1, "on_exit_codes": [1]}}
    job = await call(jp_fetch, "jobs", "POST", body)
    done = await wait_for(jp_fetch, job["id"], TERMINAL, timeout=60)
    assert done["state"] == "failed"
    assert done["attempt"] == 2  # retried once on exit code 1, then gave up
    assert done["exit_code"] == 1
    assert "ValueError: rank one broke" in done["message"]
    assert "<cell>" in done["message"]
    conditions = [
        e["condition"] for e in (await call(jp_fetch, f"jobs/{job['id']}/events"))["events"]
    ]
    assert conditions.count("Requeued") == 1 and conditions[-1] == "Finished"


async def test_cancel_a_running_gang_leaves_no_process(
    jp_fetch: Any, agent_home: AgentHome
) -> None:
    code = "import time\nwhile True: time.sleep(0.1)"
    job = await call(jp_fetch, "jobs", "POST", {"code": code, "procs_per_node": 2})
    await wait_for(jp_fetch, job["id"], {"running"})
    assert len(agent_home.live_ranks()) == 2
    cancelled = await call(jp_fetch, f"jobs/{job['id']}", "DELETE")
    assert cancelled["state"] == "cancelled"
    assert agent_home.live_ranks() == []
    code, _ = await failure(jp_fetch, f"jobs/{job['id']}", "DELETE")
    assert code == 409


async def test_queued_job_shows_position_reason_and_eta(jp_fetch: Any) -> None:
    hold = "import time; time.sleep(60)"
    body = {"code": hold, "flavor": "a100x1", "max_runtime_seconds": 60}
    running = [await call(jp_fetch, "jobs", "POST", body) for _ in range(4)]
    for job in running:
        await wait_for(jp_fetch, job["id"], {"running"})
    waiting = await call(jp_fetch, "jobs", "POST", {**body, "name": "fifth"})
    deadline = time.monotonic() + 30  # until a scheduling pass has judged it
    while not (waiting := await call(jp_fetch, f"jobs/{waiting['id']}"))["reason"]:
        assert time.monotonic() < deadline, waiting
        await asyncio.sleep(0.1)
    assert waiting["state"] == "queued"
    assert waiting["position"] == 1
    assert "0 free" in waiting["reason"] or "quota" in waiting["reason"]
    assert waiting["eta"] is not None and waiting["eta"] > time.time()
    queue = await call(jp_fetch, "queue")
    assert [j["id"] for j in queue["jobs"]] == [waiting["id"]]
    for job in [*running, waiting]:
        await call(jp_fetch, f"jobs/{job['id']}", "DELETE")


async def test_users_see_only_their_jobs(jp_fetch: Any) -> None:
    with pytest.raises(HTTPClientError) as raised:
        await call(jp_fetch, "jobs", owner="somebody-else")
    assert raised.value.response is not None
    code, error = raised.value.code, json.loads(raised.value.response.body)
    assert (code, error["field"]) == (403, "owner")
    code, _ = await failure(jp_fetch, "jobs/0123456789ab")
    assert code == 404


class TestPreemption:
    @pytest.fixture
    def mlinfra_config(self, mlinfra_config: dict[str, Any]) -> dict[str, Any]:
        # the default readiness timeout: with a short one, a rank slow to start on a loaded
        # machine would be evicted for that too, and be taken for the preemption's victim
        return {
            **mlinfra_config,
            "default_quota": {},
            "group_quotas": {},  # full capacity, not a quota, is what makes it preempt
            "preemption": True,
            "preemption_grace_seconds": 2,
            "priority_entitlements": {"low": {}, "high": {"groups": ["gpu-users"]}},
        }

    async def test_a_high_priority_job_preempts_the_newest_low_one(self, jp_fetch: Any) -> None:
        hold = {"code": "import time; time.sleep(120)", "flavor": "a100x1", "priority": "low"}
        low = [await call(jp_fetch, "jobs", "POST", {**hold, "name": f"low{i}"}) for i in range(4)]
        for job in low:
            await wait_for(jp_fetch, job["id"], {"running"})
        urgent = await call(
            jp_fetch, "jobs", "POST", {**hold, "priority": "high", "name": "urgent"}
        )
        await wait_for(jp_fetch, urgent["id"], {"running"}, timeout=30)
        now = [await call(jp_fetch, f"jobs/{job['id']}") for job in low]
        # exactly one victim, the one that started last (least work lost); the others run on
        assert sorted(j["state"] for j in now) == ["queued", "running", "running", "running"]
        [victim] = [j for j in now if j["state"] == "queued"]
        assert victim["started"] is None and victim["attempt"] == 2
        events = (await call(jp_fetch, f"jobs/{victim['id']}/events"))["events"]
        evicted = [e for e in events if e["condition"] in ("Evicted", "Preempted")]
        assert [e["condition"] for e in evicted] == ["Evicted", "Preempted"]
        assert evicted[0]["message"] == f"preempted by job {urgent['id']} of higher priority"
        for job in [*low, urgent]:
            await call(jp_fetch, f"jobs/{job['id']}", "DELETE")


class TestReadiness:
    @pytest.fixture
    def mlinfra_config(self, mlinfra_config: dict[str, Any], tmp_path: Any) -> dict[str, Any]:
        slow = tmp_path / "slow-python"
        # an interpreter that takes far longer to start than the readiness timeout allows
        slow.write_text(f'#!/bin/sh\nsleep 30\nexec {sys.executable} "$@"\n')
        slow.chmod(0o755)
        environments = [
            *mlinfra_config["environments"],
            {"name": "slow", "python": str(slow)},
        ]
        return {**mlinfra_config, "environments": environments, "readiness_timeout_seconds": 1}

    async def test_a_gang_not_ready_in_time_is_evicted_and_backs_off(self, jp_fetch: Any) -> None:
        job = await call(jp_fetch, "jobs", "POST", {"code": "pass", "environment": "slow"})
        deadline = time.monotonic() + 30
        while (current := await call(jp_fetch, f"jobs/{job['id']}"))["attempt"] < 2:
            assert time.monotonic() < deadline, current
            await asyncio.sleep(0.1)
        # the backoff is 1 s: a slow poll may see the next attempt admitted already
        if current["state"] == "queued":
            assert current["reason"].startswith("backing off after: 0 of 1 ranks ready after 1 s")
        else:
            assert current["state"] in {"admitted", "starting"}, current
        events = (await call(jp_fetch, f"jobs/{job['id']}/events"))["events"]
        assert ("Evicted", "0 of 1 ranks ready after 1 s; retry in 1 s") in [
            (e["condition"], e["message"]) for e in events
        ]
        await call(jp_fetch, f"jobs/{job['id']}", "DELETE")
