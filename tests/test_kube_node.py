"""The per-node launcher of Kubernetes jobs (``launch/node.py``), run as a pod would run it:
from a folder holding only the files of the job's ConfigMap, as real processes, its ranks
exchanging data over MASTER_ADDR, node 0 sending the pulled variables to a real HTTP server
standing in for the API server's Secret endpoint."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from jupyter_mlinfra.backends.kubernetes.attachments import launch_files

EXCHANGE = """
import os, socket
rank, port = int(os.environ["RANK"]), int(os.environ["MASTER_PORT"])
addr = os.environ["MASTER_ADDR"]
if rank == 0:
    with socket.create_server((addr, port)) as server:
        conn, _ = server.accept()
        with conn:
            total = 10 + int(conn.recv(16).decode())
            conn.sendall(str(total).encode())
else:
    import time
    deadline = time.monotonic() + 60  # rank 0 may take long to listen on a loaded machine
    while True:
        try:
            conn = socket.create_connection((addr, port))
            break
        except OSError:
            assert time.monotonic() < deadline, "rank 0 never listened"
            time.sleep(0.05)
    with conn:
        conn.sendall(b"32")
        total = int(conn.recv(16).decode())
print("rank", rank, "world", os.environ["WORLD_SIZE"], "total", total)
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Received:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []


@pytest.fixture
def api() -> Iterator[tuple[str, Received]]:
    received = Received()

    class Handler(BaseHTTPRequestHandler):
        def do_PATCH(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.requests.append(
                {
                    "path": self.path,
                    "auth": self.headers["Authorization"],
                    "type": self.headers["Content-Type"],
                    "body": json.loads(body),
                }
            )
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


def spec_dir(tmp_path: Path, **job: Any) -> Path:
    folder = tmp_path / "spec"
    folder.mkdir()
    for name, text in launch_files().items():
        (folder / name).write_text(text)
    description = {"code": "", "script": "", "args": [], "push_file": "", "pull": [], **job}
    (folder / "job.json").write_text(json.dumps(description))
    return folder


def run_node(spec: Path, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {
        "PATH": "/usr/bin:/bin",
        "MLINFRA_NODES": "1",
        "MLINFRA_NODE_RANK": "0",
        "MLINFRA_PROCS_PER_NODE": "2",
        "MLINFRA_FRAMEWORK": "pytorch",
        "MLINFRA_MASTER_ADDR": "127.0.0.1",
        "MLINFRA_MASTER_PORT": str(free_port()),
        "MLINFRA_THREADS": "4",
        "MLINFRA_TERMINATION_LOG": str(tmp_path / "termination-log"),
    }
    return subprocess.run(
        [sys.executable, str(spec / "node.py"), str(spec), str(tmp_path / "run")],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_ranks_exchange_data_and_node_zero_sends_the_pulled_variables(
    tmp_path: Path, api: tuple[str, Received]
) -> None:
    url, received = api
    spec = spec_dir(tmp_path, code=EXCHANGE, pull=["total"], push_file="push.json")
    (spec / "push.json").write_text(
        json.dumps({"extra": base64.b64encode(cloudpickle.dumps(5)).decode()})
    )
    token = tmp_path / "token"
    token.write_text("scoped-token\n")
    done = run_node(
        spec,
        tmp_path,
        MLINFRA_RESULT_SECRET="mlinfra-abc-1-result",
        MLINFRA_RESULT_NAMESPACE="team-a",
        MLINFRA_RESULT_API=url,
        MLINFRA_RESULT_TOKEN_FILE=str(token),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = sorted(done.stdout.splitlines())
    assert lines == ["[rank 0] rank 0 world 2 total 42", "[rank 1] rank 1 world 2 total 42"]
    (request,) = received.requests
    assert request["path"] == "/api/v1/namespaces/team-a/secrets/mlinfra-abc-1-result"
    assert request["auth"] == "Bearer scoped-token"
    assert request["type"] == "application/merge-patch+json"
    pulled = cloudpickle.loads(base64.b64decode(request["body"]["data"]["pull.pkl"]))
    assert pulled == {"total": 42}


def test_a_failing_rank_fails_the_node_with_its_traceback_as_termination_message(
    tmp_path: Path,
) -> None:
    code = "import os\nif os.environ['RANK'] == '1':\n    raise ValueError('bad shard 7')\n"
    done = run_node(spec_dir(tmp_path, code=code), tmp_path)
    assert done.returncode == 1
    assert "[rank 1] ValueError: bad shard 7" in done.stdout
    message = (tmp_path / "termination-log").read_text()
    assert message.startswith("rank 1 exited with code 1:") and "bad shard 7" in message


def test_second_node_computes_its_own_ranks(tmp_path: Path) -> None:
    code = (
        "import os\nprint(os.environ['RANK'], os.environ['NODE_RANK'], os.environ['PET_NNODES'])\n"
    )
    done = run_node(
        spec_dir(tmp_path, code=code), tmp_path, MLINFRA_NODES="2", MLINFRA_NODE_RANK="1"
    )
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.splitlines()) == ["[rank 2] 2 1 2", "[rank 3] 3 1 2"]
