"""The CLI and the client against one real ``jupyter lab`` subprocess, as a user would run them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jupyter_mlinfra.client import Connection, KernelsClient
from jupyter_mlinfra.watch import wait_kernel

from .conftest import ME, TEST_CATALOG, write_fake_nvidia_smi
from .lab_server import LabServer, running_kernel, running_lab

SERVER_CONFIG = {
    "MLInfraApp": {
        **TEST_CATALOG,
        "groups": {"gpu-users": [ME]},
        "user_quotas": {ME: {"max_gpus": 1}},
    }
}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    tmp = tmp_path_factory.mktemp("cli-lab")
    (tmp / "config").mkdir()
    (tmp / "config" / "jupyter_server_config.json").write_text(json.dumps(SERVER_CONFIG))
    fake_bin = tmp / "bin"
    fake_bin.mkdir()
    write_fake_nvidia_smi(fake_bin, ["A100-SXM4-40GB", "A100-SXM4-40GB"])
    path = f"{fake_bin}{os.pathsep}{os.environ['PATH']}"
    with running_lab(tmp, base_path="/lab-test/", extra_env={"PATH": path}) as server:
        yield server


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any way of finding a server, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("JUPYTER_MLINFRA_", "JUPYTERHUB_", "JUPYTER_RUNTIME_DIR"))
    }
    env["JUPYTER_RUNTIME_DIR"] = "/nonexistent-runtime-dir"
    env.update(extra)
    return env


def mlinfra(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``jupyter mlinfra ...`` exactly as typed in a terminal (through jupyter's dispatch)."""
    jupyter = Path(sys.executable).with_name("jupyter")
    return subprocess.run(
        [str(jupyter), "mlinfra", *args], env=env, capture_output=True, text=True, timeout=60
    )


def rest(lab: LabServer, path: str, method: str = "GET", body: Any = None) -> Any:
    request = urllib.request.Request(
        lab.url(f"mlinfra/api/v1/{path}"),
        method=method,
        headers={**lab.auth_header, "Content-Type": "application/json"},
        data=None if body is None else json.dumps(body).encode(),
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def test_server_extension_is_enabled_by_installing_the_package() -> None:
    jupyter = Path(sys.executable).with_name("jupyter")
    result = subprocess.run(
        [str(jupyter), "server", "extension", "list"], capture_output=True, text=True, timeout=60
    )
    output = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout + result.stderr)  # drop colours
    assert re.search(r"^\s+jupyter_mlinfra enabled$", output, re.MULTILINE), output
    assert re.search(r"^\s+jupyter_mlinfra [0-9.]+ OK$", output, re.MULTILINE), output


def test_flavors_table_and_json_with_an_explicit_url(lab: LabServer) -> None:
    env = clean_env()
    table = mlinfra("flavors", "--url", lab.base_url, "--token", lab.token, env=env)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == [
        "NAME",
        "ACCELERATOR",
        "CPU",
        "MEMORY",
        "TYPE",
        "$/HOUR",
        "AVAILABLE",
        "NOW",
    ]
    assert lines[1].startswith("cpu *")
    assert "1 × A100" in lines[2] and "1.50" in lines[2] and "yes: " in lines[2]
    assert "2 of 2 A100 free" in lines[2]
    assert len(lines) == 3  # a100x4 belongs to somebody else

    as_json = mlinfra("flavors", "--json", "--url", lab.base_url, "--token", lab.token, env=env)
    assert json.loads(as_json.stdout) == rest(lab, "flavors")


def test_finds_the_server_from_the_variables_the_extension_sets(lab: LabServer) -> None:
    env = clean_env(JUPYTER_MLINFRA_URL=lab.base_url, JUPYTER_MLINFRA_TOKEN=lab.token)
    result = mlinfra("whoami", env=env)
    assert result.returncode == 0, result.stderr
    rows = dict(line.split(None, 1) for line in result.stdout.splitlines()[1:] if " " in line)
    assert rows["user"] == ME
    assert rows["groups"] == "gpu-users"
    assert rows["gpus"] == "0 of 1"  # the user's own quota wins over the group's
    assert rows["priorities"] == "normal"  # the default class only: nothing granted


def test_finds_the_server_from_jupyterhub_variables(lab: LabServer) -> None:
    env = clean_env(JUPYTERHUB_SERVICE_URL=lab.base_url, JUPYTERHUB_API_TOKEN=lab.token)
    result = mlinfra("capacity", "--json", env=env)
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["accelerators"][0]["total"] == 2


def test_finds_the_newest_running_server_from_its_runtime_file(lab: LabServer) -> None:
    runtime = lab.root_dir.parent / "runtime"
    result = mlinfra("environments", env=clean_env(JUPYTER_RUNTIME_DIR=str(runtime)))
    assert result.returncode == 0, result.stderr
    assert [line.split()[0] for line in result.stdout.splitlines()] == ["NAME", "python", "pytorch"]


