"""The jobs API answered from a ``JobsAPI``: one route table, one translation of HTTP, for
every jobs service.

The local agent answers with its ``LocalJobs``; a Jupyter server in Kubernetes mode with its
``KubernetesJobs`` (in local mode the server forwards to the agent, ``handlers.py``). Both build
their tornado handlers from ``routes`` below, over the operations the wire models declare
(``models.jobs.OPERATIONS``): the router picks the operation, whose call is the service's method,
with no second dispatch on the path or the method. Same paths, parameters and JSON everywhere,
so every client works with either.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, Awaitable, Callable, Collection, Iterator
from typing import Any, Protocol, TypeVar, cast

from ..identity import Identity
from ..json_errors import JSONErrors
from ..models import jobs as wire
from ..models.operations import route
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
    ) -> AsyncGenerator[str, None]: ...


class JobsRequest(JSONErrors):
    """A handler of a jobs route, on whichever server: it answers its operation's call."""

    _streaming: asyncio.Task[None] | None = None

    async def serve(self, call: Call, **path: str) -> None:
        """Answer ``call``; each server says for whom, and with which service."""
        raise NotImplementedError

    async def stream(self, lines: AsyncGenerator[str, None]) -> None:
        """Send ``lines`` as they come, each flushed. A client that goes away ends the stream
        at once, not at a next line that may be long in coming: the generator is cancelled
        where it waits, and closed, so that what it holds (watches, streams) goes with it."""
        streaming = asyncio.ensure_future(self._send(lines))
        self._streaming = streaming
        try:
            await asyncio.wait([streaming])
        finally:
            self._streaming = None
            streaming.cancel()
        if not streaming.cancelled():
            streaming.result()

    async def _send(self, lines: AsyncGenerator[str, None]) -> None:
        async with contextlib.aclosing(lines):
            async for line in lines:
                self.write(line)
                await self.flush()

    def on_connection_close(self) -> None:
        if self._streaming is not None:
            self._streaming.cancel()
        super().on_connection_close()


Call = Callable[[JobsRequest, JobsAPI, Identity, dict[str, str]], Awaitable[None]]
"""One operation: the handler (its body, query, headers), the service, the caller, the path's
ids."""


def reply(handler: JSONErrors, body: object, status: int = 200) -> None:
    handler.set_status(status)
    handler.set_header("Content-Type", "application/json")
    handler.finish(json.dumps(body))


async def _list(handler: JobsRequest, jobs: JobsAPI, identity: Identity, _: dict[str, str]) -> None:
    reply(handler, await jobs.list(identity, **list_filters(handler.query_argument)))


async def _submit(
    handler: JobsRequest, jobs: JobsAPI, identity: Identity, _: dict[str, str]
) -> None:
    job, created = await jobs.submit(identity, handler.json_body())
    reply(handler, job, 201 if created else 200)


async def _get(
    handler: JobsRequest, jobs: JobsAPI, identity: Identity, path: dict[str, str]
) -> None:
    reply(handler, await jobs.get(identity, path["job_id"]))


async def _cancel(
    handler: JobsRequest, jobs: JobsAPI, identity: Identity, path: dict[str, str]
) -> None:
    reply(handler, await jobs.cancel(identity, path["job_id"]))


async def _reprioritise(
    handler: JobsRequest, jobs: JobsAPI, identity: Identity, path: dict[str, str]
) -> None:
    reply(handler, await jobs.reprioritise(identity, path["job_id"], handler.json_body()))


async def _retry(
    handler: JobsRequest, jobs: JobsAPI, identity: Identity, path: dict[str, str]
) -> None:
    reply(handler, await jobs.retry(identity, path["job_id"]))


async def _logs(
    handler: JobsRequest, jobs: JobsAPI, identity: Identity, path: dict[str, str]
) -> None:
    options = log_options(handler.query_argument)
    lines = await jobs.logs(
        identity, path["job_id"], rank=options.rank, tail=options.tail, follow=options.follow
    )
    handler.set_header("Content-Type", "text/plain; charset=utf-8")
    await handler.flush()  # headers out now, as set (APIHandler.finish would say JSON)
    if options.follow:
        await handler.stream(lines)
    else:
        async with contextlib.aclosing(lines):
            async for line in lines:
                handler.write(line)
    handler.finish()


async def _events(
    handler: JobsRequest, jobs: JobsAPI, identity: Identity, path: dict[str, str]
) -> None:
    reply(handler, await jobs.events(identity, path["job_id"]))


async def _result(
    handler: JobsRequest, jobs: JobsAPI, identity: Identity, path: dict[str, str]
) -> None:
    reply(handler, await jobs.result(identity, path["job_id"]))


async def _queue(
    handler: JobsRequest, jobs: JobsAPI, identity: Identity, _: dict[str, str]
) -> None:
    reply(handler, await jobs.queue(identity))


async def _usage(
    handler: JobsRequest, jobs: JobsAPI, identity: Identity, _: dict[str, str]
) -> None:
    reply(handler, await jobs.usage(identity))


CALLS: dict[str, Call] = {
    "listJobs": _list,
    "submitJob": _submit,
    "getJob": _get,
    "cancelJob": _cancel,
    "reprioritiseJob": _reprioritise,
    "retryJob": _retry,
    "getJobLogs": _logs,
    "getJobEvents": _events,
    "getJobResult": _result,
    "getQueue": _queue,
    "getUsage": _usage,
}
"""Each operation of ``models.jobs.OPERATIONS``, by its operationId."""

Method = Callable[..., Any]
Handler = TypeVar("Handler", bound=JobsRequest)


def routes(
    base: type[Handler], decorate: Callable[[Method], Method] = lambda method: method
) -> Iterator[tuple[str, type[Handler]]]:
    """The jobs routes: for each path, a subclass of ``base`` whose HTTP methods serve that
    path's operations (``decorate`` wraps each: the Jupyter server authenticates and
    authorizes there)."""
    by_path: dict[str, dict[str, Method]] = {}
    for op in wire.OPERATIONS:
        by_path.setdefault(op.path, {})[op.method] = decorate(_method(CALLS[op.operation_id]))
    for path, methods in by_path.items():
        name = "".join(part.strip("{}").title() for part in path.split("/")) + "Handler"
        yield route(path), cast(type[Handler], type(name.replace("_", ""), (base,), methods))


def _method(call: Call) -> Method:
    async def method(self: JobsRequest, **path: str) -> None:
        await self.serve(call, **path)

    method.__name__ = method.__qualname__ = call.__name__.lstrip("_")
    return method
