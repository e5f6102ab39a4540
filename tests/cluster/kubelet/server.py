"""The kubelet's HTTPS API, which the API server proxies ``pods/log``, ``pods/exec`` and
``pods/portforward`` to (at the Node's InternalIP and ``daemonEndpoints.kubeletEndpoint.Port``,
presenting its kubelet-client certificate, which this server requires, signed by the cluster's
CA).

- ``GET /containerLogs/{ns}/{pod}/{container}``: ``follow``, ``tailLines``, ``sinceSeconds``,
  ``sinceTime``, ``timestamps``, ``previous``, ``limitBytes``; errors as the kubelet words them
  (plain text, which the API server turns into a Status).
- ``GET /exec/{ns}/{pod}/{container}?command=...&input=1&output=1&error=1`` as a websocket:
  ``v5.channel.k8s.io`` (kubectl) or ``v4.channel.k8s.io`` (kubernetes clients): stdin, stdout,
  stderr on channels 0-2, the final Status on 3, and for v5 a close of stdin on 255.
- ``GET /portForward/{ns}/{pod}?port=p1,p2`` as a websocket (``v4.channel.k8s.io``,
  ``portforward.k8s.io``): for the i-th port, channel 2i data and 2i+1 errors, each opened by a
  frame holding the port (little-endian uint16); the connection goes to ``127.0.0.1:<port>``
  inside the pod's network namespace, as a real kubelet's.

What the API server passes through unchanged and what it translates (kube-apiserver v1.37,
``pkg/registry/core/pod/rest/subresources.go``): a websocket exec offering ``v5.channel.k8s.io``
is translated to SPDY unless the Node declares ``ExtendWebSocketsToKubelet`` in
``status.declaredFeatures`` (these nodes do: kubectl exec reaches this server as a websocket);
any other websocket exec or port-forward (``v4.channel.k8s.io``, what kubernetes_asyncio's
WsApiClient and the product's port-forward speak) is proxied as is. kubectl port-forward tunnels
SPDY inside a websocket (``SPDY/3.1+portforward.k8s.io``), which reaches the kubelet as is for a
node declaring that feature, and falls back to plain SPDY otherwise: either way the kubelet must
speak SPDY/3.1, which this one does not."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from aiohttp import WSMsgType, web

from .context import Running
from .logs import ContainerLog
from .pods import PodWorker

EXEC_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
PORT_FORWARD_PROTOCOLS = ("v4.channel.k8s.io", "portforward.k8s.io")
SHUTDOWN_SECONDS = 2.0
"""How long a stopping node waits for its open streams (followed logs, port-forwards) before
cutting them, as a kubelet that goes away drops them: aiohttp's default of 60 s per node made a
test's teardown outlast its limit under load."""

#: (namespace, name) -> the worker running that pod on this node, if any
Lookup = Callable[[str, str], "PodWorker | None"]


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("1", "true")


def _error(status: int, text: str) -> web.HTTPException:
    """An error answer in the kubelet's words (plain text; the API server makes it a Status)."""
    kind = {400: web.HTTPBadRequest, 404: web.HTTPNotFound}[status]
    return kind(text=text, content_type="text/plain")


def _exit_status(code: int) -> bytes:
    if code == 0:
        return json.dumps({"metadata": {}, "status": "Success"}).encode()
    return json.dumps(
        {
            "metadata": {},
            "status": "Failure",
            "reason": "NonZeroExitCode",
            "message": f"command terminated with non-zero exit code: error executing command, "
            f"exit code {code}",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
        }
    ).encode()


