"""The local agent's HTTP face: the jobs API on a Unix socket only its owner can open.

Routes mirror the Jupyter server's ``/mlinfra/api/v1/jobs...`` so the server can forward
requests unchanged (and the CLI can talk to the agent directly when no server runs). The
caller's identity arrives in the ``X-MLInfra-Identity`` header, set by the authenticated
server; the socket's 0600 permissions make the owner the only one who can set it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from tornado import httpserver, netutil, web

from ... import __version__
from ...client import IDENTITY_HEADER
from ...errors import InvalidInput
from ...identity import Identity
from ...jobs.policy import Policy
from ...jobs.serving import answer
from ...jobs.spec import JobState
from ...json_errors import JSONErrors
from .agent import Agent, install_signal_handlers, run_exclusively
from .leases import KERNEL_ID
from .local_jobs import LocalJobs

log = logging.getLogger("jupyter_mlinfra.agent")

API = "/mlinfra/api/v1"
CONTROL = "/mlinfra/agent/v1"


class AgentHandler(JSONErrors):
    internal_error = "internal error in the local agent; see its log"

    @property
    def agent(self) -> Agent:
        agent: Agent = self.settings["agent"]
        return agent

    def prepare(self) -> None:
        self.agent.last_activity = time.monotonic()

    @property
    def identity(self) -> Identity:
        raw = self.request.headers.get(IDENTITY_HEADER, "")
        try:
            data = json.loads(raw)
            return Identity(
                user=str(data["user"]),
                groups=frozenset(str(g) for g in data.get("groups", [])),
                admin=bool(data.get("admin", False)),
            )
        except (ValueError, KeyError, TypeError):
            raise web.HTTPError(401, "missing or malformed caller identity") from None

    def body(self) -> Any:
        try:
            return json.loads(self.request.body or b"{}")
        except ValueError as error:
            raise InvalidInput(f"the request body is not JSON: {error}", None) from None

    def reply(self, body: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))


class JobsAPIHandler(AgentHandler):
    """The jobs routes, answered as the Jupyter server answers them (``jobs/serving.py``)."""

    async def answer(self, job_id: str = "") -> None:
        await answer(self, LocalJobs(self.agent), self.identity, job_id)


class JobsHandler(JobsAPIHandler):
    async def get(self) -> None:
        await self.answer()

    async def post(self) -> None:
        await self.answer()


class JobHandler(JobsAPIHandler):
    async def get(self, job_id: str) -> None:
        await self.answer(job_id)

    async def delete(self, job_id: str) -> None:
        await self.answer(job_id)


class RetryHandler(JobsAPIHandler):
    async def post(self, job_id: str) -> None:
        await self.answer(job_id)


class JobReadHandler(JobsAPIHandler):
    """Logs, events and results of one job."""

    async def get(self, job_id: str) -> None:
        await self.answer(job_id)


class QueueHandler(JobsAPIHandler):
    async def get(self) -> None:
        await self.answer()


class StatusHandler(AgentHandler):
    def get(self) -> None:
        active = self.agent.store.active()
        self.reply(
            {
                "version": __version__,
                "pid": os.getpid(),
                "queued": sum(j.state == JobState.QUEUED for j in active),
                "running": sum(j.state.holds_resources for j in active),
            }
        )


class PolicyHandler(AgentHandler):
    """The owner's server sends its settings; the socket's permissions admit only the owner."""

    def put(self) -> None:
        self.agent.set_policy(Policy.from_document(self.body()))
        self.agent.store.put_setting("policy", self.body())
        self.reply({"ok": True})


class AllocationsHandler(AgentHandler):
    def get(self) -> None:
        self.reply(
            {
                "allocations": [a.to_json() for a in self.agent.allocations()],
                "queued_by_owner": _queued_by_owner(self.agent),
            }
        )


class LeasesHandler(AgentHandler):
    """Kernels ask here for their flavor's devices before they start (``leases.py``)."""

    def get(self) -> None:
        leases = self.agent.leases.visible(self.identity)
        self.reply({"leases": [lease.to_json() for lease in leases]})

    def post(self) -> None:
        lease, created = self.agent.leases.request(self.identity, self.body())
        self.reply(lease.to_json(), 201 if created else 200)


class LeaseHandler(AgentHandler):
    def get(self, kernel_id: str) -> None:
        self.reply(self.agent.leases.mine(self.identity, kernel_id).to_json())

    def put(self, kernel_id: str) -> None:
        self.reply(self.agent.leases.bind(self.identity, kernel_id, self.body()).to_json())

    def delete(self, kernel_id: str) -> None:
        self.agent.leases.release(self.identity, kernel_id)
        self.reply({"released": True})


def _queued_by_owner(agent: Agent) -> dict[str, int]:
    counts: dict[str, int] = {}
    for job in agent.store.active():
        if job.state == JobState.QUEUED:
            counts[job.owner] = counts.get(job.owner, 0) + 1
    return counts


ID = r"(?P<job_id>[0-9a-f]{12})"


def make_app(agent: Agent) -> web.Application:
    return web.Application(
        [
            (rf"{API}/jobs", JobsHandler),
            (rf"{API}/jobs/{ID}", JobHandler),
            (rf"{API}/jobs/{ID}/retry", RetryHandler),
            (rf"{API}/jobs/{ID}/logs", JobReadHandler),
            (rf"{API}/jobs/{ID}/events", JobReadHandler),
            (rf"{API}/jobs/{ID}/result", JobReadHandler),
            (rf"{API}/queue", QueueHandler),
            (rf"{CONTROL}/status", StatusHandler),
            (rf"{CONTROL}/policy", PolicyHandler),
            (rf"{CONTROL}/allocations", AllocationsHandler),
            (rf"{CONTROL}/leases", LeasesHandler),
            (rf"{CONTROL}/leases/{KERNEL_ID}", LeaseHandler),
        ],
        agent=agent,
    )


async def serve(socket_path: Path, data_dir: Path, idle_timeout: float, policy: Policy) -> int:
    """Run the agent until it is idle or signalled; 0, or 3 when another agent owns data_dir."""
    data_dir.mkdir(parents=True, exist_ok=True)
    lock = run_exclusively(data_dir / "agent.lock")
    if lock is None:
        log.error("another agent is running for %s", data_dir)
        return 3
    stored = None
    agent = Agent(data_dir, policy, idle_timeout=idle_timeout)
    stored = agent.store.get_setting("policy")
    if stored:
        agent.set_policy(Policy.from_document(stored))
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    sock = netutil.bind_unix_socket(str(socket_path), mode=0o600)
    server = httpserver.HTTPServer(make_app(agent))
    server.add_socket(sock)
    install_signal_handlers(asyncio.get_running_loop(), agent.done)
    await agent.start()
    log.info("local agent %s serving on %s (data in %s)", os.getpid(), socket_path, data_dir)
    try:
        await agent.done.wait()
    finally:
        server.stop()
        if socket_path.exists():
            socket_path.unlink()
        await agent.close()
        lock.close()
    return 0
