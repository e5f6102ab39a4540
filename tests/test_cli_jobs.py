"""``jupyter mlinfra submit|jobs|status|logs|cancel|retry|queue`` as a user types them, with no
Jupyter server anywhere (the CLI starts and talks to the local agent), then the same jobs seen
through a server that shares the agent."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from jupyter_mlinfra.client import Connection, JobsClient

from .agents import AgentHome
from .conftest import ME
from .lab_server import running_lab
from .test_cli import clean_env

CPUS = len(os.sched_getaffinity(0))

CATALOG: dict[str, Any] = {
    # one job at a time, so a second one queues
    "flavors": [{"name": "cpu", "cpu": CPUS, "memory": "256Mi"}],
    "environments": [{"name": "python", "framework": "generic"}],
}

HELLO = """
import os, sys
print("hello from rank", os.environ["RANK"], "of", os.environ["WORLD_SIZE"], "args", sys.argv[1:])
"""

WAIT_FOR_RELEASE = """
import pathlib, time
print("blocker started", flush=True)
while not pathlib.Path({release!r}).exists():
    time.sleep(0.05)
print("blocker done")
"""


@dataclass
class Setup:
    home: AgentHome
    config: Path
    work: Path
    env: dict[str, str]

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        """``jupyter mlinfra ARGS`` in a terminal in ``work``, with no server to be found
        (unless ``env`` adds a way)."""
        jupyter = Path(sys.executable).with_name("jupyter")
        return subprocess.run(
            [str(jupyter), "mlinfra", *args],
            env={**self.env, **env},
            cwd=self.work,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def ok(self, *args: str) -> str:
        result = self.run(*args)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json"))

    def run_all(
        self, *commands: tuple[str, ...], **env: str
    ) -> list[subprocess.CompletedProcess[str]]:
        """Several read-only commands at once (each one spends ~2 s importing Jupyter)."""
        with ThreadPoolExecutor(len(commands)) as pool:
            return list(pool.map(lambda args: self.run(*args, **env), commands))

    def script(self, name: str, text: str) -> str:
        (self.work / name).write_text(text)
        return name

    def client(self) -> JobsClient:
        """The agent's own API, straight over its socket (fast: no process to start)."""
        identity = json.dumps({"user": ME, "groups": [], "admin": False})
        return JobsClient(
            Connection("http://localhost/", socket=self.home.socket, identity=identity)
        )

    def wait(self, job_id: str, *states: str, timeout: float = 60) -> Any:
        """Until the job is in one of ``states``."""
        return self.wait_for(job_id, lambda job: job["state"] in states, timeout)

    def wait_for(self, job_id: str, check: Callable[[Any], bool], timeout: float = 60) -> Any:
        """Until ``check`` holds for the job."""
        client = self.client()
        deadline = time.monotonic() + timeout
        while True:
            job = client.job(job_id)
            if check(job):
                return job
            assert time.monotonic() < deadline, f"job stayed {job['state']}: {job}"
            time.sleep(0.05)

    def wait_for_log(self, job_id: str, text: str, timeout: float = 60) -> None:
        """Until the job's log holds ``text`` (a rank is running before it prints)."""
        client = self.client()
        deadline = time.monotonic() + timeout
        while text not in (log := "".join(client.logs(job_id))):
            assert time.monotonic() < deadline, f"no {text!r} in the log: {log!r}"
            time.sleep(0.05)


@pytest.fixture(scope="module")
def cli() -> Iterator[Setup]:
    home = AgentHome(Path(tempfile.mkdtemp(prefix="mlc-", dir="/tmp")))
    config, work = home.root / "config", home.root / "work"
    config.mkdir()
    work.mkdir()
    document = {"MLInfraApp": {**home.settings, **CATALOG}}
    (config / "jupyter_server_config.json").write_text(json.dumps(document))
    try:
        yield Setup(home, config, work, clean_env(JUPYTER_CONFIG_DIR=str(config)))
    finally:
        home.stop()
        shutil.rmtree(home.root, ignore_errors=True)


def test_submit_waits_and_streams_every_rank(cli: Setup) -> None:
    assert cli.home.status() is None  # nothing runs yet: the CLI starts the agent
    script = cli.script("hello.py", HELLO)
    result = cli.run("submit", script, "--procs", "2", "--", "--lr", "0.1", "x")
    assert result.returncode == 0, result.stderr
    args = "['--lr', '0.1', 'x']"
    assert sorted(result.stdout.splitlines()) == [
        f"[rank 0] hello from rank 0 of 2 args {args}",
        f"[rank 1] hello from rank 1 of 2 args {args}",
    ]
    status = result.stderr.splitlines()
    assert re.fullmatch(r"submitted job [0-9a-f]{12} \(local agent\)", status[0]), status
    assert all(line.startswith("-- hello: ") for line in status[1:]), status
    assert re.fullmatch(r"-- hello: succeeded in \S+", status[-1]), status
    assert cli.home.status() is not None


