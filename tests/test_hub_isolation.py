"""Two hub users with OS accounts of their own, under the example hub configuration as it is:
neither can read, alter or run the other's code, data or results.

A real JupyterHub (``tests/hub.py``) runs examples/jupyterhub/jupyterhub_config.py as root:
LocalProcessSpawner starts each user's server as their own account, and the shared agent
(the hub's service, root too) runs each job's ranks as its owner's account, its default under
a hub. The accounts are real, created for this module and removed after it
(``os_accounts.py``): ``mlinfra-t-alice`` and ``mlinfra-t-bob``, users, and
``mlinfra-t-carol``, a hub admin. Each user's job attacks the other's jobs from inside (job
files, pushed and pulled variables, logs, the job store, the agent's hub token, their running
ranks) and each user's API calls ask for the other's jobs; issue 11's pull attack (one user's
job replacing the variables another's job pulled with a pickle that runs code when loaded)
is tried and fails.
"""

from __future__ import annotations

import asyncio
import base64
import json
import pwd
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import cloudpickle
import pytest
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from jupyter_mlinfra.client import ClientError, Connection, JobsClient
from jupyter_mlinfra.follow import FINISHED
from jupyter_mlinfra.watch import JobWatch

from .hub import Hub, HubError, running_hub
from .os_accounts import PREFIX, os_accounts
from .test_restarts import ranks_of, wait_state
from .test_run_as_owner import ATTEMPT

ALICE, BOB, CAROL = (PREFIX + name for name in ("alice", "bob", "carol"))
USERS = (ALICE, BOB)

SETTINGS: dict[str, Any] = {
    "flavors": [{"name": "cpu", "cpu": 0.25, "memory": "64Mi"}],
    "environments": [{"name": "python", "framework": "generic", "python": sys.executable}],
    "default_flavor": "cpu",
}

SLEEPER = "import time\nprint('sleeping', flush=True)\ntime.sleep(600)\n"
VICTIM = "result = secret + ', pulled back'\nprint('done', flush=True)\n"

ATTACK = (
    "import os, pickle, signal\n"
    + ATTEMPT
    + '''
class Payload:
    """Runs the attacker's command in whoever loads it."""
    def __reduce__(self):
        return (os.system, ("touch " + os.environ["MARKER"],))

def plant(path):
    with open(path, "wb") as planted:
        pickle.dump({"result": Payload()}, planted)

def replace(folder):
    mine = os.path.join(os.getcwd(), "planted.pkl")  # in this job's own directory
    plant(mine)
    os.replace(mine, os.path.join(folder, "pull.pkl"))

def read(path):
    with open(path, "rb") as handle:
        return handle.read()

def append(path):
    with open(path, "ab") as handle:
        handle.write(b"#")

done, running, logs = os.environ["DONE"], os.environ["RUNNING"], os.environ["LOGS"]
report = {
    "list their finished job": attempt(lambda: os.listdir(done)),
    "read its description": attempt(lambda: read(done + "/job.json")),
    "read its pushed variables": attempt(lambda: read(done + "/push.json")),
    "read its pulled variables": attempt(lambda: read(done + "/pull.pkl")),
    "overwrite its pulled variables": attempt(lambda: plant(done + "/pull.pkl")),
    "replace its pulled variables": attempt(lambda: replace(done)),
    "change their running job's code": attempt(lambda: append(running + "/job.json")),
    "change its entry point": attempt(lambda: append(running + "/entry.py")),
    "leave variables for it to pull": attempt(lambda: plant(running + "/pull.pkl")),
    "signal its rank": attempt(lambda: os.kill(int(os.environ["PID"]), signal.SIGTERM)),
    "read their log": attempt(lambda: read(logs + "/" + os.environ["DONE_ID"] + "/1/rank-0.log")),
    "list the logs": attempt(lambda: os.listdir(logs)),
    "list the jobs": attempt(lambda: os.listdir(os.environ["JOBS"])),
    "list the data directory": attempt(lambda: os.listdir(os.environ["DATA"])),
    "read the job store": attempt(lambda: read(os.environ["STORE"])),
    "write the job store": attempt(lambda: append(os.environ["STORE"])),
    "read the agent's environment": attempt(
        lambda: read("/proc/" + os.environ["AGENT_PID"] + "/environ")
    ),
}
environment = dict(os.environ)
uid = os.getuid()
'''
)

