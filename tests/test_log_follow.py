"""Following a job's logs through a real jupyter server and a real local agent, with real
ranks: a line reaches the follower while its rank runs (the agent wakes on inotify, with no
timer in that path), the follow ends when the attempt does (the agent hears it from its own
change stream), many lines arrive whole and in order, and a follower that goes away leaves
no watch behind in the agent."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from jupyter_mlinfra.identity import Identity
from jupyter_mlinfra.transport import IDENTITY_HEADER

from .agents import AgentHome
from .conftest import ME
from .jobs_client import call, wait_for
from .waits import until

STEPPED_BY_FILES = """
import pathlib, time
def wait_for(name):
    while not (pathlib.Path({folder!r}) / name).exists():
        time.sleep(0.05)
print("started", flush=True)
wait_for("go")
print("first", flush=True)
wait_for("release")
print("second", flush=True)
"""

MANY = 20_000


def stepped(folder: Path) -> str:
    """A rank's code that prints a line, then one more as each file appears in ``folder``."""
    return STEPPED_BY_FILES.format(folder=str(folder))


class Followed:
    """A followed log as it arrives, through the server (``GET .../logs?follow=1``)."""

    def __init__(self, jp_fetch: Any, job_id: str, **params: str) -> None:
        self.chunks: list[bytes] = []
        self.response = asyncio.ensure_future(
            jp_fetch(
                "mlinfra", "api", "v1", "jobs", job_id, "logs",
                params={"follow": "1", **params},
                streaming_callback=self.chunks.append,
                request_timeout=600,
            )
        )  # fmt: skip

    @property
    def text(self) -> str:
        return b"".join(self.chunks).decode()

    async def has(self, check: Callable[[str], bool]) -> str:
        async def seen() -> str | None:
            assert not self.response.done() or self.response.exception() is None
            return self.text if check(self.text) else None

        found: str = await until(seen, timeout=120)
        return found

    async def ended(self) -> str:
        response = await asyncio.wait_for(self.response, 120)
        assert response.code == 200
        return self.text


def agent_pid(home: AgentHome) -> int:
    status = home.status()
    assert status is not None
    return int(status["pid"])


def open_fds(pid: int) -> dict[int, str]:
    """What each of the process's fds is (an inotify instance reads ``anon_inode:inotify``)."""
    fds = {}
    for entry in Path(f"/proc/{pid}/fd").iterdir():
        try:
            fds[int(entry.name)] = os.readlink(entry)
        except FileNotFoundError:  # closed meanwhile
            continue
    return fds


def inotify_fds(pid: int) -> int:
    return sum(target == "anon_inode:inotify" for target in open_fds(pid).values())


async def test_a_line_arrives_while_its_rank_runs_and_the_follow_ends_with_the_job(
    jp_fetch: Any, agent_home: AgentHome, tmp_path: Path
) -> None:
    job = await call(jp_fetch, "jobs", "POST", {"code": stepped(tmp_path), "name": "followed"})
    followed = Followed(jp_fetch, job["id"])
    assert await followed.has(lambda text: "started\n" in text) == "started\n"
    await wait_for(jp_fetch, job["id"], {"running"})
    pid = agent_pid(agent_home)
    assert inotify_fds(pid) == 1  # the follower's watch, on the inotify path
    # the job runs and stays so: only a wake-up from the rank's write can bring this line
    (tmp_path / "go").touch()
    assert await followed.has(lambda text: "first\n" in text) == "started\nfirst\n"
    assert not followed.response.done()
    (tmp_path / "release").touch()
    # the job's end, told by the agent's change stream, ends the follow with the last line
    assert await followed.ended() == "started\nfirst\nsecond\n"
    done = await wait_for(jp_fetch, job["id"], {"succeeded"})
    assert done["state"] == "succeeded"
    await until(lambda: no_inotify(pid))
    # following a finished job reads what it wrote and ends at once
    again = Followed(jp_fetch, job["id"], tail="1")
    assert await again.ended() == "second\n"


