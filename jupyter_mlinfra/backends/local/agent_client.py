"""Finding, starting and talking to the local agent from a Jupyter server or the CLI.

``ensure_agent`` starts ``jupyter mlinfra agent`` in a session of its own (so it outlives the
server or shell that started it) unless one already answers on the socket; a lock file makes
concurrent starters agree on one agent. ``stop_agent`` ends it before its idle timeout does.
``AgentClient`` is the server's async side of the socket, built on tornado's HTTP client with
a resolver that dials the Unix socket.

A tornado client and its connections belong to one event loop. The server calls the agent
from its own loop, but kernel provisioners also run on the loops of jupyter_client's worker
threads (the synchronous ``MappingKernelManager`` runs each kernel operation there while the
server's loop waits for it): those calls go through a loop of the client's own, in a thread
of its own, so no connection of one loop is ever touched from another.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tornado.httpclient import HTTPRequest, HTTPResponse
from tornado.netutil import Resolver
from tornado.simple_httpclient import HTTPTimeoutError, SimpleAsyncHTTPClient

from ...capacity import Allocation
from ...errors import MLInfraError
from ...identity import Identity
from ...transport import IDENTITY_HEADER, UnixHTTPConnection
from .runner import process_start_time

if TYPE_CHECKING:
    from ...models import agent
    from ...models import catalog as wire

STATUS = "/mlinfra/agent/v1/status"
START_TIMEOUT_SECONDS = 30.0


class AgentUnavailable(MLInfraError):
    status = 503


class AgentBusy(MLInfraError):
    """A request timed out, maybe after the agent acted on it: never sent again."""

    status = 504


MAX_CONNECTIONS = 64
"""Requests in flight to the agent at once; more wait their turn (within their timeout)."""


def agent_status(socket_path: str, timeout: float = 2.0) -> agent.AgentStatus | None:
    """The agent's status, or None when nothing answers on the socket."""
    connection = UnixHTTPConnection(socket_path, timeout)
    try:
        connection.request("GET", STATUS)
        response = connection.getresponse()
        if response.status != 200:
            return None
        status: agent.AgentStatus = json.loads(response.read())
        return status
    except (OSError, ValueError):
        return None
    finally:
        connection.close()


def ensure_agent(socket_path: str, data_dir: str, idle_timeout: float) -> agent.AgentStatus:
    """The running agent's status, starting one first if none answers."""
    status = agent_status(socket_path)
    if status is not None:
        return status
    try:
        return _start_agent(socket_path, data_dir, idle_timeout)
    except (OSError, subprocess.SubprocessError) as error:  # data_dir not writable, say
        raise AgentUnavailable(f"cannot start the local agent: {error}") from None


