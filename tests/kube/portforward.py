"""``pods/portforward`` over a websocket (``v4.channel.k8s.io``), as a server outside the
cluster reaches a pod: for the i-th requested port, channel 2i carries the data and 2i+1
errors, each opened by a frame holding the port number (little-endian uint16). The fixture
connects to the pod's IP; when the pod side closes, the websocket closes too."""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import WSMsgType, web

from .channels import PROTOCOLS, PodChannelEndpoint
from .errors import bad_request
from .kubelet import PodRun
from .store import Obj, meta


class PortForwardEndpoint(PodChannelEndpoint):
    """GET (websocket) .../pods/{name}/portforward?ports=8888,8889"""

    async def serve(self, request: web.Request, pod: Obj, run: PodRun) -> web.StreamResponse:
        name = meta(pod)["name"]
        try:
            ports = [
                int(port)
                for value in request.query.getall("ports", [])
                for port in value.split(",")
            ]
        except ValueError:
            raise bad_request("ports: invalid port number") from None
        if not ports:
            raise bad_request("at least 1 port must be specified")
        socket = web.WebSocketResponse(protocols=(*PROTOCOLS, "portforward.k8s.io"))
        await socket.prepare(request)
        writers: dict[int, asyncio.StreamWriter] = {}
        pumps = []
        for index, port in enumerate(ports):
            prefix = port.to_bytes(2, "little")
            await socket.send_bytes(bytes([2 * index]) + prefix)
            await socket.send_bytes(bytes([2 * index + 1]) + prefix)
            try:
                reader, writer = await asyncio.open_connection(run.ip, port)
            except OSError as error:
                await socket.send_bytes(
                    bytes([2 * index + 1])
                    + (
                        f"error forwarding port {port} to pod {name}: failed to connect to "
                        f"{run.ip}:{port}: {error.strerror or error}"
                    ).encode()
                )
                continue
            writers[2 * index] = writer
            pumps.append(asyncio.create_task(self._pump(reader, 2 * index, socket)))
        if not writers:
            await socket.close()
            return socket
        try:
            async for message in socket:
                if message.type != WSMsgType.BINARY or not message.data:
                    continue
                target = writers.get(message.data[0])
                if target is not None:
                    target.write(message.data[1:])
                    await target.drain()
        finally:
            for pump in pumps:
                pump.cancel()
            for writer in writers.values():
                writer.close()
            await socket.close()
        return socket

    @staticmethod
    async def _pump(
        reader: asyncio.StreamReader, channel: int, socket: web.WebSocketResponse
    ) -> None:
        while chunk := await reader.read(65536):
            with contextlib.suppress(ConnectionResetError):
                await socket.send_bytes(bytes([channel]) + chunk)
        await socket.close()
