"""The jobs REST API as the tests call it through pytest-jupyter's ``jp_fetch``, whichever
backend runs the jobs (local agents or the cluster fixture)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

TERMINAL = {"succeeded", "failed", "cancelled", "preempted"}


async def call(
    jp_fetch: Any, path: str, method: str = "GET", body: Any = None, **params: str
) -> Any:
    """``path`` below ``/mlinfra/api/v1`` with ``params`` as the query: JSON decoded, other
    answers (logs) as text."""
    kwargs: dict[str, Any] = {"method": method, "params": params}
    if body is not None:
        kwargs["body"] = json.dumps(body)
    elif method == "POST":
        kwargs["body"] = b""
    response = await jp_fetch("mlinfra", "api", "v1", *path.split("/"), **kwargs)
    if response.headers["Content-Type"].startswith("application/json"):
        return json.loads(response.body)
    return response.body.decode()


async def failure(
    jp_fetch: Any, path: str, method: str = "GET", body: Any = None
) -> tuple[int, Any]:
    """The status and JSON error of a call that must fail."""
    with pytest.raises(HTTPClientError) as raised:
        await call(jp_fetch, path, method, body)
    assert raised.value.response is not None
    return raised.value.code, json.loads(raised.value.response.body)


async def wait_for(
    jp_fetch: Any, job_id: str, states: set[str], timeout: float = 60, interval: float = 0.1
) -> Any:
    """The job once it is in one of ``states``; fails the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        job = await call(jp_fetch, f"jobs/{job_id}")
        if job["state"] in states:
            return job
        assert time.monotonic() < deadline, f"job stayed {job['state']}: {job}"
        await asyncio.sleep(interval)
