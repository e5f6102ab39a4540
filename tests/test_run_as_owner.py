"""An agent that runs each job's ranks as the job owner's OS account (run_ranks_as='owner'),
as a JupyterHub shares it among users with accounts of their own: a real agent started as
root, real ranks under existing unprivileged accounts (``nobody``, and ``daemon`` mapped from
another user name), never a change to the system's accounts.
"""

from __future__ import annotations

import base64
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from jupyter_mlinfra.backends.local.accounts import (
    NoAccount,
    RankAccounts,
    cannot_run_as_owners,
)
from jupyter_mlinfra.backends.local.agent_client import ensure_agent
from jupyter_mlinfra.client import ClientError, Connection, JobsClient

from .agents import AgentHome, private_agent
from .optional import need
from .test_cli import clean_env, mlinfra
from .test_restarts import (
    alive,
    kill_agent_hard,
    ranks_of,
    wait_state,
    wait_until,
    write_config,
)

MAPPED = "bob"
"""A user name mapped to the ``daemon`` account (whatever account of its own it may have)."""
UNKNOWN = "mlinfra-test-no-such-account"

ATTEMPT = """
def attempt(action):
    try:
        action()
    except PermissionError:
        return "denied"
    return "allowed"
"""
"""Job code's helper: whether an action on another's files was allowed or denied."""

WHO_AM_I = (
    "import os\n"
    + ATTEMPT
    + """
me = {
    "uid": os.getuid(),
    "gid": os.getgid(),
    "groups": sorted(os.getgroups()),
    "env": [os.environ.get(k) for k in ("HOME", "USER", "LOGNAME")],
    "cwd": os.stat(os.getcwd()).st_uid,
    "hub_token": [k for k in ("JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN") if k in os.environ],
    "pushed": pushed + 1,
    "other_job": attempt(lambda: os.listdir(os.environ["OTHER_JOB"])),
    "other_description": attempt(lambda: open(os.environ["OTHER_JOB"] + "/job.json").read()),
    "store": attempt(lambda: open(os.environ["STORE"], "rb").read()),
    "jobs": attempt(lambda: os.listdir(os.environ["JOBS"])),
    "logs": attempt(lambda: os.listdir(os.environ["LOGS"])),
}
print("ran as", me["uid"])
"""
)

SLEEPER = """
import os, time
print("sleeping as", os.getuid(), flush=True)
time.sleep(300)
"""


def account(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pytest.fail(f"this test needs the system account {name!r}", pytrace=False)


def test_hub_users_are_the_accounts_of_their_names_unless_mapped() -> None:
    daemon = account("daemon")
    accounts = RankAccounts("owner", {MAPPED: "daemon", "admin": "root"})
    mapped = accounts.for_owner(MAPPED)
    assert mapped is not None
    assert (mapped.name, mapped.uid, mapped.gid) == ("daemon", daemon.pw_uid, daemon.pw_gid)
    assert mapped.env() == {
        "HOME": daemon.pw_dir,
        "USER": "daemon",
        "LOGNAME": "daemon",
        "SHELL": daemon.pw_shell,
    }
    same = accounts.for_owner("nobody")
    assert same is not None and same.uid == account("nobody").pw_uid
    with pytest.raises(NoAccount, match=r"user 'admin' maps to 'root', a superuser account"):
        accounts.for_owner("admin")
    with pytest.raises(NoAccount, match=r"user 'root' maps to 'root'"):
        accounts.for_owner("root")
    with pytest.raises(NoAccount, match=rf"user '{UNKNOWN}' has no OS account"):
        accounts.for_owner(UNKNOWN)
    assert RankAccounts().for_owner(UNKNOWN) is None  # the agent's own account


def runs_as_nobody(python: str) -> bool:
    command = [python, "-c", "pass"]
    user = account("nobody").pw_uid
    try:
        return subprocess.run(command, user=user, capture_output=True, timeout=30).returncode == 0
    except PermissionError:  # the interpreter, or a folder above it, is closed to nobody
        return False


@pytest.fixture(scope="module")
def rank_python() -> Iterator[dict[str, Any]]:
    """An environment whose Python other accounts can run, with cloudpickle on its path: this
    test's own Python may live where only root can go (pyenv under /root), and so may the
    virtual environment that holds cloudpickle."""
    need(os.geteuid() == 0, "running ranks as their owners' accounts needs root")
    candidates = [sys.executable, "/usr/bin/python3"]
    python = next((p for p in candidates if Path(p).exists() and runs_as_nobody(p)), "")
    need(bool(python), f"none of {candidates} can be run by the account nobody")
    folder = Path(tempfile.mkdtemp(prefix="mlo-py-"))
    try:
        folder.chmod(0o755)
        shutil.copytree(Path(cloudpickle.__file__).parent, folder / "cloudpickle")
        yield {
            "name": "python",
            "framework": "generic",
            "python": python,
            "env": {"PYTHONPATH": str(folder)},
        }
    finally:
        shutil.rmtree(folder)


@pytest.fixture
def home(monkeypatch: pytest.MonkeyPatch, rank_python: dict[str, Any]) -> Iterator[AgentHome]:
    """A private agent as root that runs ranks as their owners; its home can be passed
    through by other accounts, as a data_dir for this mode must be."""
    with private_agent("mlo-") as home:
        home.root.chmod(0o711)
        config = write_config(
            home.root / "config",
            home,
            run_ranks_as="owner",
            owner_accounts={MAPPED: "daemon"},
            environments=[rank_python],
        )
        monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(config))
        monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "the-agent-service-secret")
        monkeypatch.setenv("JPY_API_TOKEN", "the-agent-service-secret")
        ensure_agent(home.socket, str(home.data_dir), 0)
        yield home


