"""A job store the local agent cannot use (damaged, another program's, a newer release's):
the API says why in one line (503), and the server does not start the agent again on every
request while it backs off."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .agents import AgentHome


def damaged(path: Path) -> None:
    path.write_bytes(b"this is not a database, it only lies where one should be\n" * 100)


def foreign(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")


def newer(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 999")


@pytest.mark.parametrize(
    ("spoil", "words"),
    [
        (damaged, "cannot be used: file is not a database"),
        (foreign, "holds tables of something else (customers)"),
        (newer, "has schema version 999, newer than this jupyter-mlinfra understands"),
    ],
)
async def test_an_unusable_store_is_said_in_one_line_and_not_retried_at_once(
    jp_fetch: Any, agent_home: AgentHome, spoil: Callable[[Path], None], words: str
) -> None:
    agent_home.data_dir.mkdir(parents=True)
    store = agent_home.data_dir / "jobs.sqlite"
    spoil(store)
    answers = []
    for path in ("jobs", "queue", "jobs"):
        response = await jp_fetch("mlinfra", "api", "v1", path, raise_error=False)
        assert response.code == 503, response.body
        answers.append(json.loads(response.body))
    first = answers[0]["message"]
    assert first.startswith(
        f"the local agent exited at start: jupyter mlinfra agent: job store {store}"
    )
    assert words in first
    assert "\n" not in first and "Traceback" not in first
    for later in answers[1:]:  # the same reason, without starting another agent
        assert later["message"].startswith(first + " (not started again for ")
    said = (agent_home.data_dir / "agent.log").read_text().splitlines()
    assert [line for line in said if "job store" in line] == [first.split(": ", 1)[1]]
    assert not any("Traceback" in line for line in said)
    assert agent_home.agent_pids() == []
