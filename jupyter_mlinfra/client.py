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

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

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
        "no Jupyter server found: start `jupyter lab`, or pass --url and --token "
        f"(or set {ENV_URL} and {ENV_TOKEN}), or use --local"
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

    def request(
        self, method: str, path: str, *, query: Mapping[str, Any] | None = None, body: Any = None
    ) -> Any:
        url = urllib.parse.urljoin(self.connection.url, f"{API_PATH}/{path}")
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        headers = {"Accept": "application/json"}
        if self.connection.token:
            headers["Authorization"] = f"token {self.connection.token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as error:
            raise _error_from(error) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise ClientError(
                f"cannot reach the Jupyter server at {self.connection.url}: {reason}"
            ) from None
        return json.loads(payload) if payload else None

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


def _error_from(error: urllib.error.HTTPError) -> ClientError:
    try:
        body = json.loads(error.read() or b"{}")
    except ValueError:
        body = {}
    message = body.get("message") or f"HTTP {error.code}: {error.reason}"
    return ClientError(str(message), status=error.code, field=body.get("field"))
