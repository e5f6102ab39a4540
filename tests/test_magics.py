"""``%mlinfra`` / ``%%mlinfra``: option parsing (pure), the magics in an in-process IPython shell
against one real ``jupyter lab`` with a private agent, and a real kernel the server started."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

from jupyter_mlinfra.magic_args import (
    ArgsError,
    Command,
    HelpRequested,
    SubmitOptions,
    idempotency_key,
    parse,
    submission,
)
from jupyter_mlinfra.magics import JobHandle

from .agents import AgentHome
from .lab_server import LabServer, running_kernel
from .optional import need

# --- argument parsing (pure) ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ("", SubmitOptions()),
        ("--flavor a100x1", SubmitOptions(flavor="a100x1")),
        ("--env pytorch", SubmitOptions(environment="pytorch")),
        ("--nodes 2", SubmitOptions(nodes=2)),
        ("--procs 4", SubmitOptions(procs=4)),
        ("--priority high", SubmitOptions(priority="high")),
        ("--name 'my job'", SubmitOptions(name="my job")),
        ("--push a,b", SubmitOptions(push=("a", "b"))),
        ("--pull c, --pull d,e", SubmitOptions(pull=("d", "e"))),  # the last one wins
        ("--retries 3", SubmitOptions(retries=3)),
        ("--retry-on 1,137", SubmitOptions(retry_on=(1, 137))),
        ("--timeout 90.5", SubmitOptions(timeout=90.5)),
        ("--key k-1", SubmitOptions(key="k-1")),
        ("--wait", SubmitOptions(wait=True)),
        ("--detach", SubmitOptions(wait=False)),
    ],
)
def test_every_submit_option(words: str, expected: SubmitOptions) -> None:
    assert parse(f"submit {words}", cell=True) == Command("submit", submit=expected)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("jobs", Command("jobs")),
        ("jobs --state queued,running", Command("jobs", state="queued,running")),
        ("status 0123456789ab", Command("status", job_id="0123456789ab")),
        ("cancel 0123456789ab", Command("cancel", job_id="0123456789ab")),
        ("retry 0123456789ab", Command("retry", job_id="0123456789ab")),
        ("pull 0123456789ab", Command("pull", job_id="0123456789ab")),
        ("logs 0123456789ab", Command("logs", job_id="0123456789ab")),
        (
            "logs 0123456789ab --rank 1 --tail 20 --follow",
            Command("logs", job_id="0123456789ab", rank=1, tail=20, follow=True),
        ),
        ("logs 0123456789ab -f", Command("logs", job_id="0123456789ab", follow=True)),
        ("queue", Command("queue")),
        ("flavors", Command("flavors")),
    ],
)
def test_every_line_command(line: str, expected: Command) -> None:
    assert parse(line, cell=False) == expected


@pytest.mark.parametrize(
    ("line", "cell", "message"),
    [
        ("submit --nodes 0", True, "submit: argument --nodes: must be at least 1, got 0"),
        ("submit --procs x", True, "submit: argument --procs: expected a whole number, got 'x'"),
        ("submit --retries -1", True, "submit: argument --retries: must be at least 0, got -1"),
        ("submit --timeout 0", True, "submit: argument --timeout: must be a number of seconds"),
        ("submit --timeout soon", True, "submit: argument --timeout: expected seconds"),
        ("submit --push a-b", True, "submit: argument --push: 'a-b' is not a Python variable"),
        ("submit --pull ,", True, "submit: argument --pull: expected comma-separated variable"),
        ("submit --retry-on 1,300", True, "submit: argument --retry-on: exit codes are 0 to 255"),
        ("submit --flavor", True, "submit: argument --flavor: expected one argument"),
        ("submit --gpus 2", True, "submit: unrecognized arguments: --gpus 2"),
        ("submit --wai", True, "submit: unrecognized arguments: --wai"),  # no abbreviations
        ("submit --procs 0", True, "submit: argument --procs: must be at least 1, got 0"),
        ("submit --procs -1", True, "submit: argument --procs: must be at least 1, got -1"),
        ("submit --wait --detach", True, "submit: argument --detach: not allowed with argument"),
        (
            "submit --prcs 2",
            True,
            "submit: unrecognized arguments: --prcs 2; did you mean --procs? (see %%mlinfra",
        ),
        ("logs 0123456789ab --tial 3", False, "logs: unrecognized arguments: --tial 3; did you"),
        ("submit", False, "submit: a cell magic; put %%mlinfra submit"),
        ("jobs", True, "jobs: a line magic; use %mlinfra jobs"),
        ("frobnicate", False, "argument COMMAND: invalid choice: 'frobnicate'"),
        ("--verbose", False, "the following arguments are required: COMMAND"),
        ("status", False, "status: the following arguments are required: id"),
        ("logs 0123456789ab --rank one", False, "logs: argument --rank: expected a whole"),
        ("jobs extra", False, "jobs: unrecognized arguments: extra"),
        ("jobs --state 'queued", False, "cannot read the options: No closing quotation"),
    ],
)
def test_bad_input_is_one_message(line: str, cell: bool, message: str) -> None:
    with pytest.raises(ArgsError) as raised:
        parse(line, cell=cell)
    assert raised.value.message.startswith(message), raised.value.message
    assert "\n" not in raised.value.message


def test_errors_point_at_the_right_help() -> None:
    with pytest.raises(ArgsError) as raised:
        parse("submit --nodes 0", cell=True)
    assert raised.value.message.endswith("(see %%mlinfra submit --help)")
    with pytest.raises(ArgsError) as raised:
        parse("logs", cell=False)
    assert raised.value.message.endswith("(see %mlinfra logs --help)")


@pytest.mark.parametrize("line", ["", "--help", "-h"])
def test_help_lists_the_commands(line: str) -> None:
    with pytest.raises(HelpRequested) as shown:
        parse(line, cell=False)
    assert shown.value.text.startswith("usage: %mlinfra")
    for command in ("submit", "jobs", "status", "logs", "cancel", "retry", "pull", "queue"):
        assert f"    {command} " in shown.value.text


def test_help_of_submit() -> None:
    with pytest.raises(HelpRequested) as shown:
        parse("submit --help", cell=True)
    assert shown.value.text.startswith("usage: %%mlinfra submit")
    assert "--retry-on CODES" in shown.value.text


def test_submission_is_the_whole_api_body() -> None:
    options = parse(
        "submit --flavor cpu --env python --nodes 2 --procs 3 --priority high --name n "
        "--push a --pull b,c --retries 2 --retry-on 1,2 --timeout 60",
        cell=True,
    ).submit
    assert options is not None
    body = submission(
        options, "print(1)", idempotency_key="k", working_dir="/w", push={"a": "YWJj"}
    )
    assert body == {
        "code": "print(1)",
        "flavor": "cpu",
        "environment": "python",
        "nodes": 2,
        "procs_per_node": 3,
        "priority": "high",
        "name": "n",
        "push": {"a": "YWJj"},
        "pull": ["b", "c"],
        "retry": {"max_restarts": 2, "on_exit_codes": [1, 2]},
        "working_dir": "/w",
        "idempotency_key": "k",
        "max_runtime_seconds": 60.0,
    }
    explicit = submission(SubmitOptions(key="mine"), "x", idempotency_key="derived")
    assert explicit["idempotency_key"] == "mine" and "max_runtime_seconds" not in explicit
    assert "procs_per_node" not in explicit  # the server's default: one per accelerator


def test_idempotency_key_changes_with_the_run_not_with_a_retried_request() -> None:
    key = idempotency_key("print(1)", "submit", "salt", 7)
    assert key == idempotency_key("print(1)", "submit", "salt", 7)
    assert len(key) <= 255
    others = {
        idempotency_key("print(2)", "submit", "salt", 7),
        idempotency_key("print(1)", "submit --wait", "salt", 7),
        idempotency_key("print(1)", "submit", "other session", 7),
        idempotency_key("print(1)", "submit", "salt", 8),
    }
    assert key not in others and len(others) == 4


# --- the magics against a real server -------------------------------------------------------


@pytest.fixture
def ip(
    lab: LabServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[InteractiveShell]:
    """An in-process IPython with ``%load_ext jupyter_mlinfra``, finding the lab as a kernel
    the server started would (its environment variables)."""
    monkeypatch.setenv("JUPYTER_MLINFRA_URL", lab.base_url)
    monkeypatch.setenv("JUPYTER_MLINFRA_TOKEN", lab.token)
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    config = Config()
    config.HistoryManager.enabled = False
    config.MLInfraMagics.poll_seconds = 0.2
    config.MLInfraMagics.wait_poll_seconds = 0.1
    shell = InteractiveShell.instance(config=config)
    shell.run_line_magic("load_ext", "jupyter_mlinfra")
    try:
        yield shell
    finally:
        InteractiveShell.clear_instance()


def wait_until(check: Any, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return value


def finish(handle: JobHandle) -> dict[str, Any]:
    """Wait for the job and for the status line's thread, if it was shown, to see it
    finished."""
    job = handle.wait(timeout=60)
    assert handle.live is not None
    if handle.live.ident is not None:
        handle.live.join(timeout=30)
        assert not handle.live.is_alive()
    return job


TWO_RANKS = """\
import os
rank = int(os.environ["RANK"])
print("hello from rank", rank, "of", os.environ["WORLD_SIZE"])
total = sum(range(10)) + 100 * int(os.environ["WORLD_SIZE"])
"""


def test_wait_streams_both_ranks_and_pulls(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    result = ip.run_cell_magic("mlinfra", "submit --procs 2 --wait --pull total", TWO_RANKS)
    out, err = capsys.readouterr()
    assert result is None and err == ""
    assert "[rank 0] hello from rank 0 of 2\n" in out
    assert "[rank 1] hello from rank 1 of 2\n" in out
    assert out.startswith("submitted job ")
    assert ": succeeded" in out
    assert out.endswith("pulled total from job " + out.split()[2] + "\n")
    assert ip.user_ns["total"] == 245


def test_push_sends_variables_to_the_job(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    ip.user_ns["numbers"] = [1, 2, 3]
    ip.user_ns["scale"] = 10
    code = "scaled = [scale * n for n in numbers]\nprint(len(numbers))"
    ip.run_cell_magic("mlinfra", "submit --push numbers,scale --pull scaled --wait", code)
    out, err = capsys.readouterr()
    assert err == "" and "\n3\n" in out  # one rank: no prefix
    assert ip.user_ns["scaled"] == [10, 20, 30]


def test_a_failing_job_shows_its_traceback_and_status(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    code = "def f():\n    raise ValueError('boom')\nf()"
    assert ip.run_cell_magic("mlinfra", "submit --name bad --wait --pull x", code) is None
    out, err = capsys.readouterr()
    # the traceback once, streamed from the rank's log, then how the job ended
    assert out.count("Traceback (most recent call last):") == 1, out
    assert out.count("ValueError: boom") == 1 and 'File "<cell>", line 2, in f' in out
    assert "Traceback" not in err and "boom" not in err
    assert re.fullmatch(r"-- bad: failed in \d+s \(exit 1\): rank 0 exited with 1\n", err), err
    assert "x" not in ip.user_ns and "pulled" not in out


def test_no_wait_returns_a_handle_with_a_live_status_line(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    code = "import time\ntime.sleep(0.5)\nanswer = 6 * 7\nprint('done')"
    ip.run_cell(f"%%mlinfra submit --name later --pull answer\n{code}")
    handle = ip.user_ns["_"]
    assert isinstance(handle, JobHandle)
    first, _ = capsys.readouterr()
    assert re.match(r"(Out\[\d+\]: )?later: ", first), first  # the status line, at once
    job = finish(handle)
    assert job["state"] == "succeeded" and job["id"] == handle.id
    out, err = capsys.readouterr()
    assert err == ""
    assert out.splitlines()[-1].startswith("later: succeeded")  # the line's last update
    assert handle.result() == {"answer": 42}
    assert handle.logs() == "done\n"
    assert repr(handle).startswith(f"{handle.id} · later: succeeded")
    assert "answer" not in ip.user_ns

    ip.run_line_magic("mlinfra", f"pull {handle.id}")
    assert ip.user_ns["answer"] == 42
    ip.run_line_magic("mlinfra", f"status {handle.id}")
    ip.run_line_magic("mlinfra", f"logs {handle.id} --tail 1")
    ip.run_line_magic("mlinfra", "jobs --state succeeded")
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.splitlines()
    assert lines[0] == f"pulled answer from job {handle.id}"
    assert lines[1].startswith("later: succeeded")
    assert [line.split()[1] for line in lines[2:6]] == ["Queued", "Admitted", "Started", "Finished"]
    assert "done" in lines
    table = lines[lines.index("done") + 1 :]
    assert table[0].split()[:3] == ["ID", "NAME", "STATE"]
    assert any(row.startswith(f"{handle.id}  later") for row in table)


def test_a_cell_shows_only_the_live_status_line_of_its_job(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    """Run as a cell (through IPython's display hook): the line that keeps itself current,
    and no snapshot of the job beside it; the handle is still ``_``."""
    ip.run_cell("%%mlinfra submit --name single\nprint('hi')")
    handle = ip.user_ns["_"]
    assert isinstance(handle, JobHandle)
    assert handle.live is not None and handle.live.shown
    finish(handle)
    out, err = capsys.readouterr()
    assert err == ""
    assert re.match(r"(Out\[\d+\]: )?single: ", out), out  # the live line, at the cell's end
    assert handle.id not in out  # and no "0123456789ab · single: queued" beside it
    assert out.splitlines()[-1].startswith("single: succeeded")
    ip.run_cell("_")  # in a later cell, the handle shows the job as it is then
    assert capsys.readouterr().out.rstrip().endswith(f"{handle.id} · single: succeeded in 0s")


def test_cancel_a_running_job(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str], home: AgentHome
) -> None:
    code = "import time\nprint('started', flush=True)\ntime.sleep(60)"
    handle = ip.run_cell_magic("mlinfra", "submit --procs 2 --name sleeper", code)
    assert isinstance(handle, JobHandle)
    wait_until(lambda: handle.status()["state"] == "running")
    ip.run_line_magic("mlinfra", "queue")
    ip.run_line_magic("mlinfra", f"cancel {handle.id}")
    job = finish(handle)
    assert job["state"] == "cancelled"
    out, err = capsys.readouterr()
    assert err == ""
    assert "job(s) waiting in all" in out
    assert "sleeper: cancelled" in out
    wait_until(lambda: not home.live_ranks())


def test_interrupting_wait_stops_following_and_the_job_keeps_running(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str], lab: LabServer
) -> None:
    code = "import time\nprint('started', flush=True)\ntime.sleep(60)"
    ids: list[str] = []

    def interrupt_once_running() -> None:
        def running() -> bool:
            jobs = rest(lab, "jobs?state=running")["jobs"]
            ids.extend(j["id"] for j in jobs if j["name"] == "follow-me")
            return bool(ids)

        wait_until(running)
        # interrupted once its log is streamed, however long that takes on a loaded machine:
        # capsys has sys.stdout write into a buffer this thread can read without consuming it
        printed = sys.stdout
        wait_until(lambda: "started" in printed.getvalue(), timeout=60)  # type: ignore[attr-defined]
        os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Thread(target=interrupt_once_running, daemon=True)
    timer.start()
    ip.run_cell_magic("mlinfra", "submit --name follow-me --wait", code)
    timer.join()
    out, err = capsys.readouterr()
    assert err == ""
    assert "started" in out
    assert out.rstrip().endswith(f"Cancel it with: %mlinfra cancel {ids[0]}")
    assert rest(lab, f"jobs/{ids[0]}")["state"] == "running"
    ip.run_line_magic("mlinfra", f"cancel {ids[0]}")
    assert "follow-me: cancelled" in capsys.readouterr().out


def test_an_unknown_flavor_is_one_line(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ip.run_cell_magic("mlinfra", "submit --flavor x --wait", "print(1)") is None
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("mlinfra: unknown flavor 'x' (known: cpu")
    assert err.count("\n") == 1
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert f"`{err.strip()}`" in readme, "the README example is not what is printed"


@pytest.mark.parametrize(
    ("magic", "line", "cell", "error"),
    [
        ("cell", "submit --push numbers,nope", "print(1)", "push: no variable 'nope'"),
        ("cell", "submit --push lock", "print(1)", "push: cannot send 'lock': TypeError"),
        ("cell", "submit", "\n  \n", "submit: the cell is empty"),
        ("cell", "submit --nodes zero", "print(1)", "submit: argument --nodes"),
        ("line", "logs 0123456789ab --rank x", None, "logs: argument --rank"),
        ("line", "status nope", None, "not a job id: 'nope'"),
        ("line", "status 0123456789ab", None, "no job '0123456789ab'"),
        ("line", "jobs --state sleeping", None, "state: unknown 'sleeping'"),
    ],
)
def test_errors_are_one_line_on_stderr(
    ip: InteractiveShell,
    capsys: pytest.CaptureFixture[str],
    magic: str,
    line: str,
    cell: str | None,
    error: str,
) -> None:
    ip.user_ns["numbers"] = [1]
    ip.user_ns["lock"] = threading.Lock()
    if magic == "cell":
        assert ip.run_cell_magic("mlinfra", line, cell or "") is None
    else:
        assert ip.run_line_magic("mlinfra", line) is None
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"mlinfra: {error}"), err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_no_server_is_one_line(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JUPYTER_MLINFRA_URL", "http://127.0.0.1:9/")
    ip.run_line_magic("mlinfra", "jobs")
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("mlinfra: cannot reach the Jupyter server at http://127.0.0.1:9/")
    assert err.count("\n") == 1


def test_help_and_flavors(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    ip.run_line_magic("mlinfra", "")
    ip.run_line_magic("mlinfra", "flavors")
    out, err = capsys.readouterr()
    assert err == ""
    assert out.startswith("usage: %mlinfra")
    table = out[out.index("NAME") :].splitlines()
    assert table[0].split()[:3] == ["NAME", "ACCELERATOR", "CPU"]
    assert table[1].startswith("cpu *")


def rest(lab: LabServer, path: str) -> Any:
    request = urllib.request.Request(lab.url(f"mlinfra/api/v1/{path}"), headers=lab.auth_header)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


# --- end to end in a kernel the server started ----------------------------------------------

ALL_REDUCE = """\
%%mlinfra submit --procs 2 --wait --pull reduced
import torch
import torch.distributed as dist

dist.init_process_group("gloo")  # env://: MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE
rank = dist.get_rank()
reduced = torch.tensor([float(rank + 1), 10.0])
dist.all_reduce(reduced)
print("rank", rank, "of", dist.get_world_size(), "sum", reduced.tolist())
dist.destroy_process_group()
"""


def test_pytorch_all_reduce_from_a_real_kernel(lab: LabServer) -> None:
    need(
        importlib.util.find_spec("torch") is not None,
        "PyTorch is not installed (pip install torch==2.13.0)",
    )
    with running_kernel(lab) as execute:
        assert execute("%load_ext jupyter_mlinfra") == ""
        output = execute(ALL_REDUCE)
        assert "[rank 0] rank 0 of 2 sum [3.0, 20.0]\n" in output, output
        assert "[rank 1] rank 1 of 2 sum [3.0, 20.0]\n" in output, output
        assert "pulled reduced from job" in output and "Traceback" not in output
        check = execute("print(type(reduced).__module__, reduced.tolist())")
        assert check == "torch [3.0, 20.0]\n"
