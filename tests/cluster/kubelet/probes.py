"""One probe of a container as the kubelet runs it: ``tcpSocket`` and ``httpGet`` from the node
to the pod's address (as a real kubelet probes), ``exec`` inside the container; ``grpc`` is not
run (it passes). Failure texts are the kubelet's."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

#: runs an exec probe's command in the container's environment, returning its exit code
ExecRunner = Callable[[list[str], float], Awaitable[int]]


def container_port(port: int | str, container: dict[str, Any]) -> int:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for declared in container.get("ports") or []:
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise ValueError(f"port {port!r} is not a named port of container {container['name']}")


async def probe_once(
    probe: dict[str, Any], ip: str, container: dict[str, Any], run_exec: ExecRunner
) -> str | None:
    """None when the probe succeeds, else why it failed (the kubelet's wording)."""
    timeout = float(probe.get("timeoutSeconds", 1))
    try:
        if "tcpSocket" in probe:
            socket_probe = probe["tcpSocket"]
            host = socket_probe.get("host") or ip
            port = container_port(socket_probe["port"], container)
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
            except (OSError, asyncio.TimeoutError):
                return f"dial tcp {host}:{port}: connect: connection refused"
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return None
        if "httpGet" in probe:
            http_probe = probe["httpGet"]
            host = http_probe.get("host") or ip
            port = container_port(http_probe["port"], container)
            url = f"http://{host}:{port}{http_probe.get('path', '/')}"
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
                session.get(url) as response,
            ):
                if 200 <= response.status < 400:
                    return None
                return f"HTTP probe failed with statuscode: {response.status}"
        if "exec" in probe:
            code = await run_exec(list(probe["exec"]["command"]), timeout)
            return None if code == 0 else f"command exited with {code}"
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as error:
        return f"Get probe: {error}"
    return None  # grpc probes are not run by the test kubelet: they pass