def test_a_wrong_token_is_one_line_and_never_echoes_tokens(lab: LabServer) -> None:
    wrong = "not-the-token-0123456789"
    result = mlinfra("flavors", "--url", lab.base_url, "--token", wrong, env=clean_env())
    assert result.returncode == 1
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("jupyter mlinfra flavors: ")
    assert wrong not in result.stderr and lab.token not in result.stderr
    assert "Traceback" not in result.stderr


def test_no_server_anywhere_says_what_to_do() -> None:
    result = mlinfra("flavors", env=clean_env())
    assert result.returncode == 1
    assert "no Jupyter server found" in result.stderr and "--local" in result.stderr


def test_an_unreachable_server_is_one_line(lab: LabServer) -> None:
    result = mlinfra("flavors", "--url", "http://127.0.0.1:9/", env=clean_env())
    assert result.returncode == 1
    assert result.stderr.startswith("jupyter mlinfra flavors: cannot reach the Jupyter server at")


def test_local_mode_reads_the_same_config_as_the_server(lab: LabServer) -> None:
    config_dir = lab.root_dir.parent / "config"
    fake_bin = lab.root_dir.parent / "bin"
    env = clean_env(
        JUPYTER_CONFIG_DIR=str(config_dir), PATH=f"{fake_bin}{os.pathsep}{os.environ['PATH']}"
    )
    local = json.loads(mlinfra("flavors", "--local", "--json", env=env).stdout)
    assert local == rest(lab, "flavors")


def test_local_mode_reports_a_broken_catalog_in_one_go(tmp_path: Path) -> None:
    config = {"MLInfraApp": {"flavors": [{"name": "x", "cpu": -1, "gpus": 2}]}}
    (tmp_path / "jupyter_server_config.json").write_text(json.dumps(config))
    result = mlinfra("flavors", "--local", env=clean_env(JUPYTER_CONFIG_DIR=str(tmp_path)))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "flavors[0] 'x': unknown field 'gpus'" in result.stderr
    assert "flavors[0] 'x'.cpu: must not be negative, got -1" in result.stderr


def test_kernels_started_by_the_server_reach_it_through_the_client(lab: LabServer) -> None:
    code = (
        "import os\n"
        "from jupyter_mlinfra.client import MLInfraClient\n"
        "me = MLInfraClient().whoami()\n"
        "print(os.environ['JUPYTER_MLINFRA_URL'], me['user'], me['quota']['max_gpus'])"
    )
    with running_kernel(lab) as execute:
        assert execute(code).split() == [lab.base_url, ME, "1"]


def test_kernels_lists_what_each_holds_and_stops_one(lab: LabServer) -> None:
    env = clean_env()
    server = ("--url", lab.base_url, "--token", lab.token)
    client = KernelsClient(Connection(lab.base_url, lab.token))
    started = client.start_kernel("python", "a100x1")  # answered at once: followed till it runs
    kernel = wait_kernel(client, started["id"])
    try:
        table = mlinfra("kernels", *server, env=env)
        assert table.returncode == 0, table.stderr
        header, *rows = table.stdout.splitlines()
        assert header.split() == [
            "ID", "OWNER", "FLAVOR", "ENVIRONMENT", "STATE", "DEVICES", "IDLE", "DETAIL"
        ]  # fmt: skip
        [row] = [r for r in rows if r.startswith(kernel["id"])]
        assert row.split()[1:6] == [ME, "a100x1", "python", "running", str(kernel["devices"][0])]
        as_json = mlinfra("kernels", "--json", *server, env=env)
        assert kernel["id"] in {k["id"] for k in json.loads(as_json.stdout)["kernels"]}

        stopped = mlinfra("kernels", "--stop", kernel["id"], *server, env=env)
        assert stopped.returncode == 0, stopped.stderr
        assert stopped.stdout == f"stopped kernel {kernel['id']} (a100x1, python)\n"
        assert kernel["id"] not in {k["id"] for k in rest(lab, "kernels")["kernels"]}
    finally:
        if kernel["id"] in {k["id"] for k in rest(lab, "kernels")["kernels"]}:
            rest(lab, f"kernels/{kernel['id']}", "DELETE")

    missing = mlinfra("kernels", "--stop", "00000000-0000-0000-0000-000000000000", *server, env=env)
    assert missing.returncode == 1
    assert missing.stderr.startswith("jupyter mlinfra kernels: ")
    assert "00000000-0000-0000-0000-000000000000" in missing.stderr
    assert "Traceback" not in missing.stderr and lab.token not in missing.stderr
