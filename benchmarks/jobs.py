"""Queued jobs: submission throughput, submit→running, listing and admission, in one run.

    python benchmarks/jobs.py [--clients 8] [--seconds 8] [--no-scheduler]

Measures, each against anchors timed in the same run on the same machine:

1. ``POST /mlinfra/api/v1/jobs`` of an empty job ``{"code": "pass"}`` through a real
   ``jupyter lab`` and a private local agent: jobs/s from several concurrent clients over
   keep-alive connections (target ≥ 500/s). Anchors: ``GET /api/status`` and
   ``POST /api/contents`` (create an empty file) on the same server, same clients.
2. Submit→running of an empty job: from the POST to the first ``GET /jobs/{id}`` (polled
   every 5 ms) that shows it running or succeeded, one job at a time (target p50 < 300 ms).
3. ``GET /mlinfra/api/v1/jobs?limit=100`` with 10,000 stored jobs (target p50 < 100 ms).
4. One admission pass ``queue.plan`` over 10,000 pending jobs, in memory (target p50 < 50 ms).

jupyter-scheduler, when importable, runs in a second lab of its own: ``POST /scheduler/jobs``
from a tiny notebook (jobs/s, and submit→IN_PROGRESS). Every count and wait is bounded; every
process started here (labs, agents, ranks, scheduler workers) is stopped by its pid at the end.
All traffic stays on 127.0.0.1 and Unix sockets.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import http.client
import importlib.util
import itertools
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jupyter_mlinfra.backends.local.runner import is_alive
from jupyter_mlinfra.capacity import Device, Machine
from jupyter_mlinfra.jobs import queue
from jupyter_mlinfra.jobs.spec import Job, JobSpec, JobState, Resources
from jupyter_mlinfra.jobs.store import JobStore
from jupyter_mlinfra.quotas import Quota
from tests.agents import AgentHome
from tests.lab_server import LabServer, running_lab

JOBS = "mlinfra/api/v1/jobs"
EMPTY_JOB = json.dumps({"code": "pass"}).encode()
POLL_S = 0.005
GiB = 1024**3

# ---------------------------------------------------------------------------------------------
# HTTP helpers: one keep-alive connection per client thread
# ---------------------------------------------------------------------------------------------


class Client:
    """One keep-alive HTTP connection to a lab, with its token."""

    def __init__(self, server: LabServer) -> None:
        parts = urlsplit(server.base_url)
        self.prefix = parts.path
        self.headers = {**server.auth_header, "Content-Type": "application/json"}
        self.connection = http.client.HTTPConnection(parts.netloc, timeout=60)

    def call(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        self.connection.request(method, self.prefix + path, body=body, headers=self.headers)
        response = self.connection.getresponse()
        return response.status, response.read()

    def json(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200,)) -> Any:
        data = None if body is None else json.dumps(body).encode()
        status, text = self.call(method, path, data)
        if status not in ok:
            raise RuntimeError(f"{method} {path}: HTTP {status}: {text[:300]!r}")
        return json.loads(text)

    def close(self) -> None:
        self.connection.close()


Request = Callable[[int, int], tuple[str, str, bytes | None]]
"""(client index, that client's request number) -> (method, path, body)."""


@dataclass
class Burst:
    count: int
    seconds: float
    latencies: list[float]
    done: list[float]
    """When each request finished, in seconds from the start, sorted."""

    @property
    def rate(self) -> float:
        return self.count / self.seconds

    def rate_between(self, first: float, last: float) -> float:
        """Requests per second between two fractions of the requests (0.0 to 1.0), to see
        whether the rate holds up as the queue grows."""
        if self.count < 6:
            return self.rate
        a, b = int(first * (self.count - 1)), int(last * (self.count - 1))
        return (b - a) / max(self.done[b] - self.done[a], 1e-9)


def burst(
    server: LabServer,
    request: Request,
    ok: tuple[int, ...],
    *,
    clients: int,
    seconds: float,
    max_count: int,
) -> Burst:
    """``clients`` threads send requests back to back until ``max_count`` or ``seconds``."""
    counter = itertools.count()
    gate = threading.Barrier(clients + 1)
    latencies: list[list[float]] = [[] for _ in range(clients)]
    done: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    deadline = [0.0]

    def work(index: int) -> None:
        client = Client(server)
        try:
            gate.wait()
            for number in itertools.count():
                if next(counter) >= max_count or time.perf_counter() > deadline[0]:
                    return
                method, path, body = request(index, number)
                start = time.perf_counter()
                status, text = client.call(method, path, body)
                end = time.perf_counter()
                latencies[index].append(end - start)
                done[index].append(end)
                if status not in ok:
                    errors.append(f"{method} {path}: HTTP {status}: {text[:200]!r}")
                    return
        except Exception as error:
            errors.append(repr(error))
        finally:
            client.close()

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    start = time.perf_counter()
    deadline[0] = start + seconds
    gate.wait()
    for thread in threads:
        thread.join(seconds + 60)
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{len(errors)} failed requests, first: {errors[0]}")
    flat = [x for per_client in latencies for x in per_client]
    ends = sorted(t - start for per_client in done for t in per_client)
    return Burst(len(flat), elapsed, flat, ends)


def sequential(
    client: Client, method: str, path: str, body: bytes | None, count: int
) -> list[float]:
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        status, text = client.call(method, path, body)
        samples.append(time.perf_counter() - start)
        if status not in (200, 201):
            raise RuntimeError(f"{method} {path}: HTTP {status}: {text[:200]!r}")
    return samples


def p50(samples: list[float]) -> float:
    return statistics.median(samples)


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[18] if len(samples) > 1 else samples[0]


# ---------------------------------------------------------------------------------------------
# Labs and agents, always stopped
# ---------------------------------------------------------------------------------------------


def has_scheduler() -> bool:
    return importlib.util.find_spec("jupyter_scheduler") is not None


def write_server_config(tmp: Path, config: dict[str, Any]) -> None:
    folder = tmp / "config"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "jupyter_server_config.json").write_text(json.dumps(config))


