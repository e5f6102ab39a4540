"""Open sidebars on one server: pushed live updates against the 2 s poll they replaced.

    python benchmarks/ui_load.py [--tabs 200] [--idle 600] [--changes 100]

One real ``jupyter lab`` and a private local agent; between them a counting relay on the
agent's socket (every request the server sends the agent is counted). ``--tabs`` simulated
sidebars make the requests or hold the event stream a real tab makes:

- **live**: the tab's websocket (``mlinfra/api/v1/live``), one full read when it connects (as
  the model does: whoami, flavors, environments, jobs twice, kernels), then nothing but what is
  pushed; a pushed job that starts or stops holding resources reads flavors once, as the model;
- **poll**: what the sidebar did before: every 2 s after the last answer, flavors, jobs (the
  list and the timeline's), environments and kernels.

For each, in the same run, on the same server (polling first, before any stream is
opened): ``--idle`` seconds of nothing happening (server and agent CPU seconds per minute,
requests per second to the agent), then a burst of ``--changes`` job changes (submissions of
jobs that wait behind one that holds the machine): the delay from each change (the job's
``created`` time, stamped by the agent) to its arrival in each tab, p50 and p99, and the same
CPU and request figures over the burst. Prints the figures
and the poll / live ratios. Everything it starts it stops by pid.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import websocket_connect

from jupyter_mlinfra.backends.local.agent_client import ensure_agent, stop_agent
from tests.lab_server import LabServer, running_lab

API = "mlinfra/api/v1"
POLL_SECONDS = 2.0
HOLDING = {"admitted", "starting", "running"}
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of one process (not its children) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


class Relay:
    """A Unix socket in front of the agent's: passes bytes both ways and counts the requests
    (request lines) the server sends. Runs on a loop of its own, in a thread, so that it
    answers whatever the benchmark's loop is doing."""

    def __init__(self, listen: str, agent: str) -> None:
        self.listen, self.agent = listen, agent
        self.requests = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()

    async def _serve(self) -> None:
        self.server = await asyncio.start_unix_server(self._client, self.listen)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_unix_connection(self.agent)
        except OSError:
            writer.close()
            return

        async def pipe(
            source: asyncio.StreamReader, sink: asyncio.StreamWriter, count: bool
        ) -> None:
            with contextlib.suppress(OSError):
                while data := await source.read(65536):
                    if count:
                        self.requests += data.count(b" HTTP/1.")
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))


class TabError(Exception):
    """A tab's read failed; a real tab shows the error and tries again later."""


@dataclass
class Tabs:
    """What the simulated tabs did and saw."""

    server: LabServer
    http: AsyncHTTPClient
    requests: int = 0
    errors: int = 0
    """Requests answered with an error (an agent too busy to answer in time: 504)."""
    arrivals: dict[str, list[float]] = field(default_factory=dict)
    """Job id → when each tab first saw it."""
    seen: list[set[str]] = field(default_factory=list)

    async def get(self, path: str) -> Any:
        self.requests += 1
        response = await self.http.fetch(
            HTTPRequest(
                self.server.url(f"{API}/{path}"),
                headers=self.server.auth_header,
                request_timeout=120,
            ),
            raise_error=False,
        )
        if response.code != 200:
            self.errors += 1
            raise TabError(f"GET {path}: HTTP {response.code}")
        return json.loads(response.body)

    def saw(self, tab: int, job_id: str) -> None:
        if job_id not in self.seen[tab]:
            self.seen[tab].add(job_id)
            self.arrivals.setdefault(job_id, []).append(time.time())

    async def full_read(self, tab: int) -> None:
        user = await self.get("whoami")
        owner = user["user"] if user["admin"] else ""
        query = f"owner={owner}&" if owner else ""
        _, jobs, _, recent, _ = await asyncio.gather(
            self.get("flavors"),
            self.get(f"jobs?{query}limit=100"),
            self.get("environments"),
            self.get(f"jobs?{query}limit=200"),
            self.get("kernels"),
        )
        for job in jobs["jobs"] + recent["jobs"]:
            self.saw(tab, job["id"])


async def polling_tab(tabs: Tabs, tab: int, stop: asyncio.Event) -> None:
    await asyncio.sleep(random.uniform(0, POLL_SECONDS))  # tabs opened at different times
    while not stop.is_set():
        with contextlib.suppress(TabError):
            await tabs.full_read(tab)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), POLL_SECONDS)


