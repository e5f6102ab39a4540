"""``pods/exec`` over a websocket (``v4.channel.k8s.io``): runs a command as a process in the
container's environment (env, volumes, working directory) and streams stdin (channel 0),
stdout (1), stderr (2) and the final ``Status`` (3) as kubernetes clients expect."""

from __future__ import annotations

import asyncio
import json

from aiohttp import WSMsgType, web

from . import processes
from .channels import PROTOCOLS, PodChannelEndpoint
from .container_param import chosen_container
from .containers import CannotRun, command_line
from .errors import bad_request
from .kubelet import PodRun
from .store import Obj


def _status(code: int, command: list[str]) -> bytes:
    if code == 0:
        return json.dumps({"metadata": {}, "status": "Success"}).encode()
    return json.dumps(
        {
            "metadata": {},
            "status": "Failure",
            "reason": "NonZeroExitCode",
            "message": f"command terminated with non-zero exit code: error executing command "
            f"{command}, exit code {code}",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
        }
    ).encode()


class ExecEndpoint(PodChannelEndpoint):
    """GET (websocket) .../pods/{name}/exec?command=...&container=...&stdin=true"""

    async def serve(self, request: web.Request, pod: Obj, run: PodRun) -> web.StreamResponse:
        container = chosen_container(pod, request.query.get("container"))
        command = request.query.getall("command", [])
        if not command:
            raise bad_request("you must specify at least 1 command")
        try:
            spec = self.kubelet.process_spec(run, pod, container)
        except CannotRun as error:
            raise bad_request(error.message) from None
        wants_stdin = request.query.get("stdin", "").lower() in ("true", "1")
        socket = web.WebSocketResponse(protocols=PROTOCOLS)
        await socket.prepare(request)
        try:
            process = await processes.start(
                command_line(command, spec.env, spec.mounts),
                spec,
                stdin=asyncio.subprocess.PIPE if wants_stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as error:
            await socket.send_bytes(
                b"\x03"
                + json.dumps(
                    {
                        "metadata": {},
                        "status": "Failure",
                        "reason": "InternalError",
                        "message": f"exec failed: {error}",
                    }
                ).encode()
            )
            await socket.close()
            return socket
        run.extra_processes.add(process)
        pumps = [
            asyncio.create_task(self._pump(stream, channel, socket))
            for stream, channel in ((process.stdout, 1), (process.stderr, 2))
        ]
        feeder = asyncio.create_task(self._feed(socket, process))
        try:
            code = await process.wait()
            await asyncio.gather(*pumps)
            await socket.send_bytes(b"\x03" + _status(code, command))
        finally:
            feeder.cancel()
            run.extra_processes.discard(process)
            processes.signal_group(process)
            await socket.close()
        return socket

    @staticmethod
    async def _pump(
        stream: asyncio.StreamReader | None, channel: int, socket: web.WebSocketResponse
    ) -> None:
        assert stream is not None
        while chunk := await stream.read(65536):
            await socket.send_bytes(bytes([channel]) + chunk)

    @staticmethod
    async def _feed(socket: web.WebSocketResponse, process: asyncio.subprocess.Process) -> None:
        async for message in socket:
            if message.type != WSMsgType.BINARY or not message.data:
                continue
            if message.data[0] == 0 and process.stdin is not None:
                process.stdin.write(message.data[1:])
                await process.stdin.drain()
        if process.stdin is not None:
            process.stdin.close()