DENIED = {
    "list their finished job": "denied",
    "read its description": "denied",
    "read its pushed variables": "denied",
    "read its pulled variables": "denied",
    "overwrite its pulled variables": "denied",
    "replace its pulled variables": "denied",
    "change their running job's code": "denied",
    "change its entry point": "denied",
    "leave variables for it to pull": "denied",
    "signal its rank": "denied",
    "read their log": "denied",
    "list the logs": "denied",
    "list the jobs": "denied",
    "list the data directory": "denied",
    "read the job store": "denied",
    "write the job store": "denied",
    "read the agent's environment": "denied",
}

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def accounts() -> Iterator[dict[str, pwd.struct_passwd]]:
    with os_accounts("alice", "bob", "carol") as made:
        yield {PREFIX + name: account for name, account in made.items()}


@pytest.fixture(scope="module")
def hub(accounts: dict[str, pwd.struct_passwd]) -> Iterator[Hub]:
    with running_hub(SETTINGS, users=sorted(accounts), admins=[CAROL]) as hub:
        for user in accounts:
            hub.start_server(user)
        yield hub


@pytest.fixture(scope="module")
def clients(hub: Hub) -> dict[str, JobsClient]:
    """Each user's jobs client, on their own server through the hub's proxy."""
    return {
        user: JobsClient(Connection(f"{hub.url}user/{user}/", hub.token_for(user)), timeout=60)
        for user in (*USERS, CAROL)
    }


def pushed(value: Any) -> dict[str, str]:
    return {"secret": base64.b64encode(cloudpickle.dumps(value)).decode()}


@pytest.fixture(scope="module")
def jobs(clients: dict[str, JobsClient]) -> Iterator[dict[str, dict[str, Any]]]:
    """Per user: a running job and a finished one, both with a pushed secret, the finished
    one with variables pulled back."""
    made: dict[str, dict[str, Any]] = {}
    for user in USERS:
        client, secret = clients[user], pushed(f"{user}'s secret")
        running = client.submit({"code": SLEEPER, "push": secret})
        done = client.submit({"code": VICTIM, "push": secret, "pull": ["result"]})
        made[user] = {"running": running, "done": done}
    try:
        for user in USERS:
            client = clients[user]
            wait_state(client, made[user]["running"]["id"], "running", timeout=120)
            done = made[user]["done"]["id"]
            finished = wait_state(client, done, "succeeded", "failed", timeout=120)
            assert finished["state"] == "succeeded", finished
        yield made
    finally:
        for user in USERS:
            try:
                clients[user].cancel(made[user]["running"]["id"])
            except ClientError as error:
                assert error.status == 409, error.message  # it ended already


def agent_pid(hub: Hub, token: str) -> int:
    status = hub.request("GET", f"{hub.agent_url}mlinfra/agent/v1/status", token)
    return int(status["pid"])


def hub_service_token(pid: int) -> str:
    """The agent's own hub token, read as root from its environment."""
    pairs = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    found = dict(p.decode().split("=", 1) for p in pairs if b"=" in p)
    token = found["JUPYTERHUB_API_TOKEN"]
    assert len(token) >= 16
    return token


def test_each_users_server_and_jobs_run_as_their_own_account(
    hub: Hub, clients: dict[str, JobsClient], accounts: dict[str, pwd.struct_passwd]
) -> None:
    for user in USERS:
        me = clients[user].whoami()
        assert me["isolation"] == {
            "ranks_run_as": user,
            "isolated": True,
            "reason": f"your jobs run as the OS account {user!r}, in job directories only it "
            "can open; other users' jobs run as their own accounts",
        }
        servers = [
            p
            for p in Path("/proc").iterdir()
            if p.name.isdigit() and b"jupyterhub.singleuser" in _cmdline(p)
        ]
        assert accounts[user].pw_uid in {_uid(p) for p in servers}
    assert "ranks run as their owners' OS accounts" in hub.log()
    assert "every hub user's jobs run as" not in hub.log()


def _cmdline(process: Path) -> bytes:
    try:
        return (process / "cmdline").read_bytes()
    except OSError:
        return b""


def _uid(process: Path) -> int:
    try:
        return process.stat().st_uid
    except OSError:
        return -1