def kill_pids(pids: list[int]) -> None:
    """SIGTERM, a short wait, then SIGKILL, for each pid still alive (by pid, never by name)."""
    alive = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            process = psutil.Process(pid)
            process.terminate()
            alive.append(process)
    _, left = psutil.wait_procs(alive, timeout=5)
    for process in left:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(left, timeout=5)


def agent_pids(home: AgentHome) -> list[int]:
    """The agent serving this home's socket: its path is unique to this run."""
    pids = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            if home.socket in (process.info["cmdline"] or []):
                pids.append(process.info["pid"])
    return pids


def stop_agent(home: AgentHome) -> None:
    """The agent, even when too busy to answer, then every rank it started."""
    pids = agent_pids(home)
    with contextlib.suppress(OSError):
        home.stop()  # SIGTERM through its status, then rank process groups
    kill_pids([p for p in pids if psutil.pid_exists(p)])
    for pid, started in home.rank_pids():
        if is_alive(pid, started):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)


@contextlib.contextmanager
def mlinfra_lab(
    prefill: Callable[[AgentHome], None] | None = None,
) -> Iterator[tuple[LabServer, AgentHome]]:
    """A lab with only jupyter_mlinfra (no quotas) and a private agent under /tmp."""
    tmp = Path(tempfile.mkdtemp(prefix="mlb-"))
    home = AgentHome(Path(tempfile.mkdtemp(prefix="mla-", dir="/tmp")))
    try:
        extensions = {"jupyter_mlinfra": True}
        if has_scheduler():
            extensions["jupyter_scheduler"] = False
        write_server_config(
            tmp,
            {
                "ServerApp": {"jpserver_extensions": extensions},
                "MLInfraApp": {**home.settings, "default_quota": {}},
            },
        )
        if prefill is not None:
            prefill(home)
        with running_lab(tmp) as server:
            yield server, home
    finally:
        stop_agent(home)
        shutil.rmtree(home.root, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def scheduler_lab() -> Iterator[LabServer]:
    """A lab with jupyter-scheduler only; its job processes and kernels are stopped after."""
    tmp = Path(tempfile.mkdtemp(prefix="mls-"))
    try:
        write_server_config(
            tmp,
            {
                "ServerApp": {
                    "jpserver_extensions": {"jupyter_scheduler": True, "jupyter_mlinfra": False}
                }
            },
        )
        with running_lab(tmp) as server:
            try:
                yield server
            finally:
                # Children (spawned job processes, their kernels) would outlive the lab.
                with contextlib.suppress(psutil.Error):
                    children = psutil.Process(server.pid).children(recursive=True)
                    kill_pids([c.pid for c in children])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# 1. Submission throughput, with the anchors on the same server
# ---------------------------------------------------------------------------------------------

FILES_PER_DIR = 100
"""POST /api/contents picks "untitled<N>" by probing names one by one, so it slows as a folder
fills; each client rotates to a fresh folder every 100 files to keep the anchor honest."""


def measure_throughput(args: argparse.Namespace) -> dict[str, Any]:
    clients, seconds, most = args.clients, args.seconds, args.max_jobs
    with mlinfra_lab() as (server, home):
        setup = Client(server)
        dirs = most // clients // FILES_PER_DIR + 2
        for c in range(clients):
            for k in range(dirs):
                setup.json("PUT", f"api/contents/c{c}-{k}", {"type": "directory"}, ok=(200, 201))

        def status(index: int, number: int) -> tuple[str, str, bytes | None]:
            return "GET", "api/status", None

        def new_file(index: int, number: int) -> tuple[str, str, bytes | None]:
            return "POST", f"api/contents/c{index}-{number // FILES_PER_DIR}", b'{"type":"file"}'

        def new_job(index: int, number: int) -> tuple[str, str, bytes | None]:
            return "POST", JOBS, EMPTY_JOB

        # warm-up, which also starts the agent; then wait for the warm-up jobs to finish
        sequential(setup, "GET", "api/status", None, 20)
        sequential(setup, "POST", "api/contents/c0-0", b'{"type":"file"}', 5)
        warm = [setup.json("POST", JOBS, {"code": "pass"}, ok=(201,))["id"] for _ in range(5)]
        for job_id in warm:
            wait_state(setup, job_id, {"succeeded", "failed"}, 60)
        setup.close()

        kw = {"clients": clients, "seconds": seconds, "max_count": most}
        result = {
            "status": burst(server, status, (200,), **kw),
            "contents": burst(server, new_file, (201,), **kw),
            "jobs": burst(server, new_job, (201,), **kw),
        }
        if args.profile_server:
            result["profile"] = profile_lab(server, home, new_job, kw)
    return result


def profile_lab(server: LabServer, home: AgentHome, request: Request, kw: dict[str, Any]) -> str:
    """CPU seconds the lab and the agent spend on a second burst of submissions."""
    lab = psutil.Process(server.pid)
    agents = [psutil.Process(pid) for pid in agent_pids(home)]
    before = {p.pid: sum(p.cpu_times()[:2]) for p in [lab, *agents]}
    shot = burst(server, request, (201,), **kw)
    after = {p.pid: sum(p.cpu_times()[:2]) for p in [lab, *agents]}
    lines = [f"second burst: {shot.count} jobs in {shot.seconds:.2f} s ({shot.rate:.0f}/s)"]
    lines.append(f"  lab server CPU: {after[lab.pid] - before[lab.pid]:.2f} s")
    for agent in agents:
        lines.append(f"  agent {agent.pid} CPU: {after[agent.pid] - before[agent.pid]:.2f} s")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# 2. Submit→running, one job at a time
# ---------------------------------------------------------------------------------------------


def wait_state(client: Client, job_id: str, states: set[str], timeout: float) -> tuple[str, float]:
    """Poll ``GET /jobs/{id}`` every 5 ms until its state is in ``states``; (state, when)."""
    deadline = time.perf_counter() + timeout
    while True:
        job = client.json("GET", f"{JOBS}/{job_id}")
        now = time.perf_counter()
        if job["state"] in states:
            return job["state"], now
        if job["state"] in ("failed", "cancelled") or now > deadline:
            raise RuntimeError(f"job {job_id} is {job['state']}: {job.get('reason')}")
        time.sleep(POLL_S)


def measure_latency(args: argparse.Namespace) -> dict[str, list[float]]:
    with mlinfra_lab() as (server, _):
        client = Client(server)
        try:
            client.json("POST", "api/contents", {"type": "directory"}, ok=(201,))
            sequential(client, "GET", "api/status", None, 20)
            warm = client.json("POST", JOBS, {"code": "pass"}, ok=(201,))["id"]
            wait_state(client, warm, {"succeeded"}, 60)
            out: dict[str, list[float]] = {"post": [], "running": []}
            for _ in range(args.latency_jobs):
                start = time.perf_counter()
                job = client.json("POST", JOBS, {"code": "pass"}, ok=(201,))
                out["post"].append(time.perf_counter() - start)
                _, seen = wait_state(client, job["id"], {"running", "succeeded"}, 30)
                out["running"].append(seen - start)
                wait_state(client, job["id"], {"succeeded"}, 30)  # one at a time
            out["status"] = sequential(client, "GET", "api/status", None, 100)
            path = "api/contents/Untitled%20Folder"
            out["contents"] = sequential(client, "POST", path, b'{"type":"file"}', 100)
        finally:
            client.close()
    return out


# ---------------------------------------------------------------------------------------------
# 3. Listing with 10,000 stored jobs
# ---------------------------------------------------------------------------------------------


def stored_jobs(count: int, owner: str) -> Iterator[Job]:
    """Finished jobs like a busy week's history (finished, so the agent has nothing to run)."""
    base = time.time() - count * 10.0
    spec = JobSpec(code="pass", flavor="cpu", environment="python", priority="normal")
    node = Resources(cpu=1, memory_bytes=GiB, accelerators=0)
    for i in range(count):
        created = base + i * 10.0
        yield Job(
            id=f"{i:012x}",
            owner=owner,
            spec=replace(spec, name=f"job-{i}", procs_per_node=1),
            priority_value=100,
            node=node,
            state=JobState.SUCCEEDED if i % 10 else JobState.FAILED,
            reason="all ranks exited with 0" if i % 10 else "rank 0 exited with 1",
            created=created,
            admitted=created + 0.01,
            started=created + 0.05,
            finished=created + 1.0,
            exit_code=0 if i % 10 else 1,
        )


def measure_listing(args: argparse.Namespace) -> dict[str, Any]:
    timing: dict[str, float] = {}

    def prefill(home: AgentHome) -> None:
        home.data_dir.mkdir(parents=True)
        start = time.perf_counter()
        store = JobStore(home.data_dir / "jobs.sqlite")
        try:
            for job in stored_jobs(args.stored, getpass.getuser()):
                store.add(job, [])
            assert store.count() == args.stored
        finally:
            store.close()
        timing["prefill"] = time.perf_counter() - start

    with mlinfra_lab(prefill) as (server, _):
        client = Client(server)
        try:
            path = f"{JOBS}?limit=100"
            page = client.json("GET", path)
            assert len(page["jobs"]) == 100 and page["next"], page.get("next")
            sequential(client, "GET", path, None, 10)
            listing = sequential(client, "GET", path, None, args.list_requests)
            status = sequential(client, "GET", "api/status", None, args.list_requests)
            size = len(client.call("GET", path)[1])
        finally:
            client.close()
    return {"list": listing, "status": status, "bytes": size, **timing}


# ---------------------------------------------------------------------------------------------
# 4. One admission pass over 10,000 pending jobs
# ---------------------------------------------------------------------------------------------

SHAPES = [  # (flavor, GPUs per node, CPUs, memory GiB, share of the queue in tenths)
    ("cpu", 0, 1, 4, 4),
    ("a100x1", 1, 4, 32, 3),
    ("a100x2", 2, 8, 64, 1),
    ("a100x4", 4, 16, 128, 1),
    ("a100x8", 8, 32, 256, 1),
]


def admission_inputs(pending: int) -> tuple[list[Job], list[Job], Machine, dict[str, float]]:
    """An 8-GPU, 64-CPU machine with every GPU busy, and ``pending`` mixed jobs queued by 50
    users at three priorities, half with a max runtime, half relying on observed medians."""
    machine = Machine(
        hostname="bench",
        cpus=64,
        memory_bytes=512 * GiB,
        devices=tuple(Device(i, "nvidia.com/gpu", "NVIDIA A100-SXM4-80GB") for i in range(8)),
    )
    now = 1_000_000.0

    def job(i: int, flavor: str, gpus: int, cpu: int, memory: int, **kw: Any) -> Job:
        spec = JobSpec(
            code="pass",
            flavor=flavor,
            environment="python",
            priority="normal",
            procs_per_node=max(gpus, 1),
            max_runtime_seconds=600.0 if i % 2 else None,
        )
        node = Resources(cpu, memory * GiB, gpus, "nvidia.com/gpu" if gpus else "", "A100")
        return Job(id=f"{i:012x}", owner=f"user{i % 50}", spec=spec, node=node, **kw)

    running = [
        replace(
            job(i, "a100x1", 1, 4, 32, priority_value=0, created=now - 500),
            state=JobState.RUNNING,
            admitted=now - 400,
            started=now - 400,
            devices=((i,),),
        )
        for i in range(8)
    ]
    weights = [shape[:4] for shape in SHAPES for _ in range(shape[4])]
    queued = []
    for i in range(pending):
        flavor, gpus, cpu, memory = weights[i % len(weights)]
        priority = (0, 100, 1000)[i % 3]
        queued.append(
            job(100 + i, flavor, gpus, cpu, memory, priority_value=priority, created=now - i)
        )
    durations = {"cpu": 120.0, "a100x1": 900.0, "a100x2": 1800.0}
    return queued, running, machine, durations


def measure_admission(args: argparse.Namespace) -> dict[str, Any]:
    queued, running, machine, durations = admission_inputs(args.pending)
    now = 1_000_000.0
    quotas = {f"user{u}": Quota(max_gpus=4, max_running_jobs=8) for u in range(50)}
    scenarios = {
        "no quotas": ({}, False),
        "quotas + preemption": (quotas, True),
    }
    out: dict[str, Any] = {}
    for name, (owner_quotas, preemption) in scenarios.items():
        samples, cpu = [], []
        budget = time.perf_counter() + 60
        for _ in range(args.plan_runs + 2):
            start, start_cpu = time.perf_counter(), time.process_time()
            result = queue.plan(
                queued, running, [], machine, owner_quotas, now,
                preemption=preemption, durations=durations,
            )  # fmt: skip
            samples.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
            if time.perf_counter() > budget:
                break
        # the first two runs warm up; CPU time is what other load on the machine moves least
        out[name] = (samples[2:] or samples, cpu[2:] or cpu, len(result.admit), len(result.pending))
    sort = []
    for _ in range(args.plan_runs):
        start = time.perf_counter()
        sorted(queued, key=lambda j: (-j.priority_value, j.created, j.id))
        sort.append(time.perf_counter() - start)
    out["sort"] = sort
    return out


# ---------------------------------------------------------------------------------------------
# jupyter-scheduler, in a lab of its own
# ---------------------------------------------------------------------------------------------

TINY_NOTEBOOK = {
    "cells": [{"cell_type": "code", "metadata": {}, "source": "pass", "outputs": [],
               "execution_count": None}],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                "language": "python"}},
    "nbformat": 4,
    "nbformat_minor": 5,
}  # fmt: skip

