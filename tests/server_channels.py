"""Code run through the server's kernel websocket (``/api/kernels/<id>/channels``), as
JupyterLab runs it: on the server's own connection to the kernel, not a test client's."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Callable
from typing import Any


def request(msg_type: str, content: dict[str, Any]) -> tuple[str, str]:
    """(its msg_id, the websocket text) of a shell request."""
    msg_id = uuid.uuid4().hex
    header = {"msg_id": msg_id, "msg_type": msg_type, "session": uuid.uuid4().hex,
              "username": "test", "version": "5.3", "date": ""}  # fmt: skip
    message = {"channel": "shell", "header": header, "parent_header": {}, "metadata": {},
               "content": content, "buffers": []}  # fmt: skip
    return msg_id, json.dumps(message)


async def execute_through_server(jp_ws_fetch: Any, kernel_id: str, code: str) -> str:
    """Run ``code`` through the server's websocket, so on the server's own connection to the
    kernel (not a test client's); its stdout. First, ``kernel_info`` until its status comes
    back on iopub: the server's iopub subscription is then live, and no output is missed."""
    socket = await jp_ws_fetch("api", "kernels", kernel_id, "channels")

    async def answers(msg_id: str, until: Callable[[list[Any]], bool]) -> list[Any]:
        seen: list[Any] = []
        while not until(seen):
            answer = json.loads(await socket.read_message())
            if answer.get("parent_header", {}).get("msg_id") == msg_id:
                seen.append(answer)
        return seen

    def finished(seen: list[Any]) -> bool:
        """Replied, and idle again (after all its output) on iopub."""
        types = {(m["channel"], m["msg_type"], m["content"].get("execution_state")) for m in seen}
        return {("shell", "execute_reply", None), ("iopub", "status", "idle")} <= types

    try:
        for _ in range(60):
            msg_id, text = request("kernel_info_request", {})
            socket.write_message(text)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(
                    answers(msg_id, lambda seen: any(m["channel"] == "iopub" for m in seen)), 2
                )
                break
        content = {"code": code, "silent": False, "store_history": False,
                   "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}  # fmt: skip
        msg_id, text = request("execute_request", content)
        socket.write_message(text)
        seen = await asyncio.wait_for(answers(msg_id, finished), 60)
    finally:
        socket.close()
    reply = next(m for m in seen if m["msg_type"] == "execute_reply")
    assert reply["content"]["status"] == "ok", reply["content"]
    return "".join(m["content"]["text"] for m in seen if m["msg_type"] == "stream")
