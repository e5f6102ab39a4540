"""Container logs kept by the fixture's kubelet (stdout and stderr interleaved, one list per
container start so ``previous=true`` works) and the ``pods/log`` subresource that serves them,
with ``container``, ``follow``, ``tailLines``, ``timestamps`` and ``previous``."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

from aiohttp import web

from .container_param import chosen_container
from .errors import bad_request
from .resources import ResourceType
from .store import Store, meta


class ContainerLog:
    """Lines of one container run, with their arrival times; followers wait on new lines."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, bytes]] = []
        self.finished = False
        self._changed = asyncio.Event()

    def append(self, line: bytes) -> None:
        """One line with its newline, or a part of a longer one (kept as written)."""
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        self.lines.append((stamp, line))
        self._wake()

    def finish(self) -> None:
        self.finished = True
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def waiter(self) -> asyncio.Event:
        """Set on the next new line or on finish; take it before reading to miss nothing."""
        return self._changed

    def text(self) -> bytes:
        return b"".join(line for _, line in self.lines)


class LogBook:
    """Every container run's log, by pod uid and container name."""

    def __init__(self) -> None:
        self.runs: dict[str, dict[str, list[ContainerLog]]] = {}

    def start(self, pod_uid: str, container: str) -> ContainerLog:
        log = ContainerLog()
        self.runs.setdefault(pod_uid, {}).setdefault(container, []).append(log)
        return log

    def forget(self, pod_uid: str) -> None:
        for runs in self.runs.pop(pod_uid, {}).values():
            for log in runs:
                log.finish()


class LogEndpoint:
    """GET .../pods/{name}/log, errors worded like the API server's."""

    def __init__(self, store: Store, book: LogBook) -> None:
        self.store = store
        self.book = book

    async def __call__(
        self, request: web.Request, rtype: ResourceType, namespace: str | None, name: str
    ) -> web.StreamResponse:
        pod = self.store.get(rtype, namespace, name)
        query = request.query
        container = chosen_container(pod, query.get("container"), with_init=True)["name"]
        runs = self.book.runs.get(meta(pod)["uid"], {}).get(container) or []
        previous = query.get("previous", "").lower() in ("true", "1")
        if previous and len(runs) < 2:
            raise bad_request(
                f'previous terminated container "{container}" in pod "{name}" not found'
            )
        log = runs[-2] if previous else runs[-1] if runs else None
        if log is None:
            raise bad_request(
                f'container "{container}" in pod "{name}" is waiting to start: ContainerCreating'
            )
        timestamps = query.get("timestamps", "").lower() in ("true", "1")
        tail = query.get("tailLines")
        start = max(0, len(log.lines) - int(tail)) if tail is not None else 0
        follow = query.get("follow", "").lower() in ("true", "1") and not previous
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        sent = start
        while True:
            waiter = log.waiter()
            chunk = log.lines[sent:]
            sent += len(chunk)
            if chunk:
                await response.write(
                    b"".join(
                        (stamp.encode() + b" " if timestamps else b"") + line
                        for stamp, line in chunk
                    )
                )
            if not follow or (log.finished and sent == len(log.lines)):
                break
            await waiter.wait()
        await response.write_eof()
        return response