async def test_many_lines_written_fast_arrive_whole_and_in_order(jp_fetch: Any) -> None:
    code = (
        "import os\n"
        "rank = os.environ['RANK']\n"
        f"for i in range({MANY}):\n"
        "    print(f'{rank}:{i}:' + 'x' * (i % 97))\n"
    )
    job = await call(jp_fetch, "jobs", "POST", {"code": code, "procs_per_node": 2})
    # followed from its submission: the attempt's folder appears once its ranks start
    followed = Followed(jp_fetch, job["id"])
    lines = (await followed.ended()).splitlines()
    by_rank: dict[str, list[str]] = {"0": [], "1": []}
    for line in lines:
        prefix, _, rest = line.partition("] ")
        assert prefix in ("[rank 0", "[rank 1"), line
        by_rank[prefix[-1]].append(rest)
    for rank, got in by_rank.items():
        assert got == [f"{rank}:{i}:" + "x" * (i % 97) for i in range(MANY)], rank
    assert (await wait_for(jp_fetch, job["id"], {"succeeded", "failed"}))["state"] == "succeeded"


async def test_a_follower_that_goes_away_leaves_no_watch_in_the_agent(
    jp_fetch: Any, agent_home: AgentHome, tmp_path: Path
) -> None:
    job = await call(jp_fetch, "jobs", "POST", {"code": stepped(tmp_path)})
    await wait_for(jp_fetch, job["id"], {"running"})
    pid = agent_pid(agent_home)
    before = open_fds(pid)
    assert "anon_inode:inotify" not in before.values()
    identity = {IDENTITY_HEADER: json.dumps(Identity(ME).to_json())}
    for _ in range(3):
        connected = asyncio.open_unix_connection(agent_home.socket)
        path = f"/mlinfra/api/v1/jobs/{job['id']}/logs?follow=1"
        writer = await follow_raw(connected, path, identity)
        assert inotify_fds(pid) == 1
        # the rank writes nothing more: only the client's leaving can end this follow
        writer.close()
        await writer.wait_closed()
        await until(lambda: no_inotify(pid))
    # and so are the connections: no socket the follows opened is left
    await until(lambda: no_new_sockets(pid, before))
    (tmp_path / "go").touch()
    (tmp_path / "release").touch()
    assert (await wait_for(jp_fetch, job["id"], {"succeeded", "failed"}))["state"] == "succeeded"


async def test_a_browser_that_goes_away_ends_the_agents_follow_at_its_next_line(
    jp_fetch: Any,
    agent_home: AgentHome,
    tmp_path: Path,
    jp_http_port: int,
    jp_base_url: str,
    jp_auth_header: dict[str, str],
) -> None:
    """The server relays the agent's stream: once its own client is gone, the next line the
    agent sends ends the relay, and the agent's follower with it."""
    job = await call(jp_fetch, "jobs", "POST", {"code": stepped(tmp_path)})
    await wait_for(jp_fetch, job["id"], {"running"})
    pid = agent_pid(agent_home)
    connected = asyncio.open_connection("127.0.0.1", jp_http_port)
    path = f"{jp_base_url}mlinfra/api/v1/jobs/{job['id']}/logs?follow=1"
    writer = await follow_raw(connected, path, jp_auth_header)
    assert inotify_fds(pid) == 1
    writer.close()
    await writer.wait_closed()
    (tmp_path / "go").touch()
    await until(lambda: no_inotify(pid))
    (tmp_path / "release").touch()
    assert (await wait_for(jp_fetch, job["id"], {"succeeded", "failed"}))["state"] == "succeeded"


async def follow_raw(
    connected: Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]],
    path: str,
    headers: dict[str, str],
) -> asyncio.StreamWriter:
    """A follow sent by hand on a connection the test can drop, once its first line came."""
    reader, writer = await connected
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    writer.write(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n{lines}\r\n".encode())
    head = await asyncio.wait_for(reader.readuntil(b"started\n"), 60)
    assert head.startswith(b"HTTP/1.1 200"), head
    return writer


async def no_inotify(pid: int) -> bool:
    return inotify_fds(pid) == 0


async def no_new_sockets(pid: int, before: dict[int, str]) -> bool:
    now = open_fds(pid)
    new = {fd: target for fd, target in now.items() if before.get(fd) != target}
    return not any(target.startswith("socket:") for target in new.values())