def _start_agent(socket_path: str, data_dir: str, idle_timeout: float) -> agent.AgentStatus:
    folder = Path(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "agent.start.lock").open("a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one starter at a time; the others then find it
        status = agent_status(socket_path)
        if status is not None:
            return status
        log_path = folder / "agent.log"
        command = [
            sys.executable, "-m", "jupyter_mlinfra.cli", "agent",
            "--socket", socket_path, "--data-dir", data_dir, "--idle-timeout", str(idle_timeout),
        ]  # fmt: skip
        pid = _spawn_detached(command, log_path)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            status = agent_status(socket_path)
            if status is not None:
                return status
            if process_start_time(pid) is None:  # gone (or a zombie): it exited
                raise AgentUnavailable(f"the local agent exited at start: {_last_line(log_path)}")
            time.sleep(0.05)
    raise AgentUnavailable(f"the local agent did not answer on {socket_path} within 30 s")


def _last_line(log_path: Path) -> str:
    """What the agent said last: the one line its CLI writes when it cannot start (or, if it
    crashed, the exception's line that ends its traceback)."""
    lines = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else f"nothing in {log_path}"


def stop_agent(socket_path: str) -> agent.AgentStatus | None:
    """Stop the agent serving ``socket_path`` (SIGTERM: it closes its store as an idle exit
    does) and wait until it is gone; its status as it was, or None when none was running.
    Ranks it started keep running: the next agent adopts them."""
    status = agent_status(socket_path)
    if status is None:
        return None
    pid = int(status["pid"])
    started = process_start_time(pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while process_start_time(pid) == started and started is not None:
        if time.monotonic() > deadline:
            raise AgentUnavailable(f"the local agent (pid {pid}) did not stop within 30 s")
        time.sleep(0.05)
    return status


_DETACH = """
import os, sys
pid = os.fork()
if pid:
    print(pid, flush=True)
    os._exit(0)
log = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
os.dup2(log, 1)
os.dup2(log, 2)
os.execv(sys.argv[2], sys.argv[2:])
"""


def _spawn_detached(command: list[str], log_path: Path) -> int:
    """Start ``command`` as a grandchild in its own session, so it is nobody's child here
    (no zombie, no warning) and outlives whoever started it; return its pid."""
    starter = subprocess.run(
        [sys.executable, "-c", _DETACH, str(log_path), *command],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        start_new_session=True,
        check=True,
        timeout=30,
    )
    return int(starter.stdout.strip())


class _UnixResolver(Resolver):
    """Resolves every host to the agent's socket."""

    def initialize(self, socket_path: str) -> None:
        self.socket_path = socket_path

    async def resolve(
        self, host: str, port: int, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> list[tuple[int, Any]]:
        return [(socket.AF_UNIX, self.socket_path)]


class AgentClient:
    """Talks to the per-user agent on its Unix socket, stating the caller's identity; or, given
    ``url``, to the agent a JupyterHub shares, with ``token`` (the user's hub token) as the
    only proof of who calls."""

    def __init__(self, socket_path: str, url: str = "", token: str = "") -> None:
        self.socket_path = socket_path
        self.token = token
        self.base = url.rstrip("/") if url else "http://mlinfra-agent"
        self.shared = bool(url)
        self.where = url or socket_path
        self.http = self._http()
        """The client of the loop this was made on (the server's)."""
        self._elsewhere: _LoopThread | None = None
        self._lock = threading.Lock()

    def _http(self) -> SimpleAsyncHTTPClient:
        """A tornado client of the current loop."""
        if self.shared:
            return SimpleAsyncHTTPClient(force_instance=True, max_clients=MAX_CONNECTIONS)
        return SimpleAsyncHTTPClient(
            force_instance=True,
            max_clients=MAX_CONNECTIONS,
            resolver=_UnixResolver(socket_path=self.socket_path),
        )

    def credentials(self, identity: Identity | None) -> dict[str, str]:
        """The headers that say who calls: the hub token to a shared agent, else the
        identity this server vouches for."""
        if self.shared:
            return {"Authorization": f"token {self.token}"}
        if identity is not None:
            return {IDENTITY_HEADER: json.dumps(identity.to_json())}
        return {}

    async def fetch(
        self,
        method: str,
        path: str,
        *,
        identity: Identity | None = None,
        body: bytes | None = None,
        header_callback: Callable[[str], None] | None = None,
        streaming_callback: Callable[[bytes], None] | None = None,
        timeout: float = 60.0,
    ) -> HTTPResponse:
        headers = {"Content-Type": "application/json", **self.credentials(identity)}
        request = HTTPRequest(
            f"{self.base}{path}",
            method=method,
            headers=headers,
            body=body if body is not None else (b"" if method in ("POST", "PUT") else None),
            header_callback=header_callback,
            streaming_callback=streaming_callback,
            request_timeout=timeout,
        )
        try:
            if asyncio.get_running_loop() is self.http.io_loop.asyncio_loop:  # type: ignore[attr-defined]
                return await self.http.fetch(request, raise_error=False)
            return await self._fetch_elsewhere(request)
        except OSError as error:
            message = f"cannot reach the local agent at {self.where}: {error}"
            raise AgentUnavailable(message) from None
        except HTTPTimeoutError as error:  # in the queue, or sent: the agent may have acted
            message = f"the local agent did not answer within {timeout:g} s ({error.message})"
            raise AgentBusy(message) from None

    async def _fetch_elsewhere(self, request: HTTPRequest) -> HTTPResponse:
        """``request`` sent from the client's own loop thread (started on first use)."""
        with self._lock:
            if self._elsewhere is None:
                self._elsewhere = _LoopThread(self._http)
            elsewhere = self._elsewhere
        return await elsewhere.fetch(request)

    async def allocations(self) -> tuple[list[Allocation], dict[str, int]]:
        """What jobs hold now, and queued jobs per owner; nothing when no agent runs."""
        try:
            response = await self.fetch("GET", "/mlinfra/agent/v1/allocations", timeout=5)
        except AgentUnavailable:  # no agent: nothing runs, nothing is held
            return [], {}
        if response.code != 200:
            return [], {}
        data: agent.Allocations = json.loads(response.body)
        allocations = [Allocation.from_json(a) for a in data["allocations"]]
        return allocations, dict(data["queued_by_owner"])

    async def isolation(self, identity: Identity) -> wire.Isolation | None:
        """What ``identity``'s ranks run as (``whoami``), or None when the agent does not say."""
        try:
            response = await self.fetch(
                "GET", "/mlinfra/agent/v1/isolation", identity=identity, timeout=5
            )
        except AgentUnavailable:
            return None
        if response.code != 200:
            return None
        isolation: wire.Isolation = json.loads(response.body)
        return isolation

    def close(self) -> None:
        self.http.close()
        with self._lock:
            elsewhere, self._elsewhere = self._elsewhere, None
        if elsewhere is not None:
            elsewhere.close()


class _LoopThread:
    """An event loop in a daemon thread, with a tornado client made on it."""

    def __init__(self, make_http: Callable[[], SimpleAsyncHTTPClient]) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="mlinfra-agent-client", daemon=True
        )
        self.thread.start()

        async def make() -> SimpleAsyncHTTPClient:
            return make_http()

        self.http = asyncio.run_coroutine_threadsafe(make(), self.loop).result()

    async def fetch(self, request: HTTPRequest) -> HTTPResponse:
        async def send() -> HTTPResponse:
            return await self.http.fetch(request, raise_error=False)

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(send(), self.loop))

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.http.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()