def test_neither_users_job_can_read_alter_or_run_the_others(
    hub: Hub,
    clients: dict[str, JobsClient],
    jobs: dict[str, dict[str, Any]],
    accounts: dict[str, pwd.struct_passwd],
) -> None:
    data = hub.agent.data_dir
    pid = agent_pid(hub, clients[ALICE].connection.token)
    service_token = hub_service_token(pid)
    attacks = {}
    for user, other in ((ALICE, BOB), (BOB, ALICE)):
        theirs = jobs[other]
        [(_, _, their_rank, _, _)] = ranks_of(hub.agent, theirs["running"]["id"])
        env = {
            "DONE": str(data / "jobs" / theirs["done"]["id"] / "1"),
            "DONE_ID": theirs["done"]["id"],
            "RUNNING": str(data / "jobs" / theirs["running"]["id"] / "1"),
            "PID": str(their_rank),
            "LOGS": str(data / "logs"),
            "JOBS": str(data / "jobs"),
            "DATA": str(data),
            "STORE": str(data / "jobs.sqlite"),
            "AGENT_PID": str(pid),
            "MARKER": str(hub.root / f"{user}-ran-code-in-a-victims-process"),
        }
        pull = ["report", "environment", "uid"]
        attacks[user] = clients[user].submit({"code": ATTACK, "env": env, "pull": pull})
    for user in USERS:
        client, attack = clients[user], attacks[user]
        finished = wait_state(client, attack["id"], "succeeded", "failed", timeout=120)
        assert finished["state"] == "succeeded", "".join(client.logs(attack["id"]))
        found = client.result(attack["id"])
        assert found["uid"] == accounts[user].pw_uid
        assert found["report"] == DENIED, user
        leaked = [k for k in found["environment"] if k.startswith(("JUPYTERHUB_", "JPY_"))]
        assert leaked == []
        assert not any(service_token in value for value in found["environment"].values())

    # nothing ran, nothing changed: each user's running job still runs, and pulls its own
    for user in USERS:
        client, mine = clients[user], jobs[user]
        assert client.job(mine["running"]["id"])["state"] == "running"
        assert client.result(mine["done"]["id"]) == {"result": f"{user}'s secret, pulled back"}
    assert not list(hub.root.glob("*-ran-code-in-a-victims-process"))


def test_the_data_directory_is_the_agents_and_each_job_directory_its_owners(
    hub: Hub, jobs: dict[str, dict[str, Any]], accounts: dict[str, pwd.struct_passwd]
) -> None:
    data = hub.agent.data_dir

    def owner_and_mode(path: Path) -> tuple[int, int]:
        info = path.stat()
        return info.st_uid, stat.S_IMODE(info.st_mode)

    assert owner_and_mode(data) == (0, 0o711)  # passable to job directories, never listed
    assert owner_and_mode(data / "jobs") == (0, 0o711)
    assert owner_and_mode(data / "jobs.sqlite") == (0, 0o600)
    assert owner_and_mode(data / "logs") == (0, 0o700)
    for user in USERS:
        job_id = jobs[user]["done"]["id"]
        assert owner_and_mode(data / "jobs" / job_id) == (0, 0o711)
        assert owner_and_mode(data / "jobs" / job_id / "1") == (accounts[user].pw_uid, 0o700)
        assert owner_and_mode(data / "logs" / job_id / "1") == (0, 0o700)
    others = [p for p in data.iterdir() if p.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO)]
    assert sorted(p.name for p in others) == ["jobs"]


def test_the_api_gives_each_user_none_of_the_others_jobs_and_only_owners_pull(
    hub: Hub, clients: dict[str, JobsClient], jobs: dict[str, dict[str, Any]]
) -> None:
    for user, other in ((ALICE, BOB), (BOB, ALICE)):
        client, theirs = clients[user], jobs[other]["done"]["id"]
        calls = (client.job, client.events, client.result, client.cancel, client.retry)
        for call in calls:
            with pytest.raises(ClientError) as refused:
                call(theirs)
            assert refused.value.status == 404, refused.value.message
        with pytest.raises(ClientError) as logs:
            "".join(client.logs(theirs))
        assert logs.value.status == 404
        with pytest.raises(ClientError) as reprioritise:
            client.set_priority(theirs, "high")
        assert reprioritise.value.status == 403
        with pytest.raises(ClientError) as listing:
            client.jobs(owner=other)
        assert listing.value.status == 403
        # nor directly at the shared agent, with an identity header claiming the other
        forged = {"X-MLInfra-Identity": json.dumps({"user": other, "admin": True})}
        url = f"{hub.agent_url}mlinfra/api/v1/jobs/{theirs}/result"
        with pytest.raises(HubError) as direct:
            hub.request("GET", url, client.connection.token, headers=forged)
        assert direct.value.status == 404

    # the admin sees alice's job, and is refused its results: loading them would run her code
    admin, hers = clients[CAROL], jobs[ALICE]["done"]["id"]
    assert admin.job(hers)["owner"] == ALICE
    with pytest.raises(ClientError) as pulled:
        admin.result(hers)
    assert pulled.value.status == 403
    assert pulled.value.message == (
        f"job {hers} is {ALICE}'s: only they may pull its results, which are pickles (loading "
        "one runs code of whoever wrote it); its logs and events show how it went"
    )
    assert "".join(admin.logs(hers)) == "done\n"