def test_submit_takes_wait_and_detach_as_the_magic_does(cli: Setup) -> None:
    script = cli.script("hello.py", HELLO)
    waited = cli.run("submit", script, "--wait")  # the default, said out loud
    assert waited.returncode == 0, waited.stderr
    assert waited.stdout == "hello from rank 0 of 1 args []\n"
    detached = cli.run("submit", script, "--detach")
    assert detached.returncode == 0, detached.stderr
    assert re.fullmatch(r"[0-9a-f]{12}\n", detached.stdout), detached.stdout
    both = cli.run("submit", script, "--wait", "--detach")
    assert both.returncode == 2 and both.stdout == ""
    assert both.stderr.startswith("usage: jupyter mlinfra submit SCRIPT"), both.stderr
    assert both.stderr.splitlines()[-1] == (
        "jupyter mlinfra submit: error: argument --detach: not allowed with argument --wait"
    )
    helped = cli.ok("submit", "--help")
    assert re.search(r"--wait\s+follow the job here until it ends", helped), helped
    assert "(the default)" in helped.split("--detach")[0]  # a terminal waits by default


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (
            ("submit", "x.py", "--prcs", "2"),
            "submit: error: unrecognized arguments: --prcs 2; did you mean --procs?",
        ),
        (
            ("logs", "0123456789ab", "--tial", "3"),
            "logs: error: unrecognized arguments: --tial 3; did you mean --tail?",
        ),
        (("submit", "x.py", "--frobnicate"), "submit: error: unrecognized arguments: --frobnicate"),
        (
            ("submit", "x.py", "--procs", "0"),
            "submit: error: argument --procs: must be at least 1, got 0",
        ),
        (
            ("submit", "x.py", "--nodes", "0"),
            "submit: error: argument --nodes: must be at least 1, got 0",
        ),
    ],
)
def test_a_bad_option_shows_the_subcommands_usage(
    cli: Setup, args: tuple[str, ...], error: str
) -> None:
    before = cli.json("jobs")["jobs"]
    result = cli.run(*args)
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"usage: jupyter mlinfra {args[0]} "), lines
    assert lines[-1] == f"jupyter mlinfra {error}", lines
    assert cli.json("jobs")["jobs"] == before  # nothing was submitted


def test_a_failing_script_exit_code_is_the_cli_exit_code(cli: Setup) -> None:
    script = cli.script("fails.py", "print('about to fail')\nraise SystemExit(3)\n")
    result = cli.run("submit", script)
    assert result.returncode == 3, result.stderr
    assert result.stdout == "about to fail\n"
    last = result.stderr.splitlines()[-1]
    assert re.fullmatch(r"-- fails: failed in \S+ \(exit 3\): rank 0 exited with 3", last), last

    crash = cli.script("crash.py", "def f():\n    raise ValueError('boom')\nf()\n")
    result = cli.run("submit", crash)
    assert result.returncode == 1, result.stderr
    assert "ValueError: boom" in result.stdout


