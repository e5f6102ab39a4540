"""Jobs on this machine, as the server sees them: the local agent holds them, and the server
relays the jobs routes to it (``jobs/handlers.py``)."""

from __future__ import annotations

import os
from pathlib import Path

from ...errors import MLInfraError
from ...live.agent_feed import AgentFeed
from ...live.feed import Feed
from ...live.tabs import Tabs
from ..base import JobsBackend
from .agent_client import AgentClient


class AgentJobs(JobsBackend):
    async def announce(self) -> None:
        """Give an agent that already runs (jobs outlive servers) this server's settings now;
        none is started before a request needs one."""
        settings = self.settings
        if not (settings.agent_url or Path(settings.agent_socket).exists()):
            return
        try:
            await self.agent.ensure()
        except MLInfraError as error:
            self.log.warning("jupyter_mlinfra: local agent: %s", error.message)

    def feed(self, tabs: Tabs) -> Feed:
        """The agent's change stream, followed with the owner's identity; it (re)connects
        whenever an agent answers."""
        token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
        client = AgentClient(self.settings.agent_socket, self.settings.agent_url, token)
        feed = AgentFeed(client, self.identities.owner(), tabs, self.usage_cache)
        self.agent.on_ready = feed.wake
        return feed