def as_user(home: AgentHome, user: str) -> JobsClient:
    identity = json.dumps({"user": user, "groups": [], "admin": False})
    return JobsClient(
        Connection("http://localhost/", source="local agent", socket=home.socket, identity=identity)
    )


def test_ranks_run_as_their_owners_account_and_cannot_read_each_others_jobs(
    home: AgentHome,
) -> None:
    nobody, daemon = account("nobody"), account("daemon")
    bob = as_user(home, MAPPED)
    sleeper = bob.submit({"code": SLEEPER, "flavor": "tiny"})
    wait_state(bob, sleeper["id"], "running")
    [(_, _, pid, _, _)] = ranks_of(home, sleeper["id"])
    status = Path(f"/proc/{pid}/status").read_text()
    assert f"Uid:\t{daemon.pw_uid}\t" in status

    other_job = home.data_dir / "jobs" / sleeper["id"] / "1"
    info = other_job.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (
        daemon.pw_uid,
        daemon.pw_gid,
        0o700,
    )

    alice = as_user(home, "nobody")
    pushed = base64.b64encode(cloudpickle.dumps(41)).decode()
    job = alice.submit(
        {
            "code": WHO_AM_I,
            "flavor": "tiny",
            "push": {"pushed": pushed},
            "pull": ["me"],
            "env": {
                "OTHER_JOB": str(other_job),
                "STORE": str(home.data_dir / "jobs.sqlite"),
                "JOBS": str(home.data_dir / "jobs"),
                "LOGS": str(home.data_dir / "logs"),
            },
        }
    )
    done = wait_state(alice, job["id"], "succeeded", "failed")
    assert done["state"] == "succeeded", done
    me = alice.result(job["id"])["me"]
    assert me == {
        "uid": nobody.pw_uid,
        "gid": nobody.pw_gid,
        "groups": sorted(os.getgrouplist("nobody", nobody.pw_gid)),
        "env": [nobody.pw_dir, "nobody", "nobody"],
        "cwd": nobody.pw_uid,  # it starts in its own job directory
        "hub_token": [],  # the agent's secrets stay the agent's
        "pushed": 42,
        "other_job": "denied",
        "other_description": "denied",
        "store": "denied",
        "jobs": "denied",
        "logs": "denied",
    }
    assert "".join(alice.logs(job["id"])) == f"ran as {nobody.pw_uid}\n"
    log = home.data_dir / "logs" / job["id"] / "1" / "rank-0.log"
    assert (log.stat().st_uid, stat.S_IMODE(log.parent.stat().st_mode)) == (0, 0o700)

    cancelled = bob.cancel(sleeper["id"])
    assert cancelled["state"] == "cancelled"
    wait_until(lambda: not alive(pid), "the cancelled rank to be gone", 60)


