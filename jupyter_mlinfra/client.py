"""The Python client of the REST API, used by the CLI, magics and widgets.

It finds the server, in this order:

1. an explicit ``url`` (and ``token``);
2. ``JUPYTER_MLINFRA_URL`` and ``JUPYTER_MLINFRA_TOKEN``, which the server extension sets for
   every kernel and terminal it starts;
3. JupyterHub's ``JUPYTERHUB_SERVICE_URL`` and ``JUPYTERHUB_API_TOKEN`` (set in single-user
   servers, hence in their kernels);
4. the newest running Jupyter server of this user (its ``jpserver-*.json`` runtime file).

Standard library only, so it imports fast inside kernels. Tokens are sent as an
``Authorization`` header (JupyterHub rejects them in URLs) and never printed.
"""

from __future__ import annotations

import http.client
import json
import os
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .transport import open_connection, stream_lines

ENV_URL = "JUPYTER_MLINFRA_URL"
ENV_TOKEN = "JUPYTER_MLINFRA_TOKEN"
API_PATH = "mlinfra/api/v1"
IDENTITY_HEADER = "X-MLInfra-Identity"


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
        self, method: str, path: str, query: Mapping[str, Any] | None, body: Any
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """The open connection and its response; the caller closes both."""
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
            response = conn.getresponse()
        except OSError as error:
            conn.close()
            where = self.connection.socket or self.connection.url
            raise ClientError(f"cannot reach the Jupyter server at {where}: {error}") from None
        if response.status >= 400:
            payload = response.read()
            conn.close()
            raise _error_from(response.status, response.reason, payload)
        return conn, response

    def request(
        self, method: str, path: str, *, query: Mapping[str, Any] | None = None, body: Any = None
    ) -> Any:
        conn, response = self._send(method, path, query, body)
        try:
            payload = response.read()
        finally:
            response.close()
            conn.close()  # a kept-alive socket would otherwise leak until garbage collection
        return json.loads(payload) if payload else None

    def stream(self, path: str, *, query: Mapping[str, Any] | None = None) -> Iterator[str]:
        """Lines of a streamed answer (followed logs) as the server sends them."""
        conn, response = self._send("GET", path, query, None)
        try:
            yield from stream_lines(response)
        finally:
            response.close()
            conn.close()

    def flavors(self, *, include_all: bool = False) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", "flavors", query={"all": include_all or None})
        return result

    def flavor(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", f"flavors/{urllib.parse.quote(name)}")
        return result

    def environments(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", "environments")
        return result

    def capacity(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", "capacity")
        return result

    def whoami(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", "whoami")
        return result


class JobsClient(MLInfraClient):
    """The jobs part of the API, for the CLI, magics and widgets."""

    def submit(self, submission: Mapping[str, Any]) -> dict[str, Any]:
        job: dict[str, Any] = self.request("POST", "jobs", body=dict(submission))
        return job

    def jobs(self, **filters: Any) -> dict[str, Any]:
        page: dict[str, Any] = self.request("GET", "jobs", query=filters)
        return page

    def job(self, job_id: str) -> dict[str, Any]:
        job: dict[str, Any] = self.request("GET", f"jobs/{_job_id(job_id)}")
        return job

    def cancel(self, job_id: str) -> dict[str, Any]:
        job: dict[str, Any] = self.request("DELETE", f"jobs/{_job_id(job_id)}")
        return job

    def retry(self, job_id: str) -> dict[str, Any]:
        job: dict[str, Any] = self.request("POST", f"jobs/{_job_id(job_id)}/retry")
        return job

    def events(self, job_id: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = self.request("GET", f"jobs/{_job_id(job_id)}/events")[
            "events"
        ]
        return events

    def queue(self) -> dict[str, Any]:
        queue: dict[str, Any] = self.request("GET", "queue")
        return queue

    def usage(self) -> dict[str, Any]:
        """Admins: every user's and group's usage against their quotas."""
        report: dict[str, Any] = self.request("GET", "usage")
        return report

    def set_priority(self, job_id: str, priority: str) -> dict[str, Any]:
        """Admins: move a job to another priority class."""
        path = f"jobs/{_job_id(job_id)}"
        job: dict[str, Any] = self.request("PATCH", path, body={"priority": priority})
        return job

    def logs(
        self, job_id: str, *, rank: int | None = None, tail: int | None = None, follow: bool = False
    ) -> Iterator[str]:
        query = {"rank": rank, "tail": tail, "follow": follow or None}
        return self.stream(f"jobs/{_job_id(job_id)}/logs", query=query)

    def result(self, job_id: str) -> dict[str, Any]:
        """The variables the job pulled back (needs cloudpickle, as pushing does)."""
        import base64

        import cloudpickle

        encoded = self.request("GET", f"jobs/{_job_id(job_id)}/result")["variables"]
        if not encoded:
            return {}
        variables: dict[str, Any] = cloudpickle.loads(base64.b64decode(encoded))
        return variables


class KernelsClient(MLInfraClient):
    """The flavor kernels part of the API, for the notebook widgets."""

    def kernels(self) -> dict[str, Any]:
        listing: dict[str, Any] = self.request("GET", "kernels")
        return listing

    def start_kernel(
        self, environment: str | None = None, flavor: str | None = None, path: str | None = None
    ) -> dict[str, Any]:
        """Start a kernel of ``environment`` on ``flavor`` (each defaults to the caller's)."""
        body = {"environment": environment, "flavor": flavor, "path": path}
        kernel: dict[str, Any] = self.request(
            "POST", "kernels", body={k: v for k, v in body.items() if v is not None}
        )
        return kernel

    def stop_kernel(self, kernel_id: str) -> dict[str, Any]:
        """Shut the kernel down, giving its CPUs and accelerators back."""
        kernel: dict[str, Any] = self.request("DELETE", f"kernels/{_quoted(kernel_id)}")
        return kernel

    def switch_kernel(self, kernel_id: str, flavor: str) -> dict[str, Any]:
        """Restart the kernel (same id) on another flavor."""
        path = f"kernels/{_quoted(kernel_id)}"
        kernel: dict[str, Any] = self.request("PATCH", path, body={"flavor": flavor})
        return kernel


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
