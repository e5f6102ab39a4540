"""The in-job entry point, run as real rank processes with the contract's environment."""

from __future__ import annotations

import ast
import base64
import importlib.util
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

import jupyter_mlinfra.launch
from jupyter_mlinfra.launch.contract import rank_env, rank_slots, thread_env

from .optional import need

ENTRY = Path(jupyter_mlinfra.launch.__file__).parent / "entry.py"
WAIT = 60  # seconds before a hung rank fails its test (they take well under one)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Rank:
    exit_code: int
    stdout: str
    stderr: str
    result: dict[str, Any]


def write_job(job_dir: Path, push: dict[str, Any] | None = None, **fields: Any) -> Path:
    job_dir.mkdir(parents=True, exist_ok=True)
    job: dict[str, Any] = {
        "code": "",
        "script": "",
        "args": [],
        "push_file": "",
        "pull": [],
        "cpus": [],
        "working_dir": "",
        **fields,
    }
    if "code" in fields:
        job["code"] = textwrap.dedent(fields["code"])
    if push is not None:
        encoded = {k: base64.b64encode(cloudpickle.dumps(v)).decode() for k, v in push.items()}
        (job_dir / "push.json").write_text(json.dumps(encoded))
        job["push_file"] = "push.json"
    (job_dir / "job.json").write_text(json.dumps(job))
    return job_dir


def start_ranks(
    job_dir: Path, ranks: int = 1, framework: str = "generic", **popen: Any
) -> list[subprocess.Popen[str]]:
    """Every rank of a one-node job, as the local runner starts them."""
    base = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "TF_CONFIG")}
    port = free_port()
    procs = []
    for slot in rank_slots(1, ranks):
        contract = rank_env(
            framework,
            slot,
            nodes=1,
            procs_per_node=ranks,
            master_addr="127.0.0.1",
            master_port=port,
        )
        env = {**base, **contract, **thread_env(1)}
        logs = {  # per rank, as the runner keeps them
            stream: open(job_dir / f"rank-{slot.rank}.{stream[3:]}", "w")  # noqa: SIM115
            for stream in ("stdout", "stderr")
            if stream not in popen
        }
        command = [sys.executable, str(ENTRY), str(job_dir)]
        procs.append(subprocess.Popen(command, env=env, text=True, **logs, **popen))
        for log in logs.values():
            log.close()
    return procs


