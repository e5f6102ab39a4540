"""The Python client of the REST API, used by the CLI, magics and widgets.

It finds the server, in this order:

1. an explicit ``url`` (and ``token``);
2. ``JUPYTER_MLINFRA_URL`` and ``JUPYTER_MLINFRA_TOKEN``, which the server extension sets for
   every kernel and terminal it starts;
3. JupyterHub's ``JUPYTERHUB_SERVICE_URL`` and ``JUPYTERHUB_API_TOKEN`` (set in single-user
   servers, hence in their kernels);
4. the newest running Jupyter server of this user (its ``jpserver-*.json`` runtime file).

Standard library only at run time, so it imports fast inside kernels: what each call answers
is typed by the API's wire models (``models/``), which only type checkers import. Tokens are
sent as an ``Authorization`` header (JupyterHub rejects them in URLs) and never printed.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from .transport import (
    IDENTITY_HEADER,
    Answer,
    StreamedLines,
    open_connection,
    wait_without_timeout,
)

if TYPE_CHECKING:
    from .models import catalog as api_catalog
    from .models import jobs as api_jobs
    from .models import kernels as api_kernels

ENV_URL = "JUPYTER_MLINFRA_URL"
ENV_TOKEN = "JUPYTER_MLINFRA_TOKEN"
API_PATH = "mlinfra/api/v1"


class ClientError(Exception):
    """An error answer from the server, or no server to talk to; the message is user-facing."""

    def __init__(self, message: str, *, status: int | None = None, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.field = field


@dataclass(frozen=True)
class Connection:
    url: str
    """The Jupyter server's base URL, ending with '/'."""
    token: str = field(default="", repr=False)
    source: str = "explicit"
    socket: str = ""
    """The local agent's Unix socket, when talking to it directly (no Jupyter server)."""
    identity: str = ""
    """The caller, as the agent's identity header; only the agent's owner can send it."""


def discover(
    url: str | None = None, token: str | None = None, environ: Mapping[str, str] | None = None
) -> Connection:
    environ = os.environ if environ is None else environ
    if url:
        return Connection(_slash(url), token or environ.get(ENV_TOKEN, ""), "explicit")
    if environ.get(ENV_URL):
        return Connection(_slash(environ[ENV_URL]), token or environ.get(ENV_TOKEN, ""), ENV_URL)
    if environ.get("JUPYTERHUB_SERVICE_URL") and environ.get("JUPYTERHUB_API_TOKEN"):
        hub_url = environ["JUPYTERHUB_SERVICE_URL"]
        return Connection(_slash(hub_url), token or environ["JUPYTERHUB_API_TOKEN"], "JupyterHub")
    running = _newest_running_server()
    if running is not None:
        return Connection(_slash(running["url"]), token or running.get("token", ""), "runtime file")
    raise ClientError(
        "no Jupyter server found: start `jupyter lab`, or give its URL and token "
        f"(--url/--token, or {ENV_URL} and {ENV_TOKEN})"
    )


def _slash(url: str) -> str:
    return url if url.endswith("/") else url + "/"


def _newest_running_server() -> dict[str, Any] | None:
    from jupyter_server.serverapp import list_running_servers

    servers = [s for s in list_running_servers() if s.get("url")]
    return max(servers, key=lambda s: s.get("pid", 0)) if servers else None


