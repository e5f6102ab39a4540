"""The Jupyter server's link to its local agent: found or started on demand, given this
server's settings once, and backed off from when it fails to start.

The jobs handlers relay through it and kernels ask it for leases (``kernels/lease.py``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

from ...errors import MLInfraError
from ...identity import Identity
from .accounts import AGENT, RankAccounts
from .agent_client import STATUS, AgentClient, AgentUnavailable, ensure_agent

if TYPE_CHECKING:
    from ...models import agent
    from ...models import catalog as wire
    from ...settings import Settings

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

    def __init__(self, settings: Settings, log: logging.Logger) -> None:
        self.settings = settings
        self.log = log
        token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
        self.client = AgentClient(settings.agent_socket, settings.agent_url, token)
        self._configured_pid: int | None = None
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
        """One per event loop: kernel provisioners may call from jupyter_client's threads,
        and an asyncio lock waits on one loop only (agents are started under a file lock)."""
        self._failures = 0
        self._failed: tuple[float, str] | None = None
        """(monotonic time of the next start, why the last one failed) while backing off."""
        self.on_ready: Callable[[], None] = lambda: None
        """Called once an agent answers, found or started (the live feed connects then)."""

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
            self.on_ready()
            return
        lock = self._locks.setdefault(asyncio.get_running_loop(), asyncio.Lock())
        async with lock:
            status = await self._started_agent()
            if status["pid"] != self._configured_pid:
                body = json.dumps(self.settings.to_document()).encode()
                response = await self.client.fetch("PUT", POLICY, identity=None, body=body)
                if response.code != 200:
                    raise AgentUnavailable(
                        f"the local agent refused this server's settings: {response.body!r}"
                    )
                self._configured_pid = status["pid"]
                self.on_ready()

    async def isolation(self, identity: Identity) -> wire.Isolation | None:
        """What ``identity``'s ranks run as (``whoami``): a shared agent says, for each caller;
        a per-user agent runs them as this server's settings say, running or not."""
        if self.client.shared:
            return await self.client.isolation(identity)
        accounts = RankAccounts(
            self.settings.run_ranks_as or AGENT, dict(self.settings.owner_accounts)
        )
        return accounts.isolation(identity.user)

    async def _started_agent(self) -> agent.AgentStatus:
        """The agent's status, starting it unless a start failed within the backoff."""
        if self._failed is not None:
            retry_at, why = self._failed
            wait = retry_at - time.monotonic()
            if wait > 0:
                raise AgentUnavailable(f"{why} (not started again for {math.ceil(wait)} s)")
        try:
            status: agent.AgentStatus = await asyncio.get_running_loop().run_in_executor(
                None,
                ensure_agent,
                self.settings.agent_socket,
                self.settings.data_dir,
                self.settings.agent_idle_timeout,
            )
        except AgentUnavailable as error:
            first, most = BACKOFF_SECONDS
            delay = min(most, first * 2**self._failures)
            self._failures += 1
            self._failed = (time.monotonic() + delay, error.message)
            self.log.warning(
                "jupyter_mlinfra: %s; the next start is tried in %.0f s", error.message, delay
            )
            raise
        self._failures, self._failed = 0, None
        return status

    def forget(self) -> None:
        """The agent went away: find or start one again on the next request."""
        self._configured_pid = None
