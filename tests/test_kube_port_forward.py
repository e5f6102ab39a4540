"""A port-forward's local side: closing it leaves no local connection open, not even one
accepted just before (ZeroMQ reconnects while a kernel shuts down) whose websocket never
started."""

from __future__ import annotations

import asyncio
import socket

from kubernetes_asyncio import client

from jupyter_mlinfra.backends.kubernetes.port_forward import PortForward


async def test_close_ends_a_connection_whose_pipe_never_ran() -> None:
    forward = PortForward(client.ApiClient(), "team", "kernel-x")
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    try:
        reader, writer = await asyncio.open_connection(sock=ours)
        forward._accept(reader, writer, port=50000)  # as the listener does, then at once:
        await forward.close()
        ended = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(theirs, 1), 10)
        assert ended == b""  # closed, not left to the garbage collector
    finally:
        theirs.close()
        await forward.api.close()
