"""A real JupyterHub for tests, configured by examples/jupyterhub/jupyterhub_config.py:
configurable-http-proxy, local single-user servers with the extension, and the shared local
agent as a hub service.

Everything lives under one temporary folder (hub database, users' homes, the agent's data, the
Jupyter config every server and the agent read), so teardown can find and stop exactly what
this hub started: processes whose command line or working directory lies in that folder.
configurable-http-proxy comes from npm, installed on first use into a cache folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .agents import AgentHome
from .lab_server import free_port
from .optional import need

CHP_VERSION = "5"
START_TIMEOUT_S = 60.0
SERVICE = "mlinfra"


def configurable_http_proxy() -> str:
    """The proxy's executable: on PATH, or installed from npm into a cache folder once."""
    found = shutil.which("configurable-http-proxy")
    if found:
        return found
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    prefix = cache / "jupyter-mlinfra-tests" / f"chp-{CHP_VERSION}"
    binary = prefix / "node_modules" / ".bin" / "configurable-http-proxy"
    if binary.exists():
        return str(binary)
    npm = shutil.which("npm")
    need(bool(npm), "npm is not installed, so configurable-http-proxy cannot be")
    assert npm is not None
    result = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--prefix", str(prefix),
         f"configurable-http-proxy@{CHP_VERSION}"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    need(binary.exists(), f"npm could not install configurable-http-proxy: {result.stderr[-500:]}")
    return str(binary)


EXAMPLE = Path(__file__).parent.parent / "examples" / "jupyterhub" / "jupyterhub_config.py"

TEST_CONFIG = """\
# The example's configuration, with only what a test must change: ports, where state lives,
# the extension's settings, and an admin service through which the test drives the hub.
c = get_config()  # noqa
load_subconfig({example!r})  # noqa
c.JupyterHub.bind_url = "http://127.0.0.1:{port}"
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.JupyterHub.db_url = "sqlite:///{root}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{root}/cookie_secret"
c.JupyterHub.pid_file = "{root}/jupyterhub.pid"
c.ConfigurableHTTPProxy.command = [{chp!r}]
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.pid_file = "{root}/proxy.pid"
c.ConfigurableHTTPProxy.auth_token = {proxy_token!r}
c.Spawner.start_timeout = 60
c.Spawner.http_timeout = 60

[agent] = [s for s in c.JupyterHub.services if s["name"] == {service!r}]
agent["url"] = "http://127.0.0.1:{agent_port}"
agent["environment"] = {environment!r}
c.Spawner.environment = {{**{environment!r}, "JUPYTER_MLINFRA_AGENT_URL": {agent_url!r}}}

{people}
c.JupyterHub.services.append({{"name": "test-admin", "api_token": {admin_token!r}}})
c.JupyterHub.load_roles.append(
    {{"name": "test-admin", "services": ["test-admin"],
      "scopes": ["admin:users", "admin:servers", "tokens"]}}
)
"""


class HubError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


@dataclass
class Hub:
    root: Path
    url: str
    """The proxy's public URL, ending with '/'."""
    admin_token: str
    agent_url: str
    """The shared agent, directly (not through the proxy)."""
    proc: subprocess.Popen[bytes]

    @property
    def agent(self) -> AgentHome:
        """The shared agent's state (``--data-dir $MLINFRA_HUB_STATE/data``), to stop the
        ranks it leaves behind."""
        return AgentHome(self.root)

    def log(self) -> str:
        return (self.root / "hub.log").read_text(errors="replace")

    def request(
        self, method: str, url: str, token: str, body: Any = None, headers: Mapping[str, str] = {}
    ) -> Any:
        """JSON from ``url``; an error answer raises ``HubError`` with its status and body."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Authorization", f"token {token}")
        request.add_header("Content-Type", "application/json")
        for name, value in headers.items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                payload = response.read()
        except urllib.error.HTTPError as error:
            payload = error.read()
            try:
                raise HubError(error.code, json.loads(payload)) from None
            except ValueError:
                raise HubError(error.code, payload.decode(errors="replace")) from None
        return json.loads(payload) if payload else None

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """The hub's REST API, as the test's admin service."""
        return self.request(method, f"{self.url}hub/api/{path}", self.admin_token, body)

    def token_for(self, user: str) -> str:
        """A new API token of ``user``, with all of the user's permissions."""
        return str(self.api("POST", f"users/{user}/tokens", {"note": "test"})["token"])

    def start_server(self, user: str) -> None:
        with contextlib.suppress(HubError):  # 400: already running
            self.api("POST", f"users/{user}/server")
        self._wait(user, ready=True)

    def stop_server(self, user: str) -> None:
        with contextlib.suppress(HubError):
            self.api("DELETE", f"users/{user}/server")
        self._wait(user, ready=False)

    def _wait(self, user: str, *, ready: bool) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            model = self.api("GET", f"users/{user}")
            server = model["servers"].get("")
            if ready and server and server["ready"]:
                return
            if not ready and not server:
                return
            time.sleep(0.2)
        raise TimeoutError(f"{user}'s server not {'up' if ready else 'down'}:\n{self.log()}")

    def mlinfra(self, user: str, token: str, method: str, path: str, body: Any = None) -> Any:
        """``user``'s single-user server's mlinfra API, through the hub's proxy."""
        url = f"{self.url}user/{user}/mlinfra/api/v1/{path}"
        return self.request(method, url, token, body)


