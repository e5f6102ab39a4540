"""Admins' part of the jobs API on a real server and agent: reprioritising a job, and usage
against quotas of everybody. (Under JupyterHub, tests/test_hub.py checks the same with hub
admins and two users.)"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from .conftest import ME
from .jobs_client import call, failure, wait_for

HOLD = {"code": "import time; time.sleep(120)", "flavor": "cpu"}


class TestAsAdmin:
    @pytest.fixture
    def mlinfra_config(self, mlinfra_config: dict[str, Any]) -> dict[str, Any]:
        return {
            **mlinfra_config,
            "admin_users": [ME],
            "user_quotas": {ME: {"max_running_jobs": 1}},
            "preemption_grace_seconds": 1,
        }

    async def test_a_reprioritised_job_moves_ahead_in_the_queue(self, jp_fetch: Any) -> None:
        running = await call(jp_fetch, "jobs", "POST", {**HOLD, "name": "running"})
        await wait_for(jp_fetch, running["id"], {"starting", "running"})
        first = await call(jp_fetch, "jobs", "POST", {**HOLD, "name": "first"})
        second = await call(jp_fetch, "jobs", "POST", {**HOLD, "name": "second"})

        async def order_becomes(names: list[str]) -> None:
            """Positions are those of the last scheduling pass: wait for one that ordered
            the queue so (a pass comes every second, later on a loaded machine)."""
            deadline = time.monotonic() + 30
            while (now := [j["name"] for j in (await call(jp_fetch, "queue"))["jobs"]]) != names:
                assert time.monotonic() < deadline, now
                await asyncio.sleep(0.2)

        await order_becomes(["first", "second"])
        moved = await call(jp_fetch, f"jobs/{second['id']}", "PATCH", {"priority": "high"})
        assert moved["priority"] == "high"
        await order_becomes(["second", "first"])
        events = (await call(jp_fetch, f"jobs/{second['id']}/events"))["events"]
        assert events[-1]["reason"] == "Reprioritised"
        assert events[-1]["message"] == f"priority high by {ME}"

        path = f"jobs/{first['id']}"
        code, error = await failure(jp_fetch, path, "PATCH", {"priority": "urgent"})
        assert (code, error["field"]) == (400, "priority")
        assert "unknown class 'urgent' (known: high, low, normal)" in error["message"]
        code, error = await failure(jp_fetch, path, "PATCH", {"priority": "high", "name": "x"})
        assert (code, error["field"]) == (400, "priority")
        await call(jp_fetch, path, "DELETE")
        code, error = await failure(jp_fetch, path, "PATCH", {"priority": "high"})
        assert code == 409
        for job in (running, second):
            await call(jp_fetch, f"jobs/{job['id']}", "DELETE")

    async def test_usage_against_quotas_per_user_and_group(self, jp_fetch: Any) -> None:
        job = await call(jp_fetch, "jobs", "POST", {**HOLD, "name": "held"})
        await wait_for(jp_fetch, job["id"], {"starting", "running"})
        queued = await call(jp_fetch, "jobs", "POST", {**HOLD, "name": "waits"})
        report = await call(jp_fetch, "usage")
        [me] = [u for u in report["users"] if u["user"] == ME]
        assert me["admin"] is True and me["groups"] == ["gpu-users"]
        assert me["quota"] == {"max_gpus": None, "max_running_jobs": 1, "max_queued_jobs": None}
        assert me["usage"] == {"gpus": 0, "running_jobs": 1, "queued_jobs": 1, "kernels": 0}
        [group] = [g for g in report["groups"] if g["group"] == "gpu-users"]
        assert group["members"] == [ME]
        assert group["member_quota"]["max_gpus"] == 4
        assert group["usage"]["running_jobs"] == 1
        for each in (job, queued):
            await call(jp_fetch, f"jobs/{each['id']}", "DELETE")


async def test_only_admins_reprioritise_or_see_usage(jp_fetch: Any) -> None:
    job = await call(jp_fetch, "jobs", "POST", {"code": "pass", "name": "mine"})
    code, error = await failure(jp_fetch, f"jobs/{job['id']}", "PATCH", {"priority": "high"})
    assert (code, error["message"]) == (403, "only admins may change a job's priority")
    code, error = await failure(jp_fetch, "usage")
    assert (code, error["message"]) == (403, "only admins see everybody's usage")