async def live_tab(tabs: Tabs, tab: int, stop: asyncio.Event, ready: asyncio.Event) -> None:
    request = HTTPRequest(
        tabs.server.url(f"{API}/live").replace("http://", "ws://"),
        headers=tabs.server.auth_header,
    )
    ws = await websocket_connect(request)
    holding: dict[str, bool] = {}
    try:
        reading: asyncio.Future[None] | None = None
        while not stop.is_set():
            text = await ws.read_message()
            if text is None:
                raise RuntimeError("the server closed a tab's stream")
            message = json.loads(text)
            kind = message["type"]
            if kind in ("hello", "live") and message["live"]:
                while True:  # the model reads everything once (and again, until it can)
                    try:
                        await tabs.full_read(tab)
                        break
                    except TabError:
                        await asyncio.sleep(2)
                ready.set()
            elif kind == "job":
                job = message["job"]
                tabs.saw(tab, job["id"])
                held = job["state"] in HOLDING
                if holding.get(job["id"], False) != held and (reading is None or reading.done()):
                    reading = asyncio.ensure_future(quietly(tabs.get("flavors")))
                holding[job["id"]] = held
    finally:
        ws.close()


async def quietly(read: Awaitable[Any]) -> None:
    with contextlib.suppress(TabError):
        await read


@dataclass
class Phase:
    seconds: float
    server_cpu: float
    agent_cpu: float
    agent_requests: int
    tab_requests: int
    tab_errors: int

    def per_minute(self, value: float) -> float:
        return value * 60 / self.seconds


async def measured(
    lab_pid: int, agent_pid: int, relay: Relay, tabs: Tabs, work: Callable[[], Awaitable[None]]
) -> Phase:
    cpu = cpu_seconds(lab_pid), cpu_seconds(agent_pid)
    counts = relay.requests, tabs.requests, tabs.errors
    start = time.monotonic()
    await work()
    return Phase(
        time.monotonic() - start,
        cpu_seconds(lab_pid) - cpu[0],
        cpu_seconds(agent_pid) - cpu[1],
        relay.requests - counts[0],
        tabs.requests - counts[1],
        tabs.errors - counts[2],
    )


async def run_mode(
    mode: str, server: LabServer, agent_pid: int, relay: Relay, args: argparse.Namespace
) -> tuple[Phase, Phase, list[float]]:
    AsyncHTTPClient.configure(None, max_clients=args.tabs * 5)
    http = AsyncHTTPClient(force_instance=True)
    tabs = Tabs(server, http, seen=[set() for _ in range(args.tabs)])
    stop = asyncio.Event()
    if mode == "live":
        readies = [asyncio.Event() for _ in range(args.tabs)]
        tasks = [
            asyncio.ensure_future(live_tab(tabs, n, stop, readies[n])) for n in range(args.tabs)
        ]
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 600)
    else:
        tasks = [asyncio.ensure_future(polling_tab(tabs, n, stop)) for n in range(args.tabs)]
    await asyncio.sleep(POLL_SECONDS * 2)  # every tab open and settled

    idle = await measured(server.pid, agent_pid, relay, tabs, lambda: asyncio.sleep(args.idle))

    blocker = await post(server, http, {"code": "import time; time.sleep(3600)", "flavor": "all"})
    await until(lambda: job_state(server, http, blocker["id"]), "running")
    await asyncio.sleep(POLL_SECONDS * 2)  # its changes reached every tab
    created: dict[str, float] = {}

    async def burst() -> None:
        for _ in range(args.changes):
            job = await post(server, http, {"code": "pass", "flavor": "cpu"})
            created[job["id"]] = job["created"]
        deadline = time.monotonic() + 300
        while any(len(tabs.arrivals.get(i, [])) < args.tabs for i in created):
            assert time.monotonic() < deadline, "changes never reached every tab"
            await asyncio.sleep(0.05)

    burst_phase = await measured(server.pid, agent_pid, relay, tabs, burst)
    delays = [t - created[i] for i in created for t in tabs.arrivals[i]]

    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for job_id in [*reversed(created), blocker["id"]]:  # from the tail: nothing moves up
        await http.fetch(
            HTTPRequest(
                server.url(f"{API}/jobs/{job_id}"), method="DELETE", headers=server.auth_header
            ),
            raise_error=False,
        )
    http.close()
    return idle, burst_phase, delays


