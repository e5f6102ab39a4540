"""The local agent's HTTP face: the jobs API, per user on a Unix socket, or shared by a hub.

Routes mirror the Jupyter server's ``/mlinfra/api/v1/jobs...`` so the server can forward
requests unchanged (and the CLI can talk to the agent directly when no server runs). Who the
caller is depends on how the agent runs (``callers.py``): per user, the owner's server states
it in the ``X-MLInfra-Identity`` header on a socket only the owner can open; as a JupyterHub
service (``serve_hub``), every caller proves it with a hub token and the header is ignored.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from tornado import httpserver, iostream, netutil, web

from ...capacity import Allocation
from ...errors import NotAllowed, NotAuthenticated, NotFound, shown
from ...identity import Identity
from ...jobs.policy import Policy
from ...jobs.serving import Call, JobsRequest
from ...jobs.serving import routes as job_routes
from ...jobs.spec import JobState, RequestLimits
from ...json_errors import JSONErrors
from ...models import agent as wire
from ...models.live import AgentChange
from ...version import __version__
from .accounts import RankAccounts
from .agent import Agent
from .callers import Callers, HeaderCallers, HubCallers
from .changes import Follower
from .leases import KERNEL_ID
from .local_jobs import LocalJobs, queued_by_owner

log = logging.getLogger("jupyter_mlinfra.agent")

CONTROL = "/mlinfra/agent/v1"


class AgentHandler(JSONErrors):
    internal_error = "internal error in the local agent; see its log"
    caller: Identity | None = None

    @property
    def agent(self) -> Agent:
        agent: Agent = self.settings["agent"]
        return agent

    @property
    def callers(self) -> Callers:
        callers: Callers = self.settings["callers"]
        return callers

    async def prepare(self) -> None:
        self.agent.last_activity = time.monotonic()
        self.caller = await self.callers.identify(self)

    @property
    def identity(self) -> Identity:
        if self.caller is None:
            raise NotAuthenticated("missing caller identity", None)
        return self.caller

    def max_request_bytes(self) -> int:
        return self.agent.policy.limits.max_request_bytes

    def reply(self, body: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))


class JobsHandler(AgentHandler, JobsRequest):
    """The jobs routes, answered as the Jupyter server answers them (``jobs/serving.py``)."""

    async def serve(self, call: Call, **path: str) -> None:
        await call(self, LocalJobs(self.agent), self.identity, path)


class StatusHandler(AgentHandler):
    def get(self) -> None:
        active = self.agent.store.active()
        status: wire.AgentStatus = {
            "version": __version__,
            "pid": os.getpid(),
            "queued": sum(j.state == JobState.QUEUED for j in active),
            "running": sum(j.state.holds_resources for j in active),
        }
        self.reply(status)


class ChangesHandler(AgentHandler):
    """The caller's changes, pushed as they happen, one JSON document a line, for as long as
    it stays connected (``changes.py``). Following is not activity: an agent whose only
    callers follow it still exits once idle, saying ``bye``."""

    follower: Follower | None = None

    async def get(self) -> None:
        self.follower = self.agent.changes.follow(self.identity)
        self.set_header("Content-Type", "application/x-ndjson")
        message: AgentChange | None = {"type": "hello", "pid": os.getpid()}
        try:
            while message is not None:
                self.write(json.dumps(message) + "\n")
                await self.flush()
                message = await self.follower.next()
        except iostream.StreamClosedError:
            return
        finally:
            self.agent.changes.leave(self.follower)
        self.finish()

    def on_connection_close(self) -> None:
        if self.follower is not None:
            self.follower.end()


class IsolationHandler(AgentHandler):
    """What the caller's ranks run as here, and whether other users' jobs can reach theirs
    (``whoami``'s ``isolation``)."""

    def get(self) -> None:
        self.reply(self.agent.accounts.isolation(self.identity.user))


class PolicyHandler(AgentHandler):
    """The owner's server sends its settings; the socket's permissions admit only the owner.
    A shared agent takes its settings from its own config: no user's server may change them."""

    def put(self) -> None:
        if self.callers.shared:
            raise NotAllowed(
                "this agent is shared through JupyterHub and takes its settings from its own "
                "configuration",
                None,
            )
        document = self.json_body()
        self.agent.set_policy(Policy.from_document(document))
        self.agent.store.put_setting("policy", document)
        self.reply({"ok": True})

    def max_request_bytes(self) -> int:
        """The default, whatever the settings say: settings that lower the limit below their
        own size must still reach the agent."""
        return RequestLimits().max_request_bytes


class AllocationsHandler(AgentHandler):
    def get(self) -> None:
        allocations = self.agent.allocations()
        queued = queued_by_owner(self.agent)
        if self.callers.shared and not self.identity.admin:
            allocations, queued = _only_own_names(self.identity.user, allocations, queued)
        answer: wire.Allocations = {
            "allocations": [a.to_json() for a in allocations],
            "queued_by_owner": queued,
        }
        self.reply(answer)


def _only_own_names(
    user: str, allocations: list[Allocation], queued: dict[str, int]
) -> tuple[list[Allocation], dict[str, int]]:
    """What others hold still counts against capacity, but which jobs and kernels they are,
    and whose, is not for other users of a shared agent to know."""
    shown = [
        a if a.owner == user else replace(a, holder=f"{a.holder.split(':')[0]}:{n}", owner="")
        for n, a in enumerate(allocations)
    ]
    return shown, {user: queued[user]} if user in queued else {}


class LeasesHandler(AgentHandler):
    """Kernels ask here for their flavor's devices before they start (``leases.py``)."""

    def get(self) -> None:
        leases = self.agent.leases.visible(self.identity)
        listing: wire.LeaseList = {"leases": [lease.to_json() for lease in leases]}
        self.reply(listing)

    def post(self) -> None:
        lease, created = self.agent.leases.request(self.identity, self.json_body())
        self.reply(lease.to_json(), 201 if created else 200)


class LeaseHandler(AgentHandler):
    def get(self, kernel_id: str) -> None:
        self.reply(self.agent.leases.mine(self.identity, kernel_id).to_json())

    def put(self, kernel_id: str) -> None:
        self.reply(self.agent.leases.bind(self.identity, kernel_id, self.json_body()).to_json())

    def delete(self, kernel_id: str) -> None:
        self.agent.leases.release(self.identity, kernel_id)
        released: wire.Released = {"released": True}
        self.reply(released)


class UnknownPathHandler(AgentHandler):
    """Any path no route matches: a JSON 404, as the CLI and the server expect of the agent."""

    def unknown(self) -> None:
        raise NotFound(f"no such path: {shown(self.request.path, 100)}", None)

    get = post = put = patch = delete = unknown


def make_app(agent: Agent, callers: Callers, prefix: str = "") -> web.Application:
    """The agent's routes, under ``prefix`` (a hub service's ``/services/<name>``, so that it
    answers the same paths directly and through the hub's proxy)."""
    routes: list[tuple[str, type[AgentHandler]]] = [
        *job_routes(JobsHandler),
        (rf"{CONTROL}/status", StatusHandler),
        (rf"{CONTROL}/policy", PolicyHandler),
        (rf"{CONTROL}/isolation", IsolationHandler),
        (rf"{CONTROL}/changes", ChangesHandler),
        (rf"{CONTROL}/allocations", AllocationsHandler),
        (rf"{CONTROL}/leases", LeasesHandler),
        (rf"{CONTROL}/leases/{KERNEL_ID}", LeaseHandler),
    ]
    base = prefix.rstrip("/")
    return web.Application(
        [(base + path, handler) for path, handler in routes],
        default_handler_class=UnknownPathHandler,
        agent=agent,
        callers=callers,
    )


async def serve(
    socket_path: Path,
    data_dir: Path,
    idle_timeout: float,
    policy: Policy,
    accounts: RankAccounts | None = None,
) -> int:
    """Run a per-user agent on ``socket_path`` until it is idle or signalled; 0, or 3 when
    another agent owns data_dir."""

    def listen(agent: Agent) -> httpserver.HTTPServer:
        socket_path.parent.mkdir(parents=True, exist_ok=True)
        sock = netutil.bind_unix_socket(str(socket_path), mode=0o600)
        server = httpserver.HTTPServer(make_app(agent, HeaderCallers()))
        server.add_socket(sock)
        return server

    def stopped() -> None:
        if socket_path.exists():
            socket_path.unlink()

    where = str(socket_path)
    return await _run(data_dir, idle_timeout, policy, listen, where, stopped, accounts=accounts)


async def serve_hub(
    host: str,
    port: int,
    prefix: str,
    data_dir: Path,
    policy: Policy,
    accounts: RankAccounts | None = None,
) -> int:
    """Run the agent shared by a JupyterHub's users (a hub service) on ``host:port`` until
    signalled. Its settings are its own config's: stored ones from a per-user past are not
    reused, and it never exits for idleness (the hub would not restart it)."""

    def listen(agent: Agent) -> httpserver.HTTPServer:
        server = httpserver.HTTPServer(
            make_app(agent, HubCallers(lambda: agent.policy), prefix), xheaders=True
        )
        server.listen(port, address=host)
        return server

    where = f"http://{host}:{port}{prefix}"
    return await _run(
        data_dir, 0, policy, listen, where, lambda: None, keep_stored=False, accounts=accounts
    )


def _run_exclusively(lock_path: Path) -> Any:
    """Hold an exclusive lock for this process's lifetime: one agent per data dir."""
    handle = lock_path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def _install_signal_handlers(loop: asyncio.AbstractEventLoop, done: asyncio.Event) -> None:
    """SIGTERM and SIGINT end the agent as an idle exit does, so it closes its store cleanly."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, done.set)


async def _run(
    data_dir: Path,
    idle_timeout: float,
    policy: Policy,
    listen: Callable[[Agent], httpserver.HTTPServer],
    where: str,
    stopped: Callable[[], None],
    *,
    keep_stored: bool = True,
    accounts: RankAccounts | None = None,
) -> int:
    data_dir.mkdir(parents=True, exist_ok=True)
    lock = _run_exclusively(data_dir / "agent.lock")
    if lock is None:
        log.error("another agent is running for %s", data_dir)
        return 3
    agent = Agent(data_dir, policy, idle_timeout=idle_timeout, accounts=accounts)
    stored = agent.store.get_setting("policy") if keep_stored else None
    if stored:
        agent.set_policy(Policy.from_document(stored))
    server = listen(agent)
    _install_signal_handlers(asyncio.get_running_loop(), agent.done)
    await agent.start()
    log.info("local agent %s serving on %s (data in %s)", os.getpid(), where, data_dir)
    try:
        await agent.done.wait()
    finally:
        await agent.changes.close(agent.exit_reason)
        server.stop()
        stopped()
        await agent.close()
        lock.close()
    return 0
