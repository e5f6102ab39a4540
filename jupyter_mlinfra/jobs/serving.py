"""The jobs API answered from a ``JobsAPI``: one translation of HTTP for every jobs service.

The local agent answers with its ``LocalJobs``; a Jupyter server in Kubernetes mode with its
``KubernetesJobs`` (in local mode the server forwards to the agent, ``handlers.py``). Same
paths, parameters and JSON everywhere, so every client works with either.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Collection
from typing import Any, Protocol

from ..identity import Identity
from ..json_errors import JSONErrors
from ..models import jobs as wire
from .queries import list_filters, log_options


class JobsAPI(Protocol):
    """Every jobs operation for one caller, answering the API's JSON."""

    async def submit(self, identity: Identity, body: Any) -> tuple[wire.Job, bool]: ...

    async def list(
        self,
        identity: Identity,
        *,
        owner: str,
        states: Collection[str],
        flavor: str,
        queue: str,
        limit: int,
        before: str,
    ) -> wire.JobList: ...

    async def get(self, identity: Identity, job_id: str) -> wire.Job: ...

    async def cancel(self, identity: Identity, job_id: str) -> wire.Job: ...

    async def retry(self, identity: Identity, job_id: str) -> wire.Job: ...

    async def reprioritise(self, identity: Identity, job_id: str, body: Any) -> wire.Job: ...

    async def usage(self, identity: Identity) -> wire.UsageReport: ...

    async def events(self, identity: Identity, job_id: str) -> wire.EventList: ...

    async def result(self, identity: Identity, job_id: str) -> wire.JobResult: ...

    async def queue(self, identity: Identity) -> wire.Queue: ...

    async def logs(
        self, identity: Identity, job_id: str, *, rank: int | None, tail: int | None, follow: bool
    ) -> AsyncIterator[str]: ...


async def answer(handler: JSONErrors, jobs: JobsAPI, identity: Identity, job_id: str = "") -> None:
    """Answer the handler's request for ``identity`` (authenticated by the caller); its method
    and the path's last part pick the call."""
    method = handler.request.method or "GET"
    action = handler.request.path.rstrip("/").rsplit("/", 1)[-1]

    status = 200
    reply: object
    if not job_id:
        if action == "queue":
            reply = await jobs.queue(identity)
        elif action == "usage":
            reply = await jobs.usage(identity)
        elif method == "POST":
            reply, created = await jobs.submit(identity, handler.json_body())
            status = 201 if created else 200
        else:
            reply = await jobs.list(identity, **list_filters(handler.query_argument))
    elif action == "logs":
        options = log_options(handler.query_argument)
        lines = await jobs.logs(
            identity, job_id, rank=options.rank, tail=options.tail, follow=options.follow
        )
        handler.set_header("Content-Type", "text/plain; charset=utf-8")
        await handler.flush()  # headers out now, as set (APIHandler.finish would say JSON)
        async for line in lines:
            handler.write(line)
            if options.follow:
                await handler.flush()
        handler.finish()
        return
    elif action == "retry":
        reply = await jobs.retry(identity, job_id)
    elif action == "events":
        reply = await jobs.events(identity, job_id)
    elif action == "result":
        reply = await jobs.result(identity, job_id)
    elif method == "DELETE":
        reply = await jobs.cancel(identity, job_id)
    elif method == "PATCH":
        reply = await jobs.reprioritise(identity, job_id, handler.json_body())
    else:
        reply = await jobs.get(identity, job_id)
    handler.set_status(status)
    handler.set_header("Content-Type", "application/json")
    handler.finish(json.dumps(reply))