def finish(job_dir: Path, procs: Sequence[subprocess.Popen[str]]) -> list[Rank]:
    try:
        codes = [proc.wait(timeout=WAIT) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    ranks = []
    for rank, code in enumerate(codes):
        out, err = (job_dir / f"rank-{rank}.out"), (job_dir / f"rank-{rank}.err")
        result_file = job_dir / f"rank-{rank}.result.json"
        ranks.append(
            Rank(
                exit_code=code,
                stdout=out.read_text() if out.exists() else "",
                stderr=err.read_text() if err.exists() else "",
                result=json.loads(result_file.read_text()),
            )
        )
    return ranks


def run_job(job_dir: Path, ranks: int = 1, framework: str = "generic", **job: Any) -> list[Rank]:
    write_job(job_dir, **job)
    return finish(job_dir, start_ranks(job_dir, ranks, framework))


def pulled(job_dir: Path) -> dict[str, Any]:
    value: dict[str, Any] = cloudpickle.loads((job_dir / "pull.pkl").read_bytes())
    return value


def test_two_ranks_exchange_data_over_a_socket(tmp_path: Path) -> None:
    code = """
        import os, socket, time
        rank, addr = int(os.environ["RANK"]), os.environ["MASTER_ADDR"]
        port = int(os.environ["MASTER_PORT"])
        if rank == 0:
            with socket.create_server((addr, port)) as server:
                conn, _ = server.accept()
        else:
            deadline = time.monotonic() + 60  # rank 0 may start late on a loaded machine
            while True:
                try:
                    conn = socket.create_connection((addr, port))
                    break
                except ConnectionRefusedError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
        with conn:
            conn.sendall(str(rank).encode())
            peer = int(conn.recv(16).decode())
        print(f"rank {rank} of {os.environ['WORLD_SIZE']} got {peer}")
    """
    ranks = run_job(tmp_path, ranks=2, code=code, pull=["peer"])
    assert [r.exit_code for r in ranks] == [0, 0], [r.stderr for r in ranks]
    assert ranks[0].stdout == "rank 0 of 2 got 1\n"
    assert ranks[1].stdout == "rank 1 of 2 got 0\n"
    assert pulled(tmp_path) == {"peer": 1}  # from rank 0 only
    for rank in ranks:
        assert rank.result["exit_code"] == 0 and rank.result["traceback"] == ""
        assert rank.result["started"] <= rank.result["finished"]


def test_pushed_variables_in_pulled_variables_out(tmp_path: Path) -> None:
    offset = 10
    push = {"config": {"factor": 3}, "scale": lambda x: x * 2 + offset}
    code = """
        def square(x):
            return x * x

        result = scale(config["factor"])
        squares = [square(i) for i in range(4)]
    """
    [rank] = run_job(tmp_path, code=code, push=push, pull=["result", "square", "squares"])
    assert rank.exit_code == 0, rank.stderr
    values = pulled(tmp_path)
    assert values["result"] == 16 and values["squares"] == [0, 1, 4, 9]
    assert values["square"](7) == 49  # a function of the cell, pickled by value


def test_a_missing_pull_variable_fails_naming_it(tmp_path: Path) -> None:
    (tmp_path / "pull.pkl").write_bytes(b"from a previous attempt")
    [rank] = run_job(tmp_path, code="result = 1\n", pull=["result", "nowhere"])
    assert rank.exit_code == 1
    assert "'nowhere'" in rank.result["traceback"] and "'result'" not in rank.result["traceback"]
    assert "'nowhere'" in rank.stderr
    assert not (tmp_path / "pull.pkl").exists()


def test_an_exception_exits_1_with_the_cells_traceback(tmp_path: Path) -> None:
    code = """
        x = 1

        def boom():
            raise ValueError("bad value")

        boom()
    """
    [rank] = run_job(tmp_path, code=code)
    assert rank.exit_code == rank.result["exit_code"] == 1
    tb = rank.result["traceback"]
    assert tb.startswith("Traceback (most recent call last):")
    assert 'File "<cell>", line 7' in tb and 'File "<cell>", line 5, in boom' in tb
    assert 'raise ValueError("bad value")' in tb  # the cell's source line is shown
    assert tb.rstrip().endswith("ValueError: bad value")
    assert "entry.py" not in tb
    assert tb in rank.stderr


@pytest.mark.parametrize(
    ("code", "exit_code", "message"),
    [
        ("import sys\nsys.exit(3)\n", 3, ""),
        ("raise SystemExit\n", 0, ""),
        ("raise SystemExit('giving up')\n", 1, "giving up"),
    ],
)
def test_system_exit_sets_the_exit_code(
    tmp_path: Path, code: str, exit_code: int, message: str
) -> None:
    [rank] = run_job(tmp_path, code=code)
    assert rank.exit_code == rank.result["exit_code"] == exit_code
    assert rank.result["traceback"].strip() == message


def test_sigterm_exits_143_after_finally_blocks(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    code = """
        import time
        try:
            print("ready")  # no flush: the entry point line-buffers the job's output
            time.sleep(60)
        finally:
            open("finally.txt", "w").write("ran")
    """
    write_job(tmp_path, code=code, working_dir=str(work))
    [proc] = start_ranks(tmp_path, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], WAIT)
        assert ready and proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=WAIT)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    assert proc.returncode == 143
    result = json.loads((tmp_path / "rank-0.result.json").read_text())
    assert result["exit_code"] == 143
    stopped = result["traceback"]
    # the signal lands on line 4 or 5 (the print may still be returning): either is the cell's
    assert stopped.startswith("mlinfra: rank 0 stopped by SIGTERM (exit code 143) in:\n")
    assert re.search(r'File "<cell>", line [45], in <module>\n', stopped), stopped
    assert "_on_sigterm" not in stopped and "entry.py" not in stopped
    assert (work / "finally.txt").read_text() == "ran"