def test_a_restarted_agent_adopts_ranks_of_other_accounts_and_still_stops_them(
    home: AgentHome,
) -> None:
    bob = as_user(home, MAPPED)
    sleeper = bob.submit({"code": SLEEPER, "flavor": "tiny"})
    wait_state(bob, sleeper["id"], "running")
    [(_, _, pid, _, _)] = ranks_of(home, sleeper["id"])
    kill_agent_hard(home)
    ensure_agent(home.socket, str(home.data_dir), 0)
    assert bob.job(sleeper["id"])["state"] == "running"
    assert alive(pid)
    bob.cancel(sleeper["id"])
    wait_until(lambda: not alive(pid), "the adopted rank to be gone", 60)
    wait_state(bob, sleeper["id"], "cancelled")
    # not the agent's child any more: its exit code is the one it wrote in its job directory
    [(_, _, _, _, code)] = ranks_of(home, sleeper["id"])
    assert code == 143


def test_a_rank_cannot_make_the_agent_read_a_file_for_it(home: AgentHome) -> None:
    """The job directory is the owner's: what they put there is read without following links,
    so a pulled result cannot be the agent's job store."""
    alice = as_user(home, "nobody")
    store = home.data_dir / "jobs.sqlite"
    code = f"import os; os.symlink({str(store)!r}, 'pull.pkl')"
    job = alice.submit({"code": code, "flavor": "tiny"})
    done = wait_state(alice, job["id"], "succeeded", "failed")
    assert done["state"] == "succeeded", done
    assert (home.data_dir / "jobs" / job["id"] / "1" / "pull.pkl").is_symlink()
    assert alice.request("GET", f"jobs/{job['id']}/result") == {"variables": ""}


def test_a_job_whose_owner_has_no_account_is_refused_naming_them(home: AgentHome) -> None:
    with pytest.raises(ClientError) as refused:
        as_user(home, UNKNOWN).submit({"code": "print('never')", "flavor": "tiny"})
    assert refused.value.status == 403
    assert f"user {UNKNOWN!r} has no OS account on this machine" in refused.value.message
    assert as_user(home, UNKNOWN).jobs()["jobs"] == []


def refusal_at_start(data_dir: Path, config: dict[str, Any]) -> str:
    """What ``jupyter mlinfra agent`` says when it refuses to start with ``config``."""
    folder = Path(tempfile.mkdtemp(prefix="mlo-cfg-"))
    try:
        (folder / "jupyter_server_config.json").write_text(json.dumps({"MLInfraApp": config}))
        env = clean_env(JUPYTER_CONFIG_DIR=str(folder), JUPYTER_DATA_DIR=str(folder))
        command = ["agent", "--socket", str(folder / "s"), "--data-dir", str(data_dir)]
        result = mlinfra(*command, env=env)
        assert result.returncode == 1, result
        return result.stderr
    finally:
        shutil.rmtree(folder)


def test_an_agent_whose_data_dir_other_accounts_cannot_reach_refuses_to_start(
    tmp_path: Path,
) -> None:
    need(os.geteuid() == 0, "running ranks as their owners' accounts needs root")
    closed = tmp_path.parent.parent  # pytest's own folder in /tmp, private to root
    assert not closed.stat().st_mode & stat.S_IXOTH
    said = refusal_at_start(tmp_path / "data", {"run_ranks_as": "owner"})
    assert said.startswith(
        f"jupyter mlinfra agent: run_ranks_as='owner': jobs' accounts cannot pass through {closed}"
    )
    assert said.count("\n") == 1


def test_an_agent_not_running_as_root_cannot_run_ranks_as_their_owners() -> None:
    need(os.geteuid() == 0, "taking another account's identity needs root")
    nobody = account("nobody").pw_uid
    os.seteuid(nobody)  # only the effective id: root comes back below
    try:
        problem = cannot_run_as_owners(Path("/tmp/mlo-never"))
    finally:
        os.seteuid(0)
    assert problem == (
        "run_ranks_as='owner' needs the agent to run as root, to start each job as its "
        f"owner's account; this one runs as uid {nobody}"
    )
    assert not Path("/tmp/mlo-never").exists()