def test_detach_status_logs_queue_and_jobs(cli: Setup, tmp_path: Path) -> None:
    release = tmp_path / "release"
    blocker_script = cli.script("blocker.py", WAIT_FOR_RELEASE.format(release=str(release)))
    detached = cli.run("submit", blocker_script, "--detach")
    assert detached.returncode == 0, detached.stderr
    blocker = detached.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{12}", blocker), detached.stdout
    cli.wait(blocker, "running")
    cli.wait_for_log(blocker, "blocker started\n")

    queued = cli.json("submit", cli.script("after.py", "print('after ran')\n"), "--detach")
    assert queued["state"] == "queued" and queued["name"] == "after"
    # and placed: a scheduling pass has given its position (the next one, on a loaded machine)
    placed = cli.wait_for(queued["id"], lambda job: job["position"] is not None)
    assert placed["state"] == "queued", placed
    queue_json, queue_table, jobs_json, jobs_table, only_queued, logs = cli.run_all(
        ("queue", "--json"),
        ("queue",),
        ("jobs", "--json"),
        ("jobs",),
        ("jobs", "--state", "queued", "--json"),
        ("logs", blocker),
    )
    waiting = json.loads(queue_json.stdout)
    assert [j["id"] for j in waiting["jobs"]] == [queued["id"]] and waiting["pending"] == 1
    assert waiting["jobs"][0]["position"] == 1 and waiting["jobs"][0]["reason"]
    table = queue_table.stdout.splitlines()
    assert table[0].split()[:3] == ["#", "ID", "NAME"]
    assert table[1].split()[:3] == ["1", queued["id"], "after"]
    assert table[-1] == "1 job(s) waiting in all"

    listing = json.loads(jobs_json.stdout)
    assert [j["id"] for j in listing["jobs"][:2]] == [queued["id"], blocker]  # newest first
    rows = {line.split()[0]: line.split() for line in jobs_table.stdout.splitlines()[1:]}
    assert rows[blocker][1:3] == ["blocker", "running"]
    assert rows[queued["id"]][1:3] == ["after", "queued"]
    assert "#1" in rows[queued["id"]]
    assert [j["id"] for j in json.loads(only_queued.stdout)["jobs"]] == [queued["id"]]
    assert logs.stdout == "blocker started\n"

    with subprocess.Popen(
        [str(Path(sys.executable).with_name("jupyter")), "mlinfra", "logs", "-f", blocker],
        env=cli.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as follower:
        assert follower.stdout is not None
        assert follower.stdout.readline() == "blocker started\n"  # following while it runs
        assert follower.poll() is None, "logs -f returned before the job ended"
        release.touch()
        rest, err = follower.communicate(timeout=30)
    assert follower.returncode == 0, err
    assert rest == "blocker done\n"

    done = cli.wait(blocker, "succeeded", "failed")
    assert done["state"] == "succeeded", done
    ran = cli.wait(queued["id"], "succeeded", "failed")
    assert ran["state"] == "succeeded", ran
    status, status_json, tail = cli.run_all(
        ("status", blocker), ("status", blocker, "--json"), ("logs", queued["id"], "--tail", "1")
    )
    history = status.stdout.splitlines()
    assert re.fullmatch(r"blocker: succeeded in \S+", history[0]), history
    assert [line.split()[1] for line in history[1:]] == [
        "Queued",
        "Admitted",
        "Started",
        "Finished",
    ]
    as_json = json.loads(status_json.stdout)
    assert as_json["id"] == blocker and as_json["state"] == "succeeded"
    assert [e["condition"] for e in as_json["events"]] == [line.split()[1] for line in history[1:]]
    assert tail.stdout == "after ran\n"


def test_cancel_and_retry(cli: Setup) -> None:
    sleeper = cli.script("sleeper.py", "import time\ntime.sleep(300)\n")
    job_id = cli.ok("submit", sleeper, "--detach").strip()
    cli.wait(job_id, "running")
    cancelled = cli.ok("cancel", job_id)
    assert cancelled.startswith("sleeper: cancelled"), cancelled
    assert cli.home.live_ranks() == []

    again = cli.run("cancel", job_id)
    assert again.returncode == 1
    assert again.stderr == f"jupyter mlinfra cancel: job {job_id} already cancelled\n"

    retried = cli.json("retry", job_id)
    assert (retried["state"], retried["attempt"]) == ("queued", 2)
    cli.wait(job_id, "running")
    as_json = cli.json("cancel", job_id)
    assert (as_json["state"], as_json["attempt"]) == ("cancelled", 2)
    assert cli.home.live_ranks() == []


def test_errors_are_one_line(cli: Setup) -> None:
    expected = {
        ("status", "nope"): "not a job id: 'nope' (12 hexadecimal digits)",
        ("retry", "0123456789ab"): "no job '0123456789ab'",
    }
    for args, result in zip(expected, cli.run_all(*expected), strict=True):
        assert result.returncode == 1, args
        assert result.stdout == ""
        assert result.stderr == f"jupyter mlinfra {args[0]}: {expected[args]}\n"


def test_a_server_sharing_the_agent_shows_the_same_jobs(cli: Setup, tmp_path: Path) -> None:
    direct = cli.client().jobs(limit=50)  # what `jobs --json` asks for, straight from the agent
    assert len(direct["jobs"]) == 8  # the earlier tests' jobs
    agent = cli.home.status()
    assert agent is not None
    shutil.copytree(cli.config, tmp_path / "config")
    with running_lab(tmp_path) as lab:
        explicit, discovered = cli.run_all(
            ("jobs", "--json", "--url", lab.base_url, "--token", lab.token),
            ("jobs", "--json"),
            JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        )
    assert explicit.returncode == 0, explicit.stderr
    assert json.loads(explicit.stdout) == direct
    assert discovered.returncode == 0, discovered.stderr
    assert json.loads(discovered.stdout) == direct  # found from its runtime file, as users do
    assert cli.home.status() == agent  # the same agent served both


def test_the_agent_stops_when_asked(cli: Setup) -> None:
    """Last: it stops the module's agent (the next command would start one again)."""
    cli.ok("jobs")  # the agent runs: started on demand if this test runs alone
    running = cli.home.status()
    assert running is not None
    stopped = cli.ok("agent", "--stop", "--socket", cli.home.socket)
    assert stopped == f"stopped the local agent (pid {running['pid']})\n"
    assert cli.home.status() is None and cli.home.agent_pids() == []
    again = cli.ok("agent", "--stop", "--socket", cli.home.socket)
    assert again == f"no local agent answers on {cli.home.socket}\n"