class KubeletServer:
    """One node's kubelet API on ``host:port``."""

    def __init__(self, lookup: Lookup, host: str, port: int, context: ssl.SSLContext) -> None:
        self.lookup = lookup
        self.host = host
        self.port = port
        self.context = context
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self._logs)
        app.router.add_get("/exec/{namespace}/{pod}/{container}", self._exec)
        app.router.add_get("/portForward/{namespace}/{pod}", self._port_forward)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=SHUTDOWN_SECONDS)

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.context)
        await site.start()

    async def stop(self) -> None:
        await self._runner.cleanup()

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    def _worker(self, request: web.Request) -> PodWorker:
        name = request.match_info["pod"]
        worker = self.lookup(request.match_info["namespace"], name)
        if worker is None:
            raise _error(404, f'pod "{name}" does not exist')
        return worker

    # -- logs ------------------------------------------------------------------------------

    async def _logs(self, request: web.Request) -> web.StreamResponse:
        worker = self._worker(request)
        name, container = worker.name, request.match_info["container"]
        if container not in worker.state.containers:
            raise _error(404, f'container "{container}" not found in pod "{name}"')
        runs = worker.settings.logs.of(worker.uid, container)
        previous = _flag(request, "previous")
        if previous and len(runs) < 2:
            raise _error(
                400, f'previous terminated container "{container}" in pod "{name}" not found'
            )
        if not runs:
            waiting = worker.state.containers[container]["state"].get("waiting") or {}
            reason = waiting.get("reason", "ContainerCreating")
            if reason in ("ErrImagePull", "ImagePullBackOff"):
                reason = "trying and failing to pull image"
            raise _error(
                400, f'container "{container}" in pod "{name}" is waiting to start: {reason}'
            )
        log = runs[-2] if previous else runs[-1]
        try:
            first = self._first_line(request, log)
            limit = int(request.query["limitBytes"]) if "limitBytes" in request.query else None
        except ValueError:
            raise _error(400, '{"message": "Unable to decode query."}') from None
        timestamps = _flag(request, "timestamps")
        follow = _flag(request, "follow") and not previous
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        sent, written = first, 0
        while True:
            waiter = log.waiter()
            chunk = log.lines[sent:]
            sent += len(chunk)
            data = b"".join(
                (stamp.encode() + b" " if timestamps else b"") + line for _, stamp, line in chunk
            )
            if limit is not None:
                data = data[: max(0, limit - written)]
            if data:
                await response.write(data)
                written += len(data)
            done = limit is not None and written >= limit
            if done or not follow or (log.finished and sent == len(log.lines)):
                break
            await waiter.wait()
        await response.write_eof()
        return response

    @staticmethod
    def _first_line(request: web.Request, log: ContainerLog) -> int:
        query = request.query
        first = 0
        since: float | None = None
        if "sinceSeconds" in query:
            since = datetime.now(timezone.utc).timestamp() - int(query["sinceSeconds"])
        elif "sinceTime" in query:
            since = datetime.fromisoformat(query["sinceTime"].replace("Z", "+00:00")).timestamp()
        if since is not None:
            first = next(
                (i for i, line in enumerate(log.lines) if line[0] >= since), len(log.lines)
            )
        if "tailLines" in query:
            first = max(first, len(log.lines) - int(query["tailLines"]))
        return first

    # -- exec ------------------------------------------------------------------------------

    def _running(self, worker: PodWorker, container: str) -> Running:
        running = worker.running.get(container)
        if running is None:
            if container not in worker.state.containers:
                raise _error(404, f'container not found ("{container}")')
            raise _error(400, f'container "{container}" is not running')
        return running

    async def _exec(self, request: web.Request) -> web.StreamResponse:
        worker = self._worker(request)
        running = self._running(worker, request.match_info["container"])
        command = request.query.getall("command", [])
        if not command:
            raise _error(400, "you must specify at least 1 command")
        if _flag(request, "tty"):
            raise _error(400, "the test kubelet does not run exec with a tty")
        socket = web.WebSocketResponse(protocols=EXEC_PROTOCOLS)
        await socket.prepare(request)
        pipe = asyncio.subprocess.PIPE
        devnull = asyncio.subprocess.DEVNULL
        process = await worker.exec(
            running,
            command,
            stdin=pipe if _flag(request, "input") else devnull,
            stdout=pipe if _flag(request, "output") else devnull,
            stderr=pipe if _flag(request, "error") else devnull,
        )
        if isinstance(process, str):
            failure = {
                "metadata": {},
                "status": "Failure",
                "reason": "InternalError",
                "message": f"failed to exec in container: {process}",
            }
            await socket.send_bytes(b"\x03" + json.dumps(failure).encode())
            await socket.close()
            return socket
        pumps = [
            asyncio.ensure_future(self._pump(stream, channel, socket))
            for stream, channel in ((process.stdout, 1), (process.stderr, 2))
            if stream is not None
        ]
        feeder = asyncio.ensure_future(self._feed(socket, process))
        try:
            code = await process.wait()
            await asyncio.gather(*pumps)
            await socket.send_bytes(b"\x03" + _exit_status(code))
        finally:
            feeder.cancel()
            for pump in pumps:
                pump.cancel()
            await socket.close()
        return socket

    @staticmethod
    async def _pump(
        stream: asyncio.StreamReader, channel: int, socket: web.WebSocketResponse
    ) -> None:
        while chunk := await stream.read(65536):
            await socket.send_bytes(bytes([channel]) + chunk)

    @staticmethod
    async def _feed(socket: web.WebSocketResponse, process: asyncio.subprocess.Process) -> None:
        async for message in socket:
            if message.type != WSMsgType.BINARY or not message.data or process.stdin is None:
                continue
            channel, payload = message.data[0], message.data[1:]
            if channel == 0:
                process.stdin.write(payload)
                with contextlib.suppress(ConnectionError):
                    await process.stdin.drain()
            elif channel == 255 and payload[:1] == b"\x00":  # v5: the client closed stdin
                process.stdin.close()
        if process.stdin is not None:
            process.stdin.close()

    # -- port-forward ----------------------------------------------------------------------

    async def _port_forward(self, request: web.Request) -> web.StreamResponse:
        worker = self._worker(request)
        try:
            ports = [
                int(port)
                for value in request.query.getall("port", [])
                for port in value.split(",")
                if port
            ]
        except ValueError:
            raise _error(400, "invalid port") from None
        if not ports:
            raise _error(400, "at least 1 port must be specified")
        if worker.sandbox is None:
            raise _error(400, f"pod {worker.name} has no network yet")
        sandbox = worker.sandbox
        socket = web.WebSocketResponse(protocols=PORT_FORWARD_PROTOCOLS)
        await socket.prepare(request)
        writers: dict[int, asyncio.StreamWriter] = {}
        pumps = []
        loop = asyncio.get_running_loop()
        for index, port in enumerate(ports):
            prefix = port.to_bytes(2, "little")
            await socket.send_bytes(bytes([2 * index]) + prefix)
            await socket.send_bytes(bytes([2 * index + 1]) + prefix)
            raw = await asyncio.to_thread(sandbox.socket)
            try:
                raw.setblocking(False)
                await loop.sock_connect(raw, ("127.0.0.1", port))
                reader, writer = await asyncio.open_connection(sock=raw)
            except OSError as error:
                raw.close()
                await socket.send_bytes(
                    bytes([2 * index + 1])
                    + (
                        f"error forwarding port {port} to pod {worker.uid}, uid : failed to "
                        f"connect to localhost:{port} inside namespace: {error.strerror or error}"
                    ).encode()
                )
                continue
            writers[2 * index] = writer
            pumps.append(asyncio.ensure_future(self._pump_socket(reader, 2 * index, socket)))
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
        except ConnectionError:
            pass
        finally:
            for pump in pumps:
                pump.cancel()
            for writer in writers.values():
                writer.close()
            await socket.close()
        return socket

    @staticmethod
    async def _pump_socket(reader: asyncio.StreamReader, channel: int, socket: Any) -> None:
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(65536):
                await socket.send_bytes(bytes([channel]) + chunk)
        await socket.close()