def test_a_script_with_arguments(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "helper.py").write_text("def add(values):\n    return sum(values)\n")
    (source / "train.py").write_text(
        "import sys\nfrom helper import add\n"
        "total = add(int(a) for a in sys.argv[1:]) * factor\n"
        "print(sys.argv[0], __name__, total)\n"
    )
    job_dir = tmp_path / "job"
    write_job(
        job_dir,
        script=str(source / "train.py"),
        args=["1", "2", "3"],
        push={"factor": 2},
        pull=["total"],
    )
    [rank] = finish(job_dir, start_ranks(job_dir))
    assert rank.exit_code == 0, rank.stderr
    assert rank.stdout == f"{source / 'train.py'} __main__ 12\n"
    assert pulled(job_dir) == {"total": 12}

    (source / "fail.py").write_text("import sys\n\nraise RuntimeError(sys.argv[1])\n")
    [rank] = run_job(job_dir, script=str(source / "fail.py"), args=["nope"])
    assert rank.exit_code == 1
    tb = rank.result["traceback"]
    assert f'File "{source / "fail.py"}", line 3' in tb and "RuntimeError: nope" in tb
    assert "runpy" not in tb and "entry.py" not in tb


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity is Linux-only")
def test_cpu_pinning_and_working_dir(tmp_path: Path) -> None:
    cpu = max(os.sched_getaffinity(0))
    work = tmp_path / "work"
    work.mkdir()
    code = "import os\naffinity = sorted(os.sched_getaffinity(0))\ncwd = os.getcwd()\n"
    [rank] = run_job(
        tmp_path / "job", code=code, cpus=[cpu], working_dir=str(work), pull=["affinity", "cwd"]
    )
    assert rank.exit_code == 0, rank.stderr
    assert pulled(tmp_path / "job") == {"affinity": [cpu], "cwd": str(work)}


def test_a_bad_job_directory_is_recorded(tmp_path: Path) -> None:
    [rank] = finish(tmp_path, start_ranks(tmp_path))  # no job.json
    assert rank.exit_code == 1
    assert "job.json" in rank.result["traceback"] and "job.json" in rank.stderr
    usage = subprocess.run([sys.executable, str(ENTRY)], capture_output=True, text=True)
    assert usage.returncode == 2 and "usage" in usage.stderr


def test_a_relative_job_dir_survives_the_working_dir(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    write_job(
        tmp_path / "job", code="import os\ncwd = os.getcwd()\n", working_dir=str(work), pull=["cwd"]
    )
    done = subprocess.run(
        [sys.executable, str(ENTRY), "job"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert done.returncode == 0, done.stderr
    assert pulled(tmp_path / "job") == {"cwd": str(work)}
    assert json.loads((tmp_path / "job" / "rank-0.result.json").read_text())["exit_code"] == 0


@pytest.mark.parametrize(("sent", "code"), [(b"1", 0), (b"", 75)])
def test_a_gated_rank_runs_only_once_let_through(tmp_path: Path, sent: bytes, code: int) -> None:
    """The local agent's ranks wait on stdin until it recorded them: one byte lets a rank run;
    stdin closed unsent (the agent died first) ends it with 75, having run nothing. The job
    then reads stdin as empty, as any rank does."""
    job = write_job(
        tmp_path / "job", code="import sys\nprint('ran, stdin:', repr(sys.stdin.read()))"
    )
    done = subprocess.run(
        [sys.executable, str(ENTRY), "--gate", str(job)],
        input=sent,
        capture_output=True,
        timeout=WAIT,
    )
    assert done.returncode == code, done.stderr
    if sent:
        assert done.stdout == b"ran, stdin: ''\n"
    else:
        assert (done.stdout, done.stderr) == (b"", b"")
        assert not list(job.glob("rank-0.*"))  # not even ready: nothing ran


def test_entry_imports_only_the_standard_library() -> None:
    tree = ast.parse(ENTRY.read_text())
    imported = {
        name.split(".")[0]
        for node in ast.walk(tree)
        for name in (
            [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
            if isinstance(node, ast.ImportFrom) and node.level == 0
            else []
        )
    }
    assert imported - {"__future__"} <= sys.stdlib_module_names, imported
    assert not any(isinstance(n, ast.ImportFrom) and n.level for n in ast.walk(tree))
    assert '"cloudpickle"' in ENTRY.read_text()  # imported lazily, by name


def test_pytorch_gloo_all_reduce_on_two_ranks(tmp_path: Path) -> None:
    need(
        importlib.util.find_spec("torch") is not None,
        "PyTorch is not installed (pip install torch==2.13.0)",
    )
    code = """
        import torch
        import torch.distributed as dist

        dist.init_process_group("gloo", init_method="env://")
        total = torch.tensor([dist.get_rank() + 1.0, 10.0])
        dist.all_reduce(total)
        world = dist.get_world_size()
        dist.destroy_process_group()
    """
    ranks = run_job(tmp_path, ranks=2, framework="pytorch", code=code, pull=["total", "world"])
    assert [r.exit_code for r in ranks] == [0, 0], [r.stderr for r in ranks]
    values = pulled(tmp_path)
    assert values["world"] == 2
    assert values["total"].tolist() == [3.0, 20.0]
