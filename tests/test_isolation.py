"""Who a local agent runs ranks as, and whose files it keeps from whom, outside a real hub:
a per-user agent's state is its user's alone; the agent a hub shares decides at its start, and
refuses to run everybody's jobs as root, or says that users are not isolated (under a real hub:
test_hub.py, test_hub_isolation.py)."""

from __future__ import annotations

import json
import os
import pwd
import stat
from pathlib import Path
from typing import Any

import pytest

from jupyter_mlinfra.backends.local.accounts import choose_rank_accounts
from jupyter_mlinfra.backends.local.agent_client import ensure_agent
from jupyter_mlinfra.errors import NotAllowed

from .agents import private_agent
from .optional import need
from .test_cli import clean_env, mlinfra
from .test_restarts import agent_client, wait_state, write_config

ME = pwd.getpwuid(os.geteuid()).pw_name


async def test_a_per_user_servers_whoami_says_its_jobs_run_as_its_own_account(
    jp_fetch: Any,
) -> None:
    response = await jp_fetch("mlinfra", "api", "v1", "whoami")
    assert json.loads(response.body)["isolation"] == {
        "ranks_run_as": ME,
        "isolated": True,
        "reason": f"this agent is yours alone: your jobs run as its account {ME!r}",
    }


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_a_per_user_agents_data_directory_and_store_are_its_users_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Also as an earlier version left them: readable by everybody (issue 11, finding 7)."""
    with private_agent() as home:
        data = home.data_dir
        data.mkdir()
        for folder in (data, data / "logs"):
            folder.mkdir(exist_ok=True)
            folder.chmod(0o755)
        (data / "jobs.sqlite").touch(mode=0o644)
        monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(write_config(tmp_path / "config", home)))
        ensure_agent(home.socket, str(data), 0)
        client = agent_client(home)
        job = client.submit({"code": "x = 1", "flavor": "tiny", "pull": ["x"]})
        assert wait_state(client, job["id"], "succeeded", "failed")["state"] == "succeeded"
        assert client.result(job["id"]) == {"x": 1}  # its own: handed out

        assert mode(data) == 0o700
        assert mode(data / "jobs.sqlite") == 0o600
        entries = {p.name: mode(p) for p in data.iterdir()}
        assert {"jobs", "logs", "jobs.sqlite", "agent.log"} <= set(entries)
        assert {name: m for name, m in entries.items() if m & 0o077} == {}


def run_shared_agent(tmp_path: Path, settings: dict[str, Any]) -> Any:
    """``jupyter mlinfra agent --hub`` with ``settings``, as a hub starts its service."""
    config = tmp_path / "config"
    config.mkdir()
    (config / "jupyter_server_config.json").write_text(json.dumps({"MLInfraApp": settings}))
    env = clean_env(JUPYTER_CONFIG_DIR=str(config), JUPYTERHUB_SERVICE_URL="http://127.0.0.1:10101")
    return mlinfra("agent", "--hub", "--data-dir", str(tmp_path / "data"), env=env)


def test_a_shared_agent_as_root_refuses_to_run_everybodys_jobs_as_root(tmp_path: Path) -> None:
    need(os.geteuid() == 0, "the refusal is of an agent running as root")
    result = run_shared_agent(tmp_path, {"run_ranks_as": "agent"})
    assert result.returncode == 1
    assert result.stderr == (
        "jupyter mlinfra agent: run_ranks_as='agent' would run every hub user's jobs as root, "
        "able to read and change everybody's jobs and this machine: leave run_ranks_as unset "
        "(each job then runs as its owner's OS account), or set unsafe_ranks_as_root = True to "
        "accept that\n"
    )
    assert not (tmp_path / "data" / "jobs.sqlite").exists()


def test_a_shared_agent_that_is_not_root_runs_jobs_as_itself_and_says_so(tmp_path: Path) -> None:
    need(os.geteuid() == 0, "taking another account's identity needs root")
    nobody = pwd.getpwnam("nobody")
    os.seteuid(nobody.pw_uid)  # only the effective id: root comes back below
    try:
        accounts = choose_rank_accounts(
            None, {}, shared=True, unsafe_ranks_as_root=False, data_dir=tmp_path / "data"
        )
    finally:
        os.seteuid(0)
    assert (accounts.mode, accounts.shared, accounts.isolated) == ("agent", True, False)
    warning = (
        "this agent does not run as root and cannot start jobs as their owners' accounts, so "
        "every hub user's jobs run as 'nobody': any user's job can read and change other "
        "users' jobs and the job store, and no job's results are handed out (to isolate users, "
        "run the hub and this agent as root with one OS account per user)"
    )
    assert accounts.warning == warning
    assert accounts.isolation("alice") == {
        "ranks_run_as": "nobody",
        "isolated": False,
        "reason": warning,
    }
    with pytest.raises(NotAllowed, match=r"job 0123456789ab's results are not handed out"):
        accounts.check_results("0123456789ab")


def test_ranks_of_a_shared_agent_get_none_of_its_secrets() -> None:
    """Of the agent's own environment, ranks of a shared agent get a login's basics only,
    whoever they run as; a per-user agent's ranks run as its user and get all of it."""
    environ = {
        "PATH": "/usr/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TZ": "UTC",
        "JUPYTERHUB_API_TOKEN": "the service's token",
        "JPY_API_TOKEN": "the same, by its old name",
        "JUPYTERHUB_SERVICE_URL": "http://127.0.0.1:10101",
        "JUPYTER_CONFIG_DIR": "/etc/jupyter-mlinfra",
        "MLINFRA_HUB_ADMIN_PASSWORD": "a secret of the hub's",
        "HOME": "/root",
        "PYTHONPATH": "/root/lib",
    }
    basics = {"PATH": "/usr/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TZ": "UTC"}
    shared = choose_rank_accounts(
        "agent", {}, shared=True, unsafe_ranks_as_root=True, data_dir=Path("/nonexistent")
    )
    assert shared.base_env(environ, None) == basics
    per_user = choose_rank_accounts(
        None, {}, shared=False, unsafe_ranks_as_root=False, data_dir=Path("/nonexistent")
    )
    assert per_user.base_env(environ, None) == environ
