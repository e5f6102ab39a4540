"""Reach a kernel pod from a server outside the cluster: port-forward through the API server.

For each of the pod's ports, a listener on 127.0.0.1; every connection to it becomes one
``pods/portforward`` websocket (``v4.channel.k8s.io``: channel 0 carries the data, 1 the
errors, each first sends the port number as two little-endian bytes). ZeroMQ reconnects a
dropped TCP connection by itself, and each reconnection opens a new websocket, so a forward
survives an API server restart or a network blip without any state of its own.

The websockets go through the cluster's port-forward client (``port_forward_api``), whose
connection pool is apart from the one of API calls and watches: a kernel holds up to six
websockets as long as it is open, and a dozen kernels would otherwise take every connection
that watches and requests wait for.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Iterable
from typing import Any

import aiohttp
from kubernetes_asyncio import client

log = logging.getLogger("jupyter_mlinfra.kubernetes")

PROTOCOL = "v4.channel.k8s.io"
DATA, ERROR = 0, 1


class PortForward:
    """Local listeners forwarding to ``ports`` of pod ``namespace/name``."""

    def __init__(self, api: client.ApiClient, namespace: str, name: str) -> None:
        self.api = api
        self.namespace = namespace
        self.name = name
        self.local: dict[int, int] = {}
        """Pod port -> local port on 127.0.0.1."""
        self._servers: list[asyncio.Server] = []
        self._pipes: set[asyncio.Task[None]] = set()
        self.refused = ""
        """Why the API server refused a forward for good (RBAC): a kernel start that waits
        for the kernel through it fails with this at once instead of timing out."""
        self._accepted: set[asyncio.StreamWriter] = set()
        """Local connections not yet closed: a pipe cancelled before it ran never closes its
        own (ZeroMQ reconnects while the kernel shuts down, just before ``close``)."""
        self._closing = False

    async def start(self, ports: Iterable[int]) -> dict[int, int]:
        for port in ports:
            server = await asyncio.start_server(
                functools.partial(self._accept, port=port), "127.0.0.1", 0
            )
            self._servers.append(server)
            self.local[port] = server.sockets[0].getsockname()[1]
        return self.local

    def _accept(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int
    ) -> None:
        if self._closing:  # accepted just before the listener closed: no pipe outlives close
            writer.close()
            return
        self._accepted.add(writer)
        task = asyncio.ensure_future(self._pipe(reader, writer, port))
        self._pipes.add(task)
        task.add_done_callback(self._pipes.discard)

    async def _headers(self) -> dict[str, str]:
        settings = await self.api.configuration.auth_settings()
        return {s["key"]: s["value"] for s in settings.values() if s.get("in") == "header"}

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int
    ) -> None:
        host = str(self.api.configuration.host).replace("https://", "wss://", 1)
        host = host.replace("http://", "ws://", 1)
        url = f"{host}/api/v1/namespaces/{self.namespace}/pods/{self.name}/portforward"
        session: aiohttp.ClientSession = self.api.rest_client.pool_manager
        try:
            async with session.ws_connect(
                url,
                params={"ports": str(port)},
                protocols=(PROTOCOL,),
                headers=await self._headers(),
            ) as socket:
                await _relay(reader, writer, socket)
        except aiohttp.WSServerHandshakeError as error:
            credentials = getattr(self.api, "credentials", None)
            if error.status == 401 and credentials is not None:  # ZMQ reconnects: with a new token
                await credentials.refresh(self.api.configuration, force=True)
            if error.status == 403:
                self.refused = (
                    f"the API server refused the port-forward to pod {self.name} (403 "
                    "Forbidden): this server's account needs get and create on "
                    "pods/portforward (since Kubernetes 1.35 a websocket is authorized as both)"
                )
            log.debug("port-forward to %s:%s: %r", self.name, port, error)
        except (aiohttp.ClientError, OSError) as error:
            log.debug("port-forward to %s:%s: %r", self.name, port, error)
        finally:
            await _closed(writer)
            self._accepted.discard(writer)

    async def close(self) -> None:
        self._closing = True
        for server in self._servers:
            server.close()
        while self._pipes:
            for task in list(self._pipes):
                task.cancel()
            await asyncio.gather(*self._pipes, return_exceptions=True)
        for writer in list(self._accepted):
            await _closed(writer)
        self._accepted.clear()
        for server in self._servers:
            with contextlib.suppress(OSError):
                await server.wait_closed()
        self._servers.clear()


async def _closed(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, socket: Any) -> None:
    """Bytes both ways until either side closes; the first frame of each channel (the port
    number) is skipped, an error frame ends the connection."""

    async def upstream() -> None:
        while chunk := await reader.read(65536):
            await socket.send_bytes(bytes([DATA]) + chunk)
        await socket.close()

    sending = asyncio.ensure_future(upstream())
    seen: set[int] = set()
    try:
        async for message in socket:
            if message.type != aiohttp.WSMsgType.BINARY or not message.data:
                continue
            channel, payload = message.data[0], message.data[1:]
            if channel not in seen:  # the port number
                seen.add(channel)
                payload = payload[2:]
            if channel == ERROR and payload:
                log.debug("port-forward error: %s", payload.decode(errors="replace"))
                break
            if channel == DATA and payload:
                writer.write(payload)
                await writer.drain()
    finally:
        sending.cancel()
        await asyncio.gather(sending, return_exceptions=True)