async def post(server: LabServer, http: AsyncHTTPClient, body: dict[str, Any]) -> Any:
    response = await http.fetch(
        HTTPRequest(
            server.url(f"{API}/jobs"),
            method="POST",
            body=json.dumps(body),
            headers={**server.auth_header, "Content-Type": "application/json"},
        )
    )
    return json.loads(response.body)


async def job_state(server: LabServer, http: AsyncHTTPClient, job_id: str) -> str:
    response = await http.fetch(
        HTTPRequest(server.url(f"{API}/jobs/{job_id}"), headers=server.auth_header)
    )
    return str(json.loads(response.body)["state"])


async def until(check: Callable[[], Awaitable[str]], wanted: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while await check() != wanted:
        assert time.monotonic() < deadline, f"never {wanted}"
        await asyncio.sleep(0.2)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(results: dict[str, tuple[Phase, Phase, list[float]]], args: argparse.Namespace) -> None:
    rows: list[tuple[str, dict[str, float]]] = []
    for label, pick in (
        ("idle: server CPU s/min", lambda i, b, d: i.per_minute(i.server_cpu)),
        ("idle: agent CPU s/min", lambda i, b, d: i.per_minute(i.agent_cpu)),
        ("idle: requests/s to the agent", lambda i, b, d: i.agent_requests / i.seconds),
        ("idle: requests/s from the tabs", lambda i, b, d: i.tab_requests / i.seconds),
        ("idle: failed tab requests", lambda i, b, d: float(i.tab_errors)),
        ("burst: seconds", lambda i, b, d: b.seconds),
        ("burst: server CPU s", lambda i, b, d: b.server_cpu),
        ("burst: agent CPU s", lambda i, b, d: b.agent_cpu),
        ("burst: requests to the agent", lambda i, b, d: float(b.agent_requests)),
        ("burst: failed tab requests", lambda i, b, d: float(b.tab_errors)),
        ("burst: change→tab p50 ms", lambda i, b, d: statistics.median(d) * 1e3),
        ("burst: change→tab p99 ms", lambda i, b, d: percentile(d, 0.99) * 1e3),
    ):
        rows.append((label, {mode: pick(*result) for mode, result in results.items()}))
    print(
        f"\n{args.tabs} tabs, {args.idle:g} s idle, a burst of {args.changes} job changes "
        f"({len(results['live'][2])} arrivals in each mode)"
    )
    print(f"{'':34} {'live':>10} {'poll':>10} {'poll / live':>12}")
    for label, values in rows:
        live, poll = values["live"], values["poll"]
        ratio = f"{poll / live:12.1f}" if live > 0 else f"{'∞' if poll > 0 else '-':>12}"
        print(f"{label:34} {live:10.3f} {poll:10.3f} {ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tabs", type=int, default=200, help="simulated open sidebars")
    parser.add_argument("--idle", type=float, default=600, help="seconds of nothing (quick: 30)")
    parser.add_argument("--changes", type=int, default=100, help="job changes in the burst")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mlb-", dir="/tmp") as tmp:
        root = Path(tmp)
        agent_socket, relay_socket = str(root / "agent.sock"), str(root / "relay.sock")
        data_dir = root / "data"
        cpus = len(os.sched_getaffinity(0))
        config = {
            "MLInfraApp": {
                "agent_socket": relay_socket,
                "data_dir": str(data_dir),
                "agent_idle_timeout": 0,
                "flavors": [
                    {"name": "cpu", "cpu": 1, "memory": "256Mi"},
                    {"name": "all", "cpu": cpus, "memory": "256Mi"},
                ],
                "environments": [{"name": "python", "framework": "generic"}],
            }
        }
        (root / "lab" / "config").mkdir(parents=True)
        (root / "lab" / "config" / "jupyter_server_config.json").write_text(json.dumps(config))
        agent = ensure_agent(agent_socket, str(data_dir), 0)
        relay = Relay(relay_socket, agent_socket)
        relay.start()
        try:
            with running_lab(root / "lab") as server:
                # polling first: before any tab's stream, the server follows no agent and reads
                # what jobs hold at every request, as it did before live updates
                results = {
                    mode: asyncio.run(run_mode(mode, server, agent["pid"], relay, args))
                    for mode in ("poll", "live")
                }
        finally:
            relay.stop()
            stop_agent(agent_socket)
    report(results, args)


if __name__ == "__main__":
    main()