class MLInfraClient:
    def __init__(self, connection: Connection | None = None, *, timeout: float = 30) -> None:
        self.connection = connection or discover()
        self.timeout = timeout

    def _send(
        self,
        method: str,
        path: str,
        query: Mapping[str, Any] | None,
        body: Any,
        *,
        endless: bool = False,
    ) -> Answer:
        """The answer, begun; the caller closes it. ``endless``: once the answer has begun,
        its lines may be long in coming (``wait_without_timeout``)."""
        target = urllib.parse.urljoin(self.connection.url, f"{API_PATH}/{path}")
        target = urllib.parse.urlsplit(target).path
        if query:
            pairs = {k: str(v).lower() if isinstance(v, bool) else v for k, v in query.items()}
            target += "?" + urllib.parse.urlencode(
                {k: v for k, v in pairs.items() if v is not None}
            )
        # one request per connection: nothing is left open between calls
        headers = {"Accept": "application/json", "Connection": "close"}
        if self.connection.token:
            headers["Authorization"] = f"token {self.connection.token}"
        if self.connection.identity:
            headers[IDENTITY_HEADER] = self.connection.identity
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn = open_connection(self.connection.url, self.connection.socket, self.timeout)
        try:
            conn.request(method, target, body=data, headers=headers)
            sock = conn.sock  # the response takes it over: the connection lets go of it
            response = conn.getresponse()
            if endless and sock is not None:
                wait_without_timeout(sock)
        except OSError as error:
            conn.close()
            where = self.connection.socket or self.connection.url
            raise ClientError(f"cannot reach the Jupyter server at {where}: {error}") from None
        if response.status >= 400:
            payload = response.read()
            conn.close()
            raise _error_from(response.status, response.reason, payload)
        return Answer(conn, response, sock)

    def request(
        self, method: str, path: str, *, query: Mapping[str, Any] | None = None, body: Any = None
    ) -> Any:
        conn, response, _ = self._send(method, path, query, body)
        try:
            payload = response.read()
        finally:
            response.close()
            conn.close()  # a kept-alive socket would otherwise leak until garbage collection
        return json.loads(payload) if payload else None

    def stream(
        self, path: str, *, query: Mapping[str, Any] | None = None, endless: bool = False
    ) -> StreamedLines:
        """Lines of a streamed answer as the server sends them; ``endless``: see ``_send``."""
        return StreamedLines(lambda: self._send("GET", path, query, None, endless=endless))

    def flavors(self, *, include_all: bool = False) -> api_catalog.FlavorList:
        query = {"all": include_all or None}
        return cast("api_catalog.FlavorList", self.request("GET", "flavors", query=query))

    def flavor(self, name: str) -> api_catalog.Flavor:
        path = f"flavors/{urllib.parse.quote(name)}"
        return cast("api_catalog.Flavor", self.request("GET", path))

    def environments(self) -> api_catalog.EnvironmentList:
        return cast("api_catalog.EnvironmentList", self.request("GET", "environments"))

    def capacity(self) -> api_catalog.Capacity:
        return cast("api_catalog.Capacity", self.request("GET", "capacity"))

    def whoami(self) -> api_catalog.Whoami:
        return cast("api_catalog.Whoami", self.request("GET", "whoami"))


class JobsClient(MLInfraClient):
    """The jobs part of the API, for the CLI, magics and widgets."""

    def submit(self, submission: api_jobs.JobSubmission) -> api_jobs.Job:
        return cast("api_jobs.Job", self.request("POST", "jobs", body=dict(submission)))

    def jobs(self, **filters: Any) -> api_jobs.JobList:
        """A page of jobs; ``filters`` are ``GET jobs``'s query parameters (``JobsQuery``)."""
        return cast("api_jobs.JobList", self.request("GET", "jobs", query=filters))

    def job(self, job_id: str) -> api_jobs.Job:
        return cast("api_jobs.Job", self.request("GET", f"jobs/{_job_id(job_id)}"))

    def cancel(self, job_id: str) -> api_jobs.Job:
        return cast("api_jobs.Job", self.request("DELETE", f"jobs/{_job_id(job_id)}"))

    def retry(self, job_id: str) -> api_jobs.Job:
        return cast("api_jobs.Job", self.request("POST", f"jobs/{_job_id(job_id)}/retry"))

    def events(self, job_id: str) -> list[api_jobs.Event]:
        listing = cast("api_jobs.EventList", self.request("GET", f"jobs/{_job_id(job_id)}/events"))
        return listing["events"]

    def queue(self) -> api_jobs.Queue:
        return cast("api_jobs.Queue", self.request("GET", "queue"))

    def usage(self) -> api_jobs.UsageReport:
        """Admins: every user's and group's usage against their quotas."""
        return cast("api_jobs.UsageReport", self.request("GET", "usage"))

    def set_priority(self, job_id: str, priority: str) -> api_jobs.Job:
        """Admins: move a job to another priority class."""
        body: api_jobs.Reprioritisation = {"priority": priority}
        return cast("api_jobs.Job", self.request("PATCH", f"jobs/{_job_id(job_id)}", body=body))

    def logs(
        self, job_id: str, *, rank: int | None = None, tail: int | None = None, follow: bool = False
    ) -> StreamedLines:
        """The job's log (``tail``: its last lines), or with ``follow`` its lines as they come
        until the attempt ends; ``close()`` stops following at once."""
        query = {"rank": rank, "tail": tail, "follow": follow or None}
        return self.stream(f"jobs/{_job_id(job_id)}/logs", query=query, endless=follow)

    def result(self, job_id: str) -> dict[str, Any]:
        """The variables the job pulled back (needs cloudpickle, as pushing does)."""
        import base64

        import cloudpickle

        answer = cast("api_jobs.JobResult", self.request("GET", f"jobs/{_job_id(job_id)}/result"))
        encoded = answer["variables"]
        if not encoded:
            return {}
        variables: dict[str, Any] = cloudpickle.loads(base64.b64decode(encoded))
        return variables


