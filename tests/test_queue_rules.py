"""Every way into the queue checks the same rules, as of now: a submission, a retry and a change
of priority pass the same entitlements (flavor, environment, priority class), fit and quotas.

Through a real local agent's socket, as a user's server calls it: the identity each request
states (user, groups, admin) is what the server learnt from the authenticator, so a user who
left a group is simply one whose next request names fewer groups.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jupyter_mlinfra.backends.local.agent_client import ensure_agent
from jupyter_mlinfra.client import ClientError, Connection, JobsClient

from .agents import AgentHome, private_agent
from .test_restarts import CPUS, WAIT_FOR_RELEASE, wait_state, wait_until, write_config

SETTINGS: dict[str, Any] = {
    "local_accelerators": [{"index": i, "model": "A100"} for i in range(2)],
    "flavors": [
        {"name": "cpu", "cpu": CPUS, "memory": "256Mi"},  # holds the whole machine
        {"name": "tiny", "cpu": 0.25, "memory": "64Mi"},
        {
            "name": "gpu",
            "accelerator": {"kind": "nvidia.com/gpu", "count": 1},
            "cpu": 0.25,
            "memory": "64Mi",
            "groups": ["research"],
        },
    ],
    "environments": [{"name": "python", "framework": "generic"}],
    "default_flavor": "tiny",
    "default_quota": {"max_queued_jobs": 2},
    "priority_entitlements": {"low": {}, "high": {"groups": ["research"]}},
}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentHome]:
    """One agent for the module, configured by ``SETTINGS``."""
    with private_agent("mlq-") as home, pytest.MonkeyPatch.context() as patch:
        config = write_config(tmp_path_factory.mktemp("config"), home, **SETTINGS)
        patch.setenv("JUPYTER_CONFIG_DIR", str(config))
        ensure_agent(home.socket, str(home.data_dir), 0)
        yield home


def as_user(home: AgentHome, user: str, *groups: str, admin: bool = False) -> JobsClient:
    identity = json.dumps({"user": user, "groups": list(groups), "admin": admin})
    return JobsClient(
        Connection("http://localhost/", source="local agent", socket=home.socket, identity=identity)
    )


def refusal(call: Any, *args: Any) -> tuple[int | None, str | None, str]:
    with pytest.raises(ClientError) as raised:
        call(*args)
    return raised.value.status, raised.value.field, raised.value.message


@pytest.fixture
def machine_held(home: AgentHome, tmp_path: Path) -> Iterator[None]:
    """A job of another user holds every CPU meanwhile, so what the test submits waits."""
    release = tmp_path / "release"
    holder = as_user(home, "holder")
    job = holder.submit(
        {"code": WAIT_FOR_RELEASE, "flavor": "cpu", "env": {"RELEASE": str(release)}}
    )
    wait_state(holder, job["id"], "running")
    yield
    release.touch()
    wait_state(holder, job["id"], "succeeded", "failed")


def cancel_all(client: JobsClient) -> None:
    for job in client.jobs(limit=1000)["jobs"]:
        if job["state"] not in ("succeeded", "failed", "cancelled", "preempted"):
            client.cancel(job["id"])


@pytest.mark.usefixtures("machine_held")
def test_retrying_cancelled_jobs_stays_within_the_queued_jobs_quota(home: AgentHome) -> None:
    ada = as_user(home, "ada")
    try:
        first, second = (ada.submit({"code": "pass", "name": n}) for n in ("first", "second"))
        code, field, message = refusal(ada.submit, {"code": "pass"})
        assert (code, field) == (422, "queue") and message.startswith("user quota: 2 of 2 queued")
        ada.cancel(first["id"])
        third = ada.submit({"code": "pass", "name": "third"})  # the freed place, taken
        # a retry is a way into the queue like any other: submit, cancel, retry stays at 2
        code, field, message = refusal(ada.retry, first["id"])
        assert (code, field) == (422, "queue") and message.startswith("user quota: 2 of 2 queued")
        assert ada.job(first["id"])["state"] == "cancelled"
        ada.cancel(third["id"])
        retried = ada.retry(first["id"])
        assert (retried["state"], retried["attempt"]) == ("queued", 2)
        queued = [j for j in ada.jobs(limit=100)["jobs"] if j["state"] == "queued"]
        assert sorted(j["id"] for j in queued) == sorted([first["id"], second["id"]])
    finally:
        cancel_all(ada)


def test_a_user_who_left_a_group_cannot_retry_its_flavors_jobs(home: AgentHome) -> None:
    member = as_user(home, "rui", "research")
    job = member.submit({"code": "print('on a gpu')", "flavor": "gpu", "priority": "high"})
    done = wait_state(member, job["id"], "succeeded", "failed")
    assert done["state"] == "succeeded", done

    left = as_user(home, "rui")  # the hub no longer lists rui in research
    code, field, message = refusal(left.retry, job["id"])
    assert (code, field) == (403, "flavor")
    assert message == "user 'rui' may not use flavor 'gpu'"
    assert left.job(job["id"])["attempt"] == 1

    # back in the group, but not for the class: a job retried keeps its class, judged now
    cpu_job = member.submit({"code": "pass", "priority": "high"})
    wait_state(member, cpu_job["id"], "succeeded", "failed")
    code, field, message = refusal(left.retry, cpu_job["id"])
    assert (code, field) == (403, "priority")
    assert message == "user 'rui' may not use priority class 'high' (yours: normal, low)"

    again = member.retry(job["id"])  # still entitled: it goes in
    assert (again["state"], again["attempt"]) == ("queued", 2)
    assert wait_state(member, job["id"], "succeeded", "failed")["state"] == "succeeded"


def test_priority_classes_are_entitlements(home: AgentHome) -> None:
    ada, rui = as_user(home, "ada"), as_user(home, "rui", "research")
    code, field, message = refusal(ada.submit, {"code": "pass", "priority": "high"})
    assert (code, field) == (403, "priority")
    assert message == "user 'ada' may not use priority class 'high' (yours: normal, low)"
    for client, priority in ((ada, "low"), (ada, "normal"), (rui, "high")):
        job = client.submit({"code": "pass", "priority": priority})
        assert job["priority"] == priority
        wait_state(client, job["id"], "succeeded", "failed")


@pytest.mark.usefixtures("machine_held")
def test_a_change_of_priority_passes_the_same_checks_counting_the_job_once(
    home: AgentHome,
) -> None:
    ada, admin = as_user(home, "ada"), as_user(home, "boss", admin=True)
    try:
        jobs = [ada.submit({"code": "pass", "name": n}) for n in ("a", "b")]  # 2 of 2 queued
        # only admins change priorities, to any class; the job already waits: not one too many
        code, field, _ = refusal(ada.set_priority, jobs[0]["id"], "low")
        assert (code, field) == (403, "priority")
        moved = admin.set_priority(jobs[0]["id"], "high")
        assert moved["priority"] == "high"
        code, field, message = refusal(admin.set_priority, jobs[1]["id"], "asap")
        assert (code, field) == (400, "priority") and "unknown class 'asap'" in message
    finally:
        cancel_all(ada)


def test_an_admin_retrying_someones_job_vouches_for_its_flavor(home: AgentHome) -> None:
    admin = as_user(home, "boss", admin=True)
    rui = as_user(home, "rui", "research")
    job = rui.submit({"code": "pass", "flavor": "gpu"})
    wait_state(rui, job["id"], "succeeded", "failed")
    again = admin.retry(job["id"])
    assert again["attempt"] == 2
    wait_until(lambda: rui.job(job["id"])["state"] == "succeeded", "the retried job to succeed")