SCHEDULER_DONE = {"COMPLETED", "FAILED"}
"""A new jupyter-scheduler job reads STOPPED until its process marks it IN_PROGRESS, so
STOPPED is not an end here (nothing in this run stops a job)."""


def measure_scheduler(args: argparse.Namespace) -> dict[str, Any]:
    with scheduler_lab() as server:
        (server.root_dir / "tiny.ipynb").write_text(json.dumps(TINY_NOTEBOOK))
        body = json.dumps(
            {
                "input_uri": "tiny.ipynb",
                "runtime_environment_name": "python3",
                "name": "bench",
                "output_formats": ["ipynb"],
            }
        ).encode()
        client = Client(server)
        try:
            sequential(client, "GET", "api/status", None, 10)

            def new_job(index: int, number: int) -> tuple[str, str, bytes | None]:
                return "POST", "scheduler/jobs", body

            shot = burst(
                server, new_job, (200,), clients=args.clients, seconds=args.seconds,
                max_count=args.scheduler_jobs,
            )  # fmt: skip
            wait_scheduler_idle(client, 180)
            post, running = [], []
            for _ in range(args.scheduler_latency_jobs):
                start = time.perf_counter()
                job_id = client.json("POST", "scheduler/jobs", json.loads(body))["job_id"]
                post.append(time.perf_counter() - start)
                deadline = start + 60
                while True:
                    status = client.json("GET", f"scheduler/jobs/{job_id}")["status"]
                    if status in {"IN_PROGRESS", *SCHEDULER_DONE}:
                        running.append(time.perf_counter() - start)
                        break
                    if time.perf_counter() > deadline:
                        raise RuntimeError(f"jupyter-scheduler job {job_id} stayed {status}")
                    time.sleep(POLL_S)
                wait_scheduler_idle(client, 60)
            failed = client.json("GET", "scheduler/jobs?status=FAILED")["jobs"]
        finally:
            client.close()
    return {"burst": shot, "post": post, "running": running, "failed": len(failed)}


