"""Starting flavor kernels over REST as a client does: ``POST kernels`` answers 202 with the
kernel starting, and the kernel is then followed by its id until the start settles."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from .waits import until

KERNELS = ("mlinfra", "api", "v1", "kernels")


async def begin(jp_fetch: Any, body: Any) -> dict[str, Any]:
    """``POST kernels``: the kernel as the answer shows it, starting, with its URL."""
    response = await jp_fetch(*KERNELS, method="POST", body=json.dumps(body))
    kernel: dict[str, Any] = json.loads(response.body)
    assert response.code == 202, response.body
    assert kernel["state"] == "starting" and kernel["since"] is not None, kernel
    assert response.headers["Location"].endswith(f"/mlinfra/api/v1/kernels/{kernel['id']}")
    return kernel


async def settled(jp_fetch: Any, kernel_id: str, timeout: float = 180) -> dict[str, Any]:
    """The kernel once its start has settled (running or failed)."""

    async def done() -> dict[str, Any] | None:
        response = await jp_fetch(*KERNELS, kernel_id)
        kernel: dict[str, Any] = json.loads(response.body)
        return kernel if kernel["state"] != "starting" else None

    found: dict[str, Any] = await until(done, timeout)
    return found


async def start(jp_fetch: Any, body: Any, timeout: float = 180) -> dict[str, Any]:
    """A kernel started and running."""
    kernel = await settled(jp_fetch, (await begin(jp_fetch, body))["id"], timeout)
    assert kernel["state"] == "running", kernel
    return kernel


async def refused(jp_fetch: Any, body: Any, timeout: float = 180) -> tuple[int, dict[str, Any]]:
    """The status and error of a start refused, at once (the request, the catalog) or once
    under way (room, quota, the pod): the same either way to whoever follows the id."""
    try:
        kernel = await begin(jp_fetch, body)
    except HTTPClientError as at_once:
        assert at_once.response is not None
        return at_once.code, json.loads(at_once.response.body)
    failed = await settled(jp_fetch, kernel["id"], timeout)
    if failed["state"] != "failed":
        pytest.fail(f"the start was not refused: {failed}")
    error: dict[str, Any] = failed["error"]
    assert failed["reason"] == error["message"]
    return error["status"], error
