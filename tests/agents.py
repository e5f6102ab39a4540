"""Test helpers around a real local agent: where it lives, and stopping it and its ranks.

Ranks outlive the agent by design, so a test that stops an agent also has to stop the rank
processes it started: ``AgentHome.stop`` reads their pids from the store and kills their
process groups.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jupyter_mlinfra.backends.local.agent_client import agent_status
from jupyter_mlinfra.backends.local.runner import is_alive, process_start_time


@dataclass
class AgentHome:
    root: Path

    @property
    def socket(self) -> str:
        return str(self.root / "agent.sock")

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def settings(self) -> dict[str, Any]:
        """MLInfraApp settings that point a server at this agent."""
        return {
            "agent_socket": self.socket,
            "data_dir": str(self.data_dir),
            "agent_idle_timeout": 0,
        }

    def status(self) -> dict[str, Any] | None:
        return agent_status(self.socket)

    def rank_pids(self) -> list[tuple[int, int]]:
        """(pid, start time) of every rank the store knows, whatever its state."""
        path = self.data_dir / "jobs.sqlite"
        if not path.exists():
            return []
        with contextlib.closing(sqlite3.connect(path)) as db:
            try:
                rows = db.execute("SELECT pid, start_time FROM ranks").fetchall()
            except sqlite3.DatabaseError:  # a store a test spoiled: no agent ran ranks from it
                return []
            return [(int(p), int(t)) for p, t in rows]

    def live_ranks(self) -> list[int]:
        return [pid for pid, started in self.rank_pids() if is_alive(pid, started)]

    def agent_pids(self) -> list[int]:
        """Agents serving this home's socket, found by command line: also one still starting,
        which cannot answer on the socket yet."""
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                words = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"agent" in words and self.socket.encode() in words:
                pids.append(int(entry.name))
        return pids

    def kill_agent(self, signum: signal.Signals = signal.SIGTERM) -> None:
        pids = self.agent_pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(
            process_start_time(pid) is not None for pid in pids
        ):
            time.sleep(0.05)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        self.kill_agent()
        for pid, started in self.rank_pids():
            if is_alive(pid, started):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)


@contextmanager
def private_agent(prefix: str = "mli-") -> Iterator[AgentHome]:
    """A home for a private agent under a short /tmp path (Unix socket paths are limited);
    its agent and every rank it started are stopped, and the home removed, afterwards."""
    home = AgentHome(Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp")))
    try:
        yield home
    finally:
        home.stop()
        shutil.rmtree(home.root, ignore_errors=True)
