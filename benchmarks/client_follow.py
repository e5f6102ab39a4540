"""Python clients following waiting jobs (CLI ``--wait``, ``JobHandle.wait``, the widget):
pushed on the live websocket (``JobWatch``) against the 0.5 s poll of ``GET jobs/{id}`` it
replaced, in one run, on one server.

    python benchmarks/client_follow.py [--rounds 20] [--idle 30]

One real ``jupyter lab`` and a private local agent; ``--rounds`` + 1 jobs that each take the
whole machine (one runs, the others wait), each followed by a thread of this process with its
own client. Measured for each way of following: while nothing happens for ``--idle`` seconds,
the followers' requests per second and the server's CPU seconds per minute; then, ``--rounds``
times, the running job is cancelled and the next one starts: the delay from the cancel to its
follower seeing it leave the queue (p50, p95). Prints the figures and the poll / push ratios.
Everything it starts it stops by pid.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jupyter_mlinfra.backends.local.agent_client import ensure_agent, stop_agent
from jupyter_mlinfra.client import Connection, JobsClient
from jupyter_mlinfra.watch import JobWatch
from tests.lab_server import LabServer, running_lab

POLL_SECONDS = 0.5
"""The old follow's interval (``follow.py``, ``MLInfraMagics.wait_poll_seconds``)."""
HOLD = "import time\ntime.sleep(600)\n"
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


class CountingClient(JobsClient):
    """Counts the requests its follower makes."""

    counted = 0
    lock = threading.Lock()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        with CountingClient.lock:
            CountingClient.counted += 1
        return super().request(method, path, **kwargs)


class Follower(threading.Thread):
    """Follows one job until ``stop``; notes when it first saw the job leave the queue."""

    def __init__(self, server: LabServer, job_id: str, mode: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.client = CountingClient(Connection(server.base_url, server.token), timeout=120)
        self.job_id, self.mode, self.stop = job_id, mode, stop
        self.started_at: float | None = None

    def saw(self, job: Any) -> None:
        if self.started_at is None and job["state"] != "queued":
            self.started_at = time.time()

    def run(self) -> None:
        if self.mode == "poll":  # the loop follow.py had while a job waits
            while not self.stop.is_set():
                self.saw(self.client.job(self.job_id))
                self.stop.wait(POLL_SECONDS)
            return
        with JobWatch(self.client, self.job_id, poll_seconds=POLL_SECONDS) as watch:
            self.saw(watch.job)
            while not self.stop.is_set():
                watch.next(0.2)  # only to look at ``stop``: waiting asks the server nothing
                self.saw(watch.job)


def run_mode(mode: str, server: LabServer, rounds: int, idle: float) -> dict[str, float]:
    client = JobsClient(Connection(server.base_url, server.token), timeout=120)
    jobs = [
        client.submit({"code": HOLD, "name": f"{mode}-{i}", "flavor": "all"})
        for i in range(rounds + 1)
    ]
    while client.job(jobs[0]["id"])["state"] != "running":
        time.sleep(0.1)
    stop = threading.Event()
    followers = [Follower(server, job["id"], mode, stop) for job in jobs]
    for follower in followers:
        follower.start()
    time.sleep(2)  # every follower connected and read its job once
    before, cpu = CountingClient.counted, cpu_seconds(server.pid)
    time.sleep(idle)
    requests = (CountingClient.counted - before) / idle
    cpu_per_minute = (cpu_seconds(server.pid) - cpu) / idle * 60
    delays = []
    for i in range(rounds):
        cancelled = time.time()
        client.cancel(jobs[i]["id"])
        deadline = time.monotonic() + 60
        while followers[i + 1].started_at is None:
            assert time.monotonic() < deadline, f"job {i + 1} never left the queue"
            time.sleep(0.005)
        delays.append(followers[i + 1].started_at - cancelled)  # type: ignore[operator]
    stop.set()
    for follower in followers:
        follower.join()
    client.cancel(jobs[-1]["id"])
    delays.sort()
    return {
        "idle requests/s": requests,
        "idle server CPU s/min": cpu_per_minute,
        "start seen after (p50, s)": statistics.median(delays),
        "start seen after (p95, s)": delays[min(len(delays) - 1, int(len(delays) * 0.95))],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="job starts to time")
    parser.add_argument("--idle", type=float, default=30, help="seconds of nothing")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mlb-", dir="/tmp") as tmp:
        root = Path(tmp)
        agent_socket, data_dir = str(root / "agent.sock"), root / "data"
        cpus = len(os.sched_getaffinity(0))
        config = {
            "MLInfraApp": {
                "agent_socket": agent_socket,
                "data_dir": str(data_dir),
                "agent_idle_timeout": 0,
                "flavors": [{"name": "all", "cpu": cpus, "memory": "256Mi"}],
                "environments": [{"name": "python", "framework": "generic"}],
            }
        }
        (root / "lab" / "config").mkdir(parents=True)
        (root / "lab" / "config" / "jupyter_server_config.json").write_text(json.dumps(config))
        ensure_agent(agent_socket, str(data_dir), 0)
        try:
            with running_lab(root / "lab") as server:
                results = {
                    mode: run_mode(mode, server, args.rounds, args.idle)
                    for mode in ("poll", "push")
                }
        finally:
            stop_agent(agent_socket)
    print(f"{args.rounds + 1} followers, {args.idle:.0f} s idle, {args.rounds} starts")
    print(f"{'':28} {'push':>10} {'poll':>10} {'poll/push':>10}")
    for label in results["push"]:
        push, poll = results["push"][label], results["poll"][label]
        ratio = f"{poll / push:10.1f}" if push > 0 else f"{'∞' if poll > 0 else '-':>10}"
        print(f"{label:28} {push:10.3f} {poll:10.3f} {ratio}")


if __name__ == "__main__":
    main()
