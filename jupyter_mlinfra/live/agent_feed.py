"""The server's one subscription to its local agent's changes, told to its tabs.

It follows the agent's ``GET /mlinfra/agent/v1/changes`` (``backends/local/changes.py``) as
the server's owner: a per-user agent trusts its socket's owner, a shared agent identifies the
owner by the hub token and sends only what they may see, as its REST API does. It never starts
an agent (a request does, and then wakes it); while none answers it tries again, each try a
connection that fails at once, at most every ``RETRY_SECONDS[1]``.

An agent that exits because it is idle says so: nothing can change until one starts again,
so the tabs stay live. A stream that ends otherwise (the agent crashed or was stopped) turns
the tabs to their slow poll until the stream is back; then they read everything once again.

The stream is read with asyncio's own streams, as HTTP/1.0 (the body is the rest of the
connection, one JSON document a line): a stream that lasts for days is not a request for an
HTTP client with timeouts and body limits, and stopping it is closing a socket.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from typing import Any
from urllib.parse import urlsplit

from ..backends.local.agent_client import AgentClient
from ..identity import Identity
from .feed import Feed
from .tabs import Tabs
from .usage import CachedUsage

CHANGES = "/mlinfra/agent/v1/changes"
RETRY_SECONDS = (0.1, 5.0)
"""The first wait before connecting again, doubled after each failure up to the second."""
LINE_LIMIT = 64 * 1024 * 1024
"""The longest line read: one job, with the traceback its message may hold."""

log = logging.getLogger("jupyter_mlinfra")

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class AgentFeed(Feed):
    def __init__(
        self, client: AgentClient, identity: Identity, tabs: Tabs, usage: CachedUsage
    ) -> None:
        self.client = client
        """Says where the agent is and how to prove who calls; its HTTP client is unused."""
        self.identity = identity
        self.tabs = tabs
        self.usage = usage
        """Told of every change, and whether changes are followed."""
        self.connected = False
        self._wake = asyncio.Event()
        self._refused = ""

    async def stop(self) -> None:
        await super().stop()
        self.client.close()

    def wake(self) -> None:
        """An agent was just started or found: connect now rather than at the next try."""
        self._wake.set()

    async def _run(self) -> None:
        first, most = RETRY_SECONDS
        delay = first
        while True:
            self._wake.clear()
            bye = await self._follow()
            self.usage.follow(False)
            if self.connected:
                self.connected = False
                delay = first
                if bye != "idle":
                    self.tabs.set_live(False)
            waiter = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({waiter}, timeout=delay)
            finally:
                waiter.cancel()
            delay = min(most, delay * 2)

    async def _open(self) -> tuple[Streams, str, str]:
        """A connection to the agent, the path to ask and the Host to name."""
        if not self.client.shared:
            streams = await asyncio.open_unix_connection(self.client.socket_path, limit=LINE_LIMIT)
            return streams, CHANGES, "mlinfra-agent"
        url = urlsplit(self.client.base)
        secure = url.scheme == "https"
        port = url.port or (443 if secure else 80)
        streams = await asyncio.open_connection(
            url.hostname,
            port,
            ssl=ssl.create_default_context() if secure else None,
            limit=LINE_LIMIT,
        )
        return streams, url.path.rstrip("/") + CHANGES, url.netloc

    async def _follow(self) -> str:
        """Follow one stream until it ends; the agent's parting reason, or ""."""
        try:
            (reader, writer), path, host = await self._open()
        except OSError:  # nothing listens: no agent runs
            return ""
        try:
            headers = {"Host": host, **self.client.credentials(self.identity)}
            head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
            writer.write(f"GET {path} HTTP/1.0\r\n{head}\r\n".encode())
            await writer.drain()
            status_line = await reader.readline()
            while (await reader.readline()).strip():
                pass  # the headers say nothing the status does not
            status = int(status_line.split()[1]) if status_line.startswith(b"HTTP/") else 0
            if status != 200:
                self._refusal(status, await reader.read(1000))
                return ""
            bye = ""
            while line := await reader.readline():
                bye = self._receive(json.loads(line)) or bye
            return bye
        except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return ""  # the connection broke, or the agent sent what it should not
        finally:
            writer.close()

    def _receive(self, message: dict[str, Any]) -> str:
        kind = message.get("type")
        self.usage.changed()
        if kind == "job":
            self.tabs.job(message["job"])
        elif kind == "capacity":
            self.tabs.capacity()
        elif kind == "hello":
            self.connected = True
            self.usage.follow(True)
            self._refused = ""
            self.tabs.set_live(True)
        elif kind == "bye":
            return str(message.get("reason", ""))
        return ""

    def _refusal(self, status: int, body: bytes) -> None:
        """An agent that answers but will not stream (an older one, a token it refuses):
        said in the log once, the tabs poll."""
        why = f"HTTP {status}: {body.decode(errors='replace')[:200]}"
        if why != self._refused:
            log.warning("jupyter_mlinfra: the local agent does not push changes (%s)", why)
            self._refused = why
        self.tabs.set_live(False)