def test_issue_11s_pull_attack_fails(hub: Hub, clients: dict[str, JobsClient]) -> None:
    """bob's job replaces the variables alice's job pulled with a pickle that runs his code
    when loaded; alice's pull (as %mlinfra pull does) loads her own."""
    alice, bob = clients[ALICE], clients[BOB]
    victim = alice.submit({"code": VICTIM, "push": pushed("42"), "pull": ["result"]})
    finished = wait_state(alice, victim["id"], "succeeded", "failed", timeout=120)
    assert finished["state"] == "succeeded"
    marker = hub.root / "bob-ran-code-in-alices-kernel"
    folder = hub.agent.data_dir / "jobs" / victim["id"] / "1"
    plant = (
        "import os, pickle\n"
        "class Payload:\n"
        "    def __reduce__(self):\n"
        f"        return (os.system, ('touch {marker}',))\n"
        f"with open('{folder}/pull.pkl', 'wb') as f:\n"
        "    pickle.dump({'result': Payload()}, f)\n"
    )
    attack = bob.submit({"code": plant})
    ended = wait_state(bob, attack["id"], "succeeded", "failed", timeout=120)
    pulled = alice.result(victim["id"])
    assert not marker.exists(), "bob's code ran in alice's process"
    assert pulled == {"result": "42, pulled back"}
    assert ended["state"] == "failed"
    assert f"PermissionError: [Errno 13] Permission denied: '{folder}/pull.pkl'" in ended["message"]


async def _changes_of(hub: Hub, token: str, out: list[dict[str, Any]]) -> None:
    """Follow the shared agent's changes with ``token`` (as a user's server does), into ``out``."""
    url = urlsplit(hub.agent_url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        path = f"{url.path}mlinfra/agent/v1/changes"
        head = f"Host: {url.netloc}\r\nAuthorization: token {token}\r\n"
        writer.write(f"GET {path} HTTP/1.0\r\n{head}\r\n".encode())
        assert (await reader.readline()).split()[1] == b"200"
        while (await reader.readline()).strip():
            pass
        while line := await reader.readline():
            out.append(json.loads(line))
    finally:
        writer.close()


def test_live_updates_carry_each_user_only_their_own_jobs(
    hub: Hub, clients: dict[str, JobsClient]
) -> None:
    """Alice's tab, through the hub's proxy to her server, and her token at the shared agent:
    her jobs' changes arrive, Bob's never."""

    async def run() -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, str]]:
        request = HTTPRequest(
            f"{hub.url}user/{ALICE}/mlinfra/api/v1/live".replace("http", "ws", 1),
            headers={"Authorization": f"token {hub.token_for(ALICE)}"},
        )
        tab = await websocket_connect(request)
        pushed: list[dict[str, Any]] = []
        at_agent: list[dict[str, Any]] = []
        following = asyncio.ensure_future(_changes_of(hub, hub.token_for(ALICE), at_agent))
        loop = asyncio.get_running_loop()
        try:
            while True:  # until her server follows the agent
                message = json.loads(await asyncio.wait_for(tab.read_message(), 120) or "{}")
                if message.get("live"):
                    break
            theirs = await loop.run_in_executor(None, clients[BOB].submit, {"code": "1"})
            mine = await loop.run_in_executor(None, clients[ALICE].submit, {"code": "1"})
            while not any(
                m["type"] == "job"
                and m["job"]["id"] == mine["id"]
                and m["job"]["state"] in ("succeeded", "failed")
                for m in pushed
            ):
                pushed.append(json.loads(await asyncio.wait_for(tab.read_message(), 120) or "{}"))
            finished = await loop.run_in_executor(
                None, lambda: wait_state(clients[BOB], theirs["id"], "succeeded", timeout=120)
            )
            assert finished["state"] == "succeeded"
            return pushed, at_agent, {"mine": mine["id"], "theirs": theirs["id"]}
        finally:
            tab.close()
            following.cancel()

    pushed, at_agent, ids = asyncio.run(run())
    jobs = [m["job"] for m in pushed if m["type"] == "job"]
    assert ids["mine"] in {j["id"] for j in jobs}
    assert {j["owner"] for j in jobs} == {ALICE}
    followed = [m["job"] for m in at_agent if m["type"] == "job"]
    assert ids["mine"] in {j["id"] for j in followed}
    assert {j["owner"] for j in followed} == {ALICE}


def test_a_client_follows_her_job_pushed_through_the_hub(clients: dict[str, JobsClient]) -> None:
    """The Python client's watch of a job (CLI, magics, widgets) opens the same websocket
    through the hub's proxy with her token: with an hour between asks, only a push can tell
    it that her job ran and ended."""
    alice = clients[ALICE]
    job = alice.submit({"code": "import time\ntime.sleep(1)\n"})  # still going when read
    with JobWatch(alice, job["id"], poll_seconds=3600) as watch:
        assert watch.job["state"] not in FINISHED, watch.job
        while watch.job["state"] not in FINISHED:
            assert watch.next(120) is not None, watch.job
    assert watch.job["state"] == "succeeded", watch.job