def wait_scheduler_idle(client: Client, timeout: float) -> None:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        jobs = client.json("GET", "scheduler/jobs?max_items=1000")["jobs"]
        if all(j["status"] in SCHEDULER_DONE for j in jobs):
            return
        time.sleep(0.1)
    raise RuntimeError(f"jupyter-scheduler jobs still running after {timeout:.0f} s")


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


@dataclass
class Row:
    measure: str
    value: float
    unit: str
    target: str = ""
    met: bool | None = None
    anchor: str = ""
    anchor_value: float | None = None
    higher_is_better: bool = False
    notes: list[str] = field(default_factory=list)

    def cells(self) -> list[str]:
        value = (
            f"{self.value:,.1f} {self.unit}"
            if self.value >= 10
            else f"{self.value:.2f} {self.unit}"
        )
        met = "" if self.met is None else ("yes" if self.met else "NO")
        anchor, ratio = "", ""
        if self.anchor_value is not None:
            unit = self.unit
            a = self.anchor_value
            anchor = (
                f"{self.anchor}: {a:,.1f} {unit}" if a >= 10 else f"{self.anchor}: {a:.2f} {unit}"
            )
            r = self.value / a
            ratio = f"{r:.2f} ×" if r >= 0.1 else f"{r:.4f} ×"
        return [self.measure, value, self.target, met, anchor, ratio]