class KernelsClient(MLInfraClient):
    """The flavor kernels part of the API, for the notebook widgets."""

    def kernels(self) -> api_kernels.KernelList:
        return cast("api_kernels.KernelList", self.request("GET", "kernels"))

    def start_kernel(
        self, environment: str | None = None, flavor: str | None = None, path: str | None = None
    ) -> api_kernels.Kernel:
        """Start a kernel of ``environment`` on ``flavor`` (each defaults to the caller's): the
        server answers at once with the kernel starting (``watch.wait_kernel`` follows it)."""
        body: api_kernels.KernelStart = {}
        if environment is not None:
            body["environment"] = environment
        if flavor is not None:
            body["flavor"] = flavor
        if path is not None:
            body["path"] = path
        return cast("api_kernels.Kernel", self.request("POST", "kernels", body=body))

    def kernel(self, kernel_id: str) -> api_kernels.Kernel:
        return cast("api_kernels.Kernel", self.request("GET", f"kernels/{_quoted(kernel_id)}"))

    def stop_kernel(self, kernel_id: str) -> api_kernels.Kernel:
        """Shut the kernel down, giving its CPUs and accelerators back."""
        return cast("api_kernels.Kernel", self.request("DELETE", f"kernels/{_quoted(kernel_id)}"))

    def switch_kernel(self, kernel_id: str, flavor: str) -> api_kernels.Kernel:
        """Restart the kernel (same id) on another flavor."""
        body: api_kernels.KernelSwitch = {"flavor": flavor}
        path = f"kernels/{_quoted(kernel_id)}"
        return cast("api_kernels.Kernel", self.request("PATCH", path, body=body))


def _quoted(kernel_id: str) -> str:
    return urllib.parse.quote(kernel_id, safe="")


def encode_push(variables: Mapping[str, Any]) -> dict[str, str]:
    """Variables for a submission's ``push``: name -> base64 of the value's cloudpickle."""
    import base64

    import cloudpickle

    return {name: base64.b64encode(cloudpickle.dumps(v)).decode() for name, v in variables.items()}


def _job_id(text: str) -> str:
    """Job ids go into URL paths: accept exactly what the server issues."""
    if len(text) != 12 or any(c not in "0123456789abcdef" for c in text):
        raise ClientError(f"not a job id: {text!r} (12 hexadecimal digits)", field="id")
    return text


def _error_from(status: int, reason: str, payload: bytes) -> ClientError:
    try:
        body = json.loads(payload or b"{}")
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    message = body.get("message") or f"HTTP {status}: {reason}"
    return ClientError(str(message), status=status, field=body.get("field"))
