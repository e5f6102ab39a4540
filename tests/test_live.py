"""Live updates through a real jupyter server and a real local agent: a tab's websocket gets
its jobs' changes pushed, never another user's, and keeps getting them across agent restarts.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Callable
from typing import Any

import pytest
from jupyter_server.utils import url_path_join
from tornado.escape import url_escape
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

from jupyter_mlinfra.backends.local.agent_client import AgentClient, stop_agent
from jupyter_mlinfra.identity import Identity

from . import kernel_starts
from .agents import AgentHome
from .conftest import ME
from .jobs_client import TERMINAL, call
from .test_handlers import DenyMLInfra, conforms
from .waits import until

Message = dict[str, Any]
SLEEPER = "import time; time.sleep(0.5)"


class Tab:
    """A browser tab's websocket, as the sidebar opens it. Every message it reads must be a
    ``LiveMessage`` of the OpenAPI document (what the labextension's types say it gets)."""

    def __init__(self, ws: WebSocketClientConnection) -> None:
        self.ws = ws
        self.seen: list[Message] = []

    async def next(self, timeout: float = 60) -> Message:
        text = await asyncio.wait_for(self.ws.read_message(), timeout)
        assert text is not None, "the server closed the stream"
        message: Message = json.loads(text)
        conforms(message, "LiveMessage")
        self.seen.append(message)
        return message

    async def until(self, check: Callable[[Message], bool], timeout: float = 60) -> Message:
        """The first message from now on that passes ``check``."""
        while True:
            message = await self.next(timeout)
            if check(message):
                return message

    async def job(self, job_id: str, states: set[str], timeout: float = 60) -> Message:
        message = await self.until(
            lambda m: (
                m["type"] == "job" and m["job"]["id"] == job_id and m["job"]["state"] in states
            ),
            timeout,
        )
        job: Message = message["job"]
        return job

    def jobs(self) -> list[Message]:
        return [m["job"] for m in self.seen if m["type"] == "job"]


async def live_tab(jp_ws_fetch: Any, jp_fetch: Any) -> Tab:
    """A tab once its server follows the agent (the first request starts one)."""
    ws = await jp_ws_fetch("mlinfra", "api", "v1", "live")
    tab = Tab(ws)
    hello = await tab.next()
    assert hello["type"] == "hello" and hello["user"] == ME
    if not hello["live"]:
        await call(jp_fetch, "jobs")  # starts the agent; the server then follows it
        await tab.until(lambda m: m == {"type": "live", "live": True})
    return tab


async def test_a_jobs_changes_are_pushed_to_the_tab(jp_fetch: Any, jp_ws_fetch: Any) -> None:
    tab = await live_tab(jp_ws_fetch, jp_fetch)
    try:
        job = await call(jp_fetch, "jobs", "POST", {"code": SLEEPER, "name": "pushed"})
        done = await tab.job(job["id"], TERMINAL)
        assert done["state"] == "succeeded" and done["name"] == "pushed"
        states = [j["state"] for j in tab.jobs() if j["id"] == job["id"]]
        assert states[0] == "queued"
        assert states.index("admitted") < states.index("running") < states.index("succeeded")
        # what was pushed last is what the REST API says
        assert done == await call(jp_fetch, f"jobs/{job['id']}")
    finally:
        tab.ws.close()


async def test_a_cancel_is_pushed(jp_fetch: Any, jp_ws_fetch: Any) -> None:
    tab = await live_tab(jp_ws_fetch, jp_fetch)
    try:
        job = await call(jp_fetch, "jobs", "POST", {"code": "import time; time.sleep(120)"})
        await tab.job(job["id"], {"running"})
        await call(jp_fetch, f"jobs/{job['id']}", "DELETE")
        cancelled = await tab.job(job["id"], {"cancelled"})
        assert cancelled["reason"] == "cancelled"
    finally:
        tab.ws.close()


async def test_what_jobs_hold_is_current_while_changes_are_pushed(
    jp_fetch: Any, jp_ws_fetch: Any
) -> None:
    """While the server follows the agent it reads holdings once per change, not per request:
    each change must still show in the very next answer."""
    tab = await live_tab(jp_ws_fetch, jp_fetch)
    try:
        assert (await call(jp_fetch, "capacity"))["allocations"] == 0
        assert (await call(jp_fetch, "capacity"))["allocations"] == 0  # read once, kept
        job = await call(jp_fetch, "jobs", "POST", {"code": "import time; time.sleep(120)"})
        await tab.job(job["id"], {"running"})
        assert (await call(jp_fetch, "capacity"))["allocations"] == 1
        assert (await call(jp_fetch, "whoami"))["usage"]["running_jobs"] == 1
        await call(jp_fetch, f"jobs/{job['id']}", "DELETE")
        await tab.job(job["id"], {"cancelled"})
        assert (await call(jp_fetch, "capacity"))["allocations"] == 0
    finally:
        tab.ws.close()


def agent_client(home: AgentHome) -> AgentClient:
    return AgentClient(home.socket)


async def submit_as(home: AgentHome, user: str, code: str) -> Message:
    """Submit straight to the agent as ``user`` (its socket trusts the stated identity)."""
    client = agent_client(home)
    try:
        response = await client.fetch(
            "POST",
            "/mlinfra/api/v1/jobs",
            identity=Identity(user),
            body=json.dumps({"code": code, "name": f"of-{user}"}).encode(),
        )
        assert response.code == 201, response.body
        job: Message = json.loads(response.body)
        return job
    finally:
        client.close()


async def test_another_users_jobs_never_reach_a_tab(
    jp_fetch: Any, jp_ws_fetch: Any, agent_home: AgentHome
) -> None:
    tab = await live_tab(jp_ws_fetch, jp_fetch)
    try:
        theirs = await submit_as(agent_home, "somebody-else", "print('theirs')")
        mine = await call(jp_fetch, "jobs", "POST", {"code": "print('mine')"})
        await tab.job(mine["id"], TERMINAL)
        # theirs was submitted first and runs alongside: it ended before or about now
        client = agent_client(agent_home)
        try:
            path = f"/mlinfra/api/v1/jobs/{theirs['id']}"
            for _ in range(200):
                answer = await client.fetch("GET", path, identity=Identity("somebody-else"))
                if json.loads(answer.body)["state"] in TERMINAL:
                    break
                await asyncio.sleep(0.1)
        finally:
            client.close()
        await call(jp_fetch, "jobs", "POST", {"code": "1"})  # one more change after theirs
        assert {j["owner"] for j in tab.jobs()} == {ME}
        assert theirs["id"] not in {j["id"] for j in tab.jobs()}
    finally:
        tab.ws.close()


async def test_the_agent_sends_a_follower_only_what_its_caller_may_see(
    jp_fetch: Any, agent_home: AgentHome
) -> None:
    await call(jp_fetch, "jobs")  # an agent runs, with this server's settings
    lines: list[Message] = []
    buffer = b""

    def chunk(data: bytes) -> None:
        nonlocal buffer
        *done, buffer = (buffer + data).split(b"\n")
        lines.extend(json.loads(line) for line in done)

    client = agent_client(agent_home)
    following = asyncio.ensure_future(
        client.fetch(
            "GET",
            "/mlinfra/agent/v1/changes",
            identity=Identity("somebody-else"),
            streaming_callback=chunk,
            timeout=120,
        )
    )
    try:
        for _ in range(300):
            if lines:
                break
            await asyncio.sleep(0.05)
        assert lines and lines[0]["type"] == "hello"
        mine = await call(jp_fetch, "jobs", "POST", {"code": "1"})
        theirs = await submit_as(agent_home, "somebody-else", "1")
        for _ in range(600):
            if any(m.get("job", {}).get("state") in TERMINAL for m in lines):
                break
            await asyncio.sleep(0.1)
        ids = {m["job"]["id"] for m in lines if m["type"] == "job"}
        assert theirs["id"] in ids and mine["id"] not in ids
    finally:
        following.cancel()
        client.close()

    anonymous = agent_client(agent_home)
    try:
        response = await anonymous.fetch("GET", "/mlinfra/agent/v1/changes", timeout=10)
        assert response.code == 401
    finally:
        anonymous.close()


class TestAdmin:
    @pytest.fixture
    def mlinfra_config(self, mlinfra_config: dict[str, Any]) -> dict[str, Any]:
        return {**mlinfra_config, "admin_users": [ME]}

    async def test_an_admins_tab_gets_everybodys_jobs(
        self, jp_fetch: Any, jp_ws_fetch: Any, agent_home: AgentHome
    ) -> None:
        tab = await live_tab(jp_ws_fetch, jp_fetch)
        try:
            theirs = await submit_as(agent_home, "somebody-else", "1")
            done = await tab.job(theirs["id"], TERMINAL)
            assert done["owner"] == "somebody-else"
        finally:
            tab.ws.close()


async def test_the_tab_resyncs_after_the_agent_restarts(
    jp_fetch: Any, jp_ws_fetch: Any, agent_home: AgentHome
) -> None:
    tab = await live_tab(jp_ws_fetch, jp_fetch)
    try:
        await asyncio.get_running_loop().run_in_executor(None, stop_agent, agent_home.socket)
        await tab.until(lambda m: m == {"type": "live", "live": False})
        # the tab's fallback poll (or any request) starts an agent; the server follows it
        await call(jp_fetch, "jobs")
        await tab.until(lambda m: m == {"type": "live", "live": True})
        job = await call(jp_fetch, "jobs", "POST", {"code": "1"})
        assert (await tab.job(job["id"], TERMINAL))["state"] == "succeeded"

        # a crash says no goodbye: the same, from a stream that just ends
        agent_home.kill_agent(signal.SIGKILL)
        await tab.until(lambda m: m == {"type": "live", "live": False})
        await call(jp_fetch, "jobs")
        await tab.until(lambda m: m == {"type": "live", "live": True})
    finally:
        tab.ws.close()


class TestIdleAgent:
    @pytest.fixture
    def mlinfra_config(self, mlinfra_config: dict[str, Any]) -> dict[str, Any]:
        return {**mlinfra_config, "agent_idle_timeout": 3}

    async def test_an_open_tab_lets_the_agent_exit_and_stays_live(
        self, jp_fetch: Any, jp_ws_fetch: Any, agent_home: AgentHome
    ) -> None:
        tab = await live_tab(jp_ws_fetch, jp_fetch)
        try:

            async def gone() -> bool:  # asked of /proc: a request would be activity
                return not agent_home.agent_pids()

            await until(gone)
            await call(jp_fetch, "jobs")  # starts one; the tab reads everything again
            # and was never told to poll: the agent said it was idle, nothing could change
            message = await tab.until(lambda m: m["type"] == "live")
            assert message == {"type": "live", "live": True}
        finally:
            tab.ws.close()


async def test_a_kernel_start_and_stop_tell_the_tab(jp_fetch: Any, jp_ws_fetch: Any) -> None:
    tab = await live_tab(jp_ws_fetch, jp_fetch)
    try:
        kernel = await kernel_starts.begin(jp_fetch, {"flavor": "cpu"})
        await tab.until(lambda m: m == {"type": "kernels"})  # starting: listed at once
        await kernel_starts.settled(jp_fetch, kernel["id"])
        # its lease, taken at its start: flavors' availability changed
        if {"type": "capacity"} not in tab.seen:
            await tab.until(lambda m: m == {"type": "capacity"})
        del tab.seen[:]
        await call(jp_fetch, f"kernels/{kernel['id']}", "DELETE")
        await tab.until(lambda m: m == {"type": "kernels"})
    finally:
        tab.ws.close()


async def test_a_kernels_switch_of_flavor_and_its_death_tell_the_tab(
    jp_fetch: Any, jp_ws_fetch: Any, jp_serverapp: Any
) -> None:
    """The kernels the tab then reads show the new flavor, and why the kernel died (the death
    is told as soon as it is noted, before the restart that follows is done)."""
    tab = await live_tab(jp_ws_fetch, jp_fetch)
    kernels: Callable[[Message], bool] = lambda m: m == {"type": "kernels"}  # noqa: E731
    try:
        kernel = await kernel_starts.start(jp_fetch, {"flavor": "cpu"})
        await tab.until(kernels)
        await call(jp_fetch, f"kernels/{kernel['id']}", "PATCH", {"flavor": "a100x1"})
        await tab.until(kernels)
        manager = jp_serverapp.kernel_manager.get_kernel(kernel["id"])
        first = manager.provisioner.pid
        os.kill(first, signal.SIGKILL)
        # told once noted: a push after which the tab's reading shows why it died (pushes of
        # the start and the switch may come first)
        while True:
            await tab.until(kernels)
            seen = await call(jp_fetch, f"kernels/{kernel['id']}")
            if seen.get("last_exit"):
                break
        assert seen["flavor"] == "a100x1"
        assert "killed by SIGKILL" in seen["last_exit"]["reason"]

        async def restarted() -> bool:  # a kernel shut down mid-restart fails the teardown
            return manager.provisioner.pid not in (None, first) and bool(await manager.is_alive())

        await until(restarted)
        await manager.ready
    finally:
        tab.ws.close()


async def test_a_connection_without_credentials_is_refused(
    http_server_client: Any, jp_http_port: int, jp_base_url: str
) -> None:
    path = url_path_join(jp_base_url, url_escape("mlinfra/api/v1/live", plus=False))
    url = f"ws://localhost:{jp_http_port}{path}"
    with pytest.raises(HTTPClientError) as refused:
        await websocket_connect(HTTPRequest(url))
    assert refused.value.code == 403


class TestAuthorizer:
    @pytest.fixture
    def jp_server_config(self, jp_server_config: dict[str, Any]) -> dict[str, Any]:
        return {
            **jp_server_config,
            "ServerApp": {**jp_server_config["ServerApp"], "authorizer_class": DenyMLInfra},
        }

    async def test_the_authorizer_decides(self, jp_ws_fetch: Any) -> None:
        DenyMLInfra.asked.clear()
        with pytest.raises(HTTPClientError) as refused:
            await jp_ws_fetch("mlinfra", "api", "v1", "live")
        assert refused.value.code == 403
        assert DenyMLInfra.asked == [("read", "mlinfra")]
