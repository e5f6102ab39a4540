"""REST handlers for jobs on the Jupyter server: authenticate, authorize, then forward.

The local agent owns jobs; these handlers add what only the server knows (who is calling),
forward method, path, query and body unchanged over the agent's socket, and relay the answer,
streaming followed logs as they come. The agent is started on first use.
"""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from tornado import iostream, web

from ..backends.local.agent_client import AgentUnavailable
from ..backends.local.link import AgentLink, AgentNoAnswer
from ..handlers import API, MLInfraHandler
from ..json_body import check_size
from .serving import Call, JobsAPI, JobsRequest, routes


class JobProxyHandler(MLInfraHandler, JobsRequest):
    """The jobs routes on the Jupyter server (``serving.routes``)."""

    _gone = False
    """The client went away while its answer was relayed."""

    @property
    def link(self) -> AgentLink:
        link: AgentLink = self.settings["mlinfra.agent"]
        return link

    def agent_path(self) -> str:
        """The request path from ``/mlinfra/api/v1`` on (the agent's routes), plus its query."""
        path = self.request.path[self.request.path.index(API) :]
        return f"{path}?{self.request.query}" if self.request.query else path

    async def serve(self, call: Call, **path: str) -> None:
        """Relay the request; (re)start the agent first when none is known or it went away.
        When this server holds a jobs service itself (Kubernetes), it answers instead."""
        check_size(self.request.body or b"", self.max_request_bytes())  # before any agent starts
        jobs: JobsAPI | None = self.settings.get("mlinfra.jobs")
        if jobs is not None:
            await call(self, jobs, self.identity, path)
            return
        if not self.link.ready:
            await self.link.ensure()
        try:
            await self._relay()
        except AgentUnavailable:  # could not connect: the request never reached an agent
            self.link.forget()
            await self.link.ensure()
            await self._relay()

    async def _relay(self) -> None:
        method = self.request.method or "GET"
        body = self.request.body if method in ("POST", "PUT", "PATCH") else None
        streamed = False
        content_type = "application/json"

        def status_line(line: str) -> None:
            nonlocal content_type
            if line.startswith("HTTP/"):
                self.set_status(int(line.split()[1]))
            elif line.lower().startswith("content-type:"):
                content_type = line.split(":", 1)[1].strip()
                self.set_header("Content-Type", content_type)

        def relay(chunk: bytes) -> None:
            nonlocal streamed
            if self._gone:  # drop the agent's stream too, and so its follower and watch
                raise iostream.StreamClosedError()
            streamed = True
            self.write(chunk)
            self.flush()

        is_logs = self.request.path.endswith("/logs")
        response = await self.link.client.fetch(
            method,
            self.agent_path(),
            identity=self.identity,
            body=body,
            header_callback=status_line if is_logs else None,
            streaming_callback=relay if is_logs else None,
            timeout=24 * 3600 if is_logs else 60,
        )
        if self._gone:
            return
        if response.code == 599:  # sent, maybe acted on: never retried, so never doubled
            raise AgentNoAnswer(f"the local agent did not answer: {response.error}")
        if not streamed:
            self.set_status(response.code)
            content_type = response.headers.get("Content-Type", content_type)
            if response.body:
                self.write(response.body)
        self.finish(set_content_type=content_type)  # APIHandler.finish would say JSON

    def on_connection_close(self) -> None:
        self._gone = True
        super().on_connection_close()


job_handlers = list(
    routes(JobProxyHandler, decorate=lambda method: web.authenticated(authorized(method)))
)
