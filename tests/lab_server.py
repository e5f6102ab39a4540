"""Start one real ``jupyter lab`` subprocess for browser and end-to-end tests.

Used by ``tests/ui/conftest.py``; any other suite can reuse :func:`running_lab` the same way.
The server gets its own free port, a random token, and temporary Jupyter config, data and
runtime directories, so nothing from the developer's home leaks in. Extensions installed into
``sys.prefix`` (``share/jupyter/labextensions``, ``etc/jupyter/jupyter_server_config.d``) stay
visible, because Jupyter always searches the environment's own paths too.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0

# JupyterLab asks "Would you like to get notified about official Jupyter news?" in a toast
# whenever this setting is unset, even with ``--LabApp.news_url=None``; answer it up front.
QUIET_USER_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}


@dataclass(frozen=True)
class LabServer:
    """A running ``jupyter lab``: where it listens and how to authenticate."""

    base_url: str
    """Ends with ``/``, e.g. ``http://127.0.0.1:41234/lab-test/``."""
    token: str
    root_dir: Path
    log_path: Path
    pid: int

    def url(self, path: str = "") -> str:
        """``base_url`` joined with a relative ``path`` (no token)."""
        return self.base_url + path.lstrip("/")

    @property
    def auth_header(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    def log(self) -> str:
        """Everything the server has written so far (stdout and stderr)."""
        return self.log_path.read_text(errors="replace")

    def call(self, method: str, path: str, body: Any = None, *, timeout: float = 120) -> Any:
        """One REST request, ``body`` sent as JSON; the decoded answer (None when empty). An
        error status raises ``urllib.error.HTTPError``."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.url(path), data=data, headers=self.auth_header, method=method
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = response.read()
        return json.loads(payload) if payload else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_up(server: LabServer, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(server.url("api/status"), headers=server.auth_header)
    last_error = "no answer yet"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"jupyter lab exited with status {proc.returncode} before answering:\n"
                + server.log()
            )
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    return
                last_error = f"HTTP {response.status}"
        except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
            last_error = str(error)
        time.sleep(0.2)
    raise TimeoutError(
        f"jupyter lab did not answer {server.url('api/status')} within {timeout:.0f} s "
        f"({last_error}):\n" + server.log()
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()  # SIGTERM: jupyter_server shuts its kernels down cleanly
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT_S)


@contextmanager
def running_lab(
    tmp_dir: Path,
    *,
    base_path: str = "/",
    extra_args: Sequence[str] = (),
    extra_env: Mapping[str, str] | None = None,
    timeout: float = START_TIMEOUT_S,
) -> Iterator[LabServer]:
    """Run ``jupyter lab`` until the ``with`` block ends; always stops it (by PID).

    ``tmp_dir`` holds the server's root dir, its Jupyter dirs and its log.
    ``extra_args`` are appended to the command line (e.g. ``--MLInfra.some_trait=...``).
    """
    if not (base_path.startswith("/") and base_path.endswith("/")):
        raise ValueError(f"base_path must start and end with '/': {base_path!r}")
    tmp_dir = Path(tmp_dir)
    root_dir = tmp_dir / "root"
    dirs = {name: tmp_dir / name for name in ("config", "data", "runtime")}
    for path in (root_dir, *dirs.values()):
        path.mkdir(parents=True, exist_ok=True)

    # user_settings_dir defaults to <JUPYTER_CONFIG_DIR>/lab/user-settings
    for name, settings in QUIET_USER_SETTINGS.items():
        settings_file = dirs["config"] / "lab" / "user-settings" / name
        settings_file.parent.mkdir(parents=True, exist_ok=True)
        settings_file.write_text(json.dumps(settings))

    port = free_port()
    token = secrets.token_hex(24)
    env = dict(os.environ)
    env.update(
        JUPYTER_CONFIG_DIR=str(dirs["config"]),
        JUPYTER_DATA_DIR=str(dirs["data"]),
        JUPYTER_RUNTIME_DIR=str(dirs["runtime"]),
        JUPYTER_PLATFORM_DIRS="0",
        PYTHONUNBUFFERED="1",
    )
    env.pop("JUPYTER_PATH", None)
    env.pop("JUPYTER_CONFIG_PATH", None)
    if extra_env:
        env.update(extra_env)

    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--allow-root",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.base_url={base_path}",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root_dir}",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        *extra_args,
    ]
    log_path = tmp_dir / "jupyter-lab.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            command, cwd=root_dir, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        server = LabServer(
            base_url=f"http://127.0.0.1:{port}{base_path}",
            token=token,
            root_dir=root_dir,
            log_path=log_path,
            pid=proc.pid,
        )
        _wait_until_up(server, proc, timeout)
        yield server
    finally:
        _stop(proc)


def patient_heartbeat(client: Any) -> None:
    """Give the kernel 30 s, not jupyter_client's 1 s, to answer each heartbeat of a client
    that no kernel manager owns (started from a connection file). ``wait_for_ready`` takes a
    single missed beat for a dead kernel, and a kernel still starting, or starting again
    after a restart, misses one on a loaded machine. Before ``start_channels``."""
    client.hb_channel.time_to_dead = 30.0


@contextmanager
def running_kernel(server: LabServer) -> Iterator[Callable[..., str]]:
    """A kernel started by ``server`` (POST /api/kernels), as the server would for a notebook;
    yields ``execute(code, kinds=None) -> output text`` (stdout, results and tracebacks), and
    shuts the kernel down through the server after."""
    from jupyter_client.blocking import BlockingKernelClient

    kernel_id = server.call("POST", "api/kernels", {}, timeout=60)["id"]
    client = BlockingKernelClient(
        connection_file=str(server.root_dir.parent / "runtime" / f"kernel-{kernel_id}.json")
    )
    client.load_connection_file()
    patient_heartbeat(client)
    client.start_channels()

    def execute(code: str, kinds: list[str] | None = None) -> str:
        """The code's output text; ``kinds`` gets the type of each message it sent."""
        outputs: list[str] = []

        def keep(msg: dict[str, Any]) -> None:
            if kinds is not None:
                kinds.append(msg["msg_type"])
            content = msg["content"]
            outputs.append(content.get("text") or content.get("data", {}).get("text/plain", ""))
            if msg["msg_type"] == "error":
                outputs.append("\n".join(content["traceback"]))

        reply = client.execute_interactive(code, timeout=120, output_hook=keep)
        assert reply["content"]["status"] == "ok", "".join(outputs) or reply["content"]
        return "".join(outputs)

    try:
        client.wait_for_ready(timeout=60)
        yield execute
    finally:
        client.stop_channels()
        server.call("DELETE", f"api/kernels/{kernel_id}", timeout=60)