def print_table(rows: list[Row]) -> None:
    header = ["measure", "value", "target", "met?", "anchor (same run)", "ratio"]
    table = [header, *(row.cells() for row in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for n, line in enumerate(table):
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))
        if n == 0:
            print("  ".join("-" * width for width in widths))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8, help="concurrent HTTP clients")
    parser.add_argument("--seconds", type=float, default=8.0, help="longest burst")
    parser.add_argument("--max-jobs", type=int, default=3000, help="most requests per burst")
    parser.add_argument("--latency-jobs", type=int, default=30)
    parser.add_argument("--stored", type=int, default=10_000)
    parser.add_argument("--list-requests", type=int, default=50)
    parser.add_argument("--pending", type=int, default=10_000)
    parser.add_argument("--plan-runs", type=int, default=15)
    parser.add_argument("--scheduler-jobs", type=int, default=20)
    parser.add_argument("--scheduler-latency-jobs", type=int, default=10)
    parser.add_argument("--no-scheduler", action="store_true", help="skip jupyter-scheduler")
    parser.add_argument(
        "--profile-server", action="store_true", help="CPU seconds of lab and agent in a burst"
    )
    args = parser.parse_args()
    ms = 1e3
    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} CPUs, load average {load:.2f}, {args.clients} clients")
    if load > 0.5:
        print("  (the machine is busy: other processes share the CPUs, figures will be lower)")
    print()

    print("[4/4 first, no server] admission pass over", args.pending, "pending jobs ...")
    admission = measure_admission(args)
    print("[1/4] submission throughput ...")
    throughput = measure_throughput(args)
    print("[2/4] submit→running ...")
    latency = measure_latency(args)
    print(f"[3/4] listing with {args.stored:,} stored jobs ...")
    listing = measure_listing(args)
    scheduler: dict[str, Any] | None = None
    skipped = ""
    if args.no_scheduler:
        skipped = "--no-scheduler"
    elif not has_scheduler():
        skipped = "jupyter_scheduler is not importable (pip install jupyter-scheduler)"
    else:
        print("[anchor] jupyter-scheduler ...")
        try:
            scheduler = measure_scheduler(args)
        except (RuntimeError, OSError, TimeoutError) as error:
            skipped = f"jupyter-scheduler failed: {error}"

    jobs, status, contents = throughput["jobs"], throughput["status"], throughput["contents"]

    def spread(samples: list[float]) -> str:
        return f"p50 {p50(samples) * ms:7.2f} ms  p95 {p95(samples) * ms:7.2f} ms"

    print(f"\nbursts, {args.clients} clients over keep-alive connections:")
    for name, shot in (("POST jobs", jobs), ("GET /api/status", status),
                       ("POST /api/contents", contents)):  # fmt: skip
        print(
            f"  {name:19} {shot.count:5d} in {shot.seconds:5.2f} s = {shot.rate:7.1f}/s "
            f"(first third {shot.rate_between(0, 1 / 3):6.1f}/s, last third "
            f"{shot.rate_between(2 / 3, 1):6.1f}/s); per request {spread(shot.latencies)}"
        )
    print("one at a time (one client):")
    single = {"POST jobs": "post", "submit→running": "running", "GET /api/status": "status",
              "POST /api/contents": "contents"}  # fmt: skip
    for name, key in single.items():
        print(f"  {name:19} {spread(latency[key])}  (n={len(latency[key])})")
    print(
        f"listing: {listing['bytes']:,} bytes per page of 100; {args.stored:,} jobs stored "
        f"through JobStore in {listing['prefill']:.1f} s; GET {spread(listing['list'])}"
    )
    for name in ("no quotas", "quotas + preemption"):
        samples, cpu, admitted, waiting = admission[name]
        print(
            f"admission ({name}): {spread(samples)} (n={len(samples)}), CPU time p50 "
            f"{p50(cpu) * ms:.1f} ms; admits {admitted}, explains {waiting}"
        )
    if scheduler is not None:
        shot = scheduler["burst"]
        print(
            f"jupyter-scheduler: {shot.count} creations in {shot.seconds:.2f} s = "
            f"{shot.rate:.1f}/s; one at a time: POST {spread(scheduler['post'])}, "
            f"submit→IN_PROGRESS {spread(scheduler['running'])} "
            f"(n={len(scheduler['running'])}); {scheduler['failed']} failed"
        )
    else:
        print(f"jupyter-scheduler anchor skipped: {skipped}")
    if "profile" in throughput:
        print(throughput["profile"])
    print()

    rows = [
        Row("1. submissions/s (REST)", jobs.rate, "/s", "≥ 500", jobs.rate >= 500,
            "POST /api/contents", contents.rate),
        Row("1. submissions/s (REST)", jobs.rate, "/s", "≥ 500", jobs.rate >= 500,
            "GET /api/status", status.rate),
    ]  # fmt: skip
    running = p50(latency["running"]) * ms
    rows.append(Row("2. submit→running p50", running, "ms", "< 300", running < 300,
                    "POST /api/contents p50", p50(latency["contents"]) * ms))  # fmt: skip
    if scheduler is not None:
        rows.append(Row("1. submissions/s (REST)", jobs.rate, "/s", "≥ 500", jobs.rate >= 500,
                        "jupyter-scheduler", scheduler["burst"].rate))  # fmt: skip
        rows.append(Row("2. submit→running p50", running, "ms", "< 300", running < 300,
                        "jupyter-scheduler", p50(scheduler["running"]) * ms))  # fmt: skip
    listed = p50(listing["list"]) * ms
    rows.append(Row(f"3. GET jobs?limit=100 p50 @{args.stored:,}", listed, "ms", "< 100",
                    listed < 100, "GET /api/status p50", p50(listing["status"]) * ms))  # fmt: skip
    sort = p50(admission["sort"]) * ms
    for name in ("no quotas", "quotas + preemption"):
        for clock, samples in (("wall", admission[name][0]), ("CPU", admission[name][1])):
            value = p50(samples) * ms
            label = f"4. plan() {clock} p50 @{args.pending:,}, {name}"
            rows.append(Row(label, value, "ms", "< 50", value < 50,
                            "sort of the queue alone", sort))  # fmt: skip
    print_table(rows)
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
