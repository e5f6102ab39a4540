"""Commands to the kernel launcher in a kernel pod (``kernels/launcher.py``'s control port).

The launcher keeps the kernel process running inside the pod; this is how the server asks
whether that process is alive and restarts it without replacing the pod. Each command is
signed with the kernel's own key and a time, so only the server that holds the key can
restart a kernel, and an overheard command cannot be replayed later.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
from typing import Any


class LauncherUnreachable(Exception):
    """The launcher did not answer (pod gone, network) or refused the command."""


def signed(command: str, key: bytes, now: float | None = None) -> bytes:
    stamp = f"{time.time() if now is None else now:.3f}"
    signature = hmac.new(key, f"{command} {stamp}".encode(), hashlib.sha256).hexdigest()
    return f"{command} {stamp} {signature}\n".encode()


async def command(ip: str, port: int, key: bytes, name: str, timeout: float) -> dict[str, Any]:
    """Send ``name`` (``status`` or ``restart``) to the launcher at ``ip``:``port`` (its
    control port) and return its answer."""
    try:
        line = await asyncio.wait_for(_exchange(ip, port, signed(name, key)), timeout)
    except (OSError, asyncio.TimeoutError) as error:
        raise LauncherUnreachable(f"kernel launcher at {ip}:{port}: {error!r}") from None
    try:
        answer: dict[str, Any] = json.loads(line)
    except ValueError:
        raise LauncherUnreachable(f"kernel launcher at {ip}:{port}: no answer") from None
    if "error" in answer:
        raise LauncherUnreachable(f"kernel launcher refused {name!r}: {answer['error']}")
    return answer


async def _exchange(ip: str, port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(ip, port)
    try:
        writer.write(request)
        await writer.drain()
        return await reader.readline()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
