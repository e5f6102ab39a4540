"""REST handlers for jobs on the Jupyter server: authenticate, authorize, then forward.

The local agent owns jobs; these handlers add what only the server knows (who is calling),
forward method, path, query and body unchanged over the agent's socket, and relay the answer,
streaming followed logs as they come. The agent is started on first use.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
import weakref
from typing import Any

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..backends.local.accounts import AGENT, RankAccounts
from ..backends.local.agent_client import STATUS, AgentClient, AgentUnavailable, ensure_agent
from ..errors import MLInfraError
from ..handlers import API, MLInfraHandler
from ..identity import Identity
from ..json_body import check_size
from .policy import settings_document
from .serving import Call, JobsAPI, JobsRequest, routes

POLICY = "/mlinfra/agent/v1/policy"


class AgentNoAnswer(MLInfraError):
    status = 504


BACKOFF_SECONDS = (5.0, 300.0)
"""How long after an agent failed to start the next start is tried: the first wait, doubled
after each failure in a row up to the second."""


class AgentLink:
    """The server's connection to its local agent, (re)started and configured on demand.

    An agent that fails to start (a damaged store, say) is not started again on every request:
    until the backoff ends, requests get the same one-line reason at once (HTTP 503)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
        self.client = AgentClient(app.agent_socket, app.agent_url, token)
        self._configured_pid: int | None = None
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
        """One per event loop: kernel provisioners may call from jupyter_client's threads,
        and an asyncio lock waits on one loop only (agents are started under a file lock)."""
        self._failures = 0
        self._failed: tuple[float, str] | None = None
        """(monotonic time of the next start, why the last one failed) while backing off."""

    @property
    def ready(self) -> bool:
        """An agent was found (or started) and has this server's settings."""
        return self._configured_pid is not None

    async def ensure(self) -> None:
        """Start the agent if none answers, and give it this server's settings once. A shared
        agent (``agent_url``) is the hub's to run and configure: only check that it answers."""
        if self.client.shared:
            response = await self.client.fetch("GET", STATUS, timeout=10)
            if response.code != 200:
                raise AgentUnavailable(
                    f"the shared agent at {self.client.where} answered HTTP {response.code}: "
                    f"{response.body.decode(errors='replace')[:200] if response.body else ''}"
                )
            self._configured_pid = json.loads(response.body)["pid"]
            return
        lock = self._locks.setdefault(asyncio.get_running_loop(), asyncio.Lock())
        async with lock:
            status = await self._started_agent()
            if status["pid"] != self._configured_pid:
                body = json.dumps(settings_document(self.app)).encode()
                response = await self.client.fetch("PUT", POLICY, identity=None, body=body)
                if response.code != 200:
                    raise AgentUnavailable(
                        f"the local agent refused this server's settings: {response.body!r}"
                    )
                self._configured_pid = status["pid"]

    async def isolation(self, identity: Identity) -> dict[str, Any] | None:
        """What ``identity``'s ranks run as (``whoami``): a shared agent says, for each caller;
        a per-user agent runs them as this server's settings say, running or not."""
        if self.client.shared:
            return await self.client.isolation(identity)
        accounts = RankAccounts(self.app.run_ranks_as or AGENT, dict(self.app.owner_accounts))
        return accounts.isolation(identity.user)

    async def _started_agent(self) -> dict[str, Any]:
        """The agent's status, starting it unless a start failed within the backoff."""
        if self._failed is not None:
            retry_at, why = self._failed
            wait = retry_at - time.monotonic()
            if wait > 0:
                raise AgentUnavailable(f"{why} (not started again for {math.ceil(wait)} s)")
        try:
            status: dict[str, Any] = await asyncio.get_running_loop().run_in_executor(
                None,
                ensure_agent,
                self.app.agent_socket,
                self.app.data_dir,
                self.app.agent_idle_timeout,
            )
        except AgentUnavailable as error:
            first, most = BACKOFF_SECONDS
            delay = min(most, first * 2**self._failures)
            self._failures += 1
            self._failed = (time.monotonic() + delay, error.message)
            self.app.log.warning(
                "jupyter_mlinfra: %s; the next start is tried in %.0f s", error.message, delay
            )
            raise
        self._failures, self._failed = 0, None
        return status

    def forget(self) -> None:
        """The agent went away: find or start one again on the next request."""
        self._configured_pid = None


class JobProxyHandler(MLInfraHandler, JobsRequest):
    """The jobs routes on the Jupyter server (``serving.routes``)."""

    @property
    def link(self) -> AgentLink:
        link: AgentLink = self.settings["mlinfra.agent"]
        return link

    def agent_path(self) -> str:
        """The request path from ``/mlinfra/api/v1`` on (the agent's routes), plus its query."""
        path = self.request.path[self.request.path.index(API) :]
        return f"{path}?{self.request.query}" if self.request.query else path

    async def serve(self, call: Call, **path: str) -> None:
        """Relay the request; (re)start the agent first when none is known or it went away.
        When this server holds a jobs service itself (Kubernetes), it answers instead."""
        check_size(self.request.body or b"", self.max_request_bytes())  # before any agent starts
        jobs: JobsAPI | None = self.settings.get("mlinfra.jobs")
        if jobs is not None:
            await call(self, jobs, self.identity, path)
            return
        if not self.link.ready:
            await self.link.ensure()
        try:
            await self._relay()
        except AgentUnavailable:  # could not connect: the request never reached an agent
            self.link.forget()
            await self.link.ensure()
            await self._relay()

    async def _relay(self) -> None:
        method = self.request.method or "GET"
        body = self.request.body if method in ("POST", "PUT", "PATCH") else None
        streamed = False
        content_type = "application/json"

        def status_line(line: str) -> None:
            nonlocal content_type
            if line.startswith("HTTP/"):
                self.set_status(int(line.split()[1]))
            elif line.lower().startswith("content-type:"):
                content_type = line.split(":", 1)[1].strip()
                self.set_header("Content-Type", content_type)

        def relay(chunk: bytes) -> None:
            nonlocal streamed
            streamed = True
            self.write(chunk)
            self.flush()

        is_logs = self.request.path.endswith("/logs")
        response = await self.link.client.fetch(
            method,
            self.agent_path(),
            identity=self.identity,
            body=body,
            header_callback=status_line if is_logs else None,
            streaming_callback=relay if is_logs else None,
            timeout=24 * 3600 if is_logs else 60,
        )
        if response.code == 599:  # sent, maybe acted on: never retried, so never doubled
            raise AgentNoAnswer(f"the local agent did not answer: {response.error}")
        if not streamed:
            self.set_status(response.code)
            content_type = response.headers.get("Content-Type", content_type)
            if response.body:
                self.write(response.body)
        self.finish(set_content_type=content_type)  # APIHandler.finish would say JSON


job_handlers = list(
    routes(JobProxyHandler, decorate=lambda method: web.authenticated(authorized(method)))
)