def _wait_for_hub(hub: Hub) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if hub.proc.poll() is not None:
            raise RuntimeError(f"jupyterhub exited with {hub.proc.returncode}:\n{hub.log()}")
        try:
            hub.api("GET", "users")
            status = hub.request("GET", f"{hub.agent_url}mlinfra/agent/v1/status", "none")
            raise RuntimeError(f"the shared agent answered a made-up token: {status}")
        except HubError as error:
            if error.status == 401:  # hub and agent both up; the agent refuses the token
                return
        except OSError:  # not listening yet
            pass
        time.sleep(0.2)
    raise TimeoutError(f"jupyterhub did not come up:\n{hub.log()}")


def _ours(root: Path) -> list[int]:
    """Processes started under ``root``: by command line or working directory."""
    mine = []
    marker = str(root)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if marker in cmdline or cwd.startswith(marker):
            mine.append(int(entry.name))
    return mine


SIMPLE_SPAWNER = """\
# No OS accounts for the example's users: every server runs as the hub's own account
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = "{root}/home/{{username}}"
c.Spawner.args = {args!r}
"""

ACCOUNTS = """\
# Hub users with OS accounts of the same name, which LocalProcessSpawner runs their servers as
c.Authenticator.allowed_users = {users!r}
c.Authenticator.admin_users = {admins!r}
c.JupyterHub.load_groups = {{}}
"""


def _people(root: Path, users: Sequence[str], admins: Sequence[str]) -> str:
    if not users:
        args = ["--allow-root"] if os.geteuid() == 0 else []
        return SIMPLE_SPAWNER.format(root=root, args=args)
    root.chmod(0o711)  # users' servers read the config in here, their ranks pass through
    return ACCOUNTS.format(users=set(users), admins=set(admins))


@contextmanager
def running_hub(
    mlinfra_settings: Mapping[str, Any], users: Sequence[str] = (), admins: Sequence[str] = ()
) -> Iterator[Hub]:
    """The example hub, its users' servers and shared agent reading ``mlinfra_settings``.

    With ``users`` (and ``admins`` among them), names of OS accounts (``os_accounts.py``):
    the example as it is, LocalProcessSpawner running each server as its user's account and
    the agent each job's ranks as its owner's, for those hub users, with no groups. Without:
    the example's users (alice in group research, bob in students, carol a hub admin), who
    have no OS accounts, so with the "simple" spawner, every server as the hub's account."""
    chp = configurable_http_proxy()
    root = Path(tempfile.mkdtemp(prefix="mli-hub-", dir="/tmp"))
    config_dir = root / "jupyter-config"
    config_dir.mkdir()
    agent_port = free_port()
    agent_url = f"http://127.0.0.1:{agent_port}/services/{SERVICE}/"
    settings = {**mlinfra_settings, "agent_url": agent_url}
    (config_dir / "jupyter_server_config.json").write_text(json.dumps({"MLInfraApp": settings}))
    environment = {"JUPYTER_CONFIG_DIR": str(config_dir)}
    admin_token = secrets.token_hex(16)
    port = free_port()
    (root / "jupyterhub_config.py").write_text(
        TEST_CONFIG.format(
            example=str(EXAMPLE),
            root=root,
            port=port,
            hub_port=free_port(),
            proxy_api_port=free_port(),
            proxy_token=secrets.token_hex(16),
            chp=chp,
            environment=environment,
            agent_port=agent_port,
            agent_url=agent_url,
            admin_token=admin_token,
            service=SERVICE,
            people=_people(root, users, admins),
        )
    )
    passwords = {  # the example's shared-password login, unused by the tests' tokens
        "MLINFRA_HUB_PASSWORD": secrets.token_hex(8),
        "MLINFRA_HUB_ADMIN_PASSWORD": secrets.token_hex(16),
    }
    log = (root / "hub.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterhub", "-f", str(root / "jupyterhub_config.py")],
        cwd=root,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **passwords, "MLINFRA_HUB_STATE": str(root)},
    )
    hub = Hub(root, f"http://127.0.0.1:{port}/", admin_token, agent_url, proc)
    try:
        _wait_for_hub(hub)
        yield hub
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        hub.agent.stop()  # ranks outlive their agent by design
        for pid in _ours(root):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)
