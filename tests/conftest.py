"""Shared fixtures: a real jupyter server with the extension (pytest-jupyter), a fake
``nvidia-smi`` so GPU detection runs for real on machines without GPUs, a test catalog, and an
ipykernel without CurveZMQ support."""

from __future__ import annotations

import getpass
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .agents import AgentHome, private_agent
from .lab_server import LabServer, running_lab
from .optional import need

pytest_plugins = ["pytest_jupyter.jupyter_server", "tests.cluster.plugin"]

ME = getpass.getuser()

NVIDIA_SMI = """#!/bin/sh
# stands in for nvidia-smi on machines without GPUs; prints what the real one prints for
# --query-gpu=index,uuid,name,memory.total --format=csv,noheader,nounits
cat <<'CSV'
{rows}
CSV
"""


def mlinfra_app(serverapp: Any) -> Any:
    """The server's ``MLInfraApp``, for tests that reach inside it (the package's own code
    gets its collaborators, never the app)."""
    (app,) = serverapp.extension_manager.extension_apps["jupyter_mlinfra"]
    return app


def write_fake_nvidia_smi(folder: Path, models: list[str]) -> Path:
    rows = "\n".join(
        f"{i}, GPU-{i:04d}-uuid, NVIDIA {model}, 81559" for i, model in enumerate(models)
    )
    script = folder / "nvidia-smi"
    script.write_text(NVIDIA_SMI.format(rows=rows))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


@pytest.fixture
def fake_gpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Four A100s visible to detection through a real ``nvidia-smi`` process on PATH."""
    folder = tmp_path / "fake-bin"
    folder.mkdir()
    models = ["A100-SXM4-80GB"] * 4
    write_fake_nvidia_smi(folder, models)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return models


TEST_CATALOG: dict[str, Any] = {
    "flavors": [
        {"name": "cpu", "cpu": 1, "memory": "1Gi"},
        {
            "name": "a100x1",
            "display_name": "1 × A100",
            "accelerator": {"kind": "nvidia.com/gpu", "model": "A100", "count": 1},
            "cpu": 0.5,
            "memory": "1Gi",
            "price_per_hour": 1.5,
            "groups": ["gpu-users"],
        },
        {
            "name": "a100x4",
            "accelerator": {"kind": "nvidia.com/gpu", "model": "A100", "count": 4},
            "cpu": 1,
            "memory": "1Gi",
            "capacity_type": "reserved",
            "users": ["somebody-else"],
        },
    ],
    "environments": [
        {"name": "python", "framework": "generic"},
        {"name": "pytorch", "framework": "pytorch", "groups": ["gpu-users"]},
    ],
    "default_flavor": "cpu",
}


@pytest.fixture
def agent_home() -> Iterator[AgentHome]:
    """A private local agent: short socket path, own data dir; stopped with its ranks after."""
    with private_agent("mli-") as home:
        yield home


@pytest.fixture(scope="module")
def home() -> Iterator[AgentHome]:
    """A private local agent shared by a module's tests (``lab`` talks to it)."""
    with private_agent("mli-") as home:
        yield home


@pytest.fixture(scope="module")
def lab_config() -> dict[str, Any]:
    """MLInfraApp settings of ``lab`` beyond the agent, the test catalog and its groups;
    override in a test module to change them."""
    return {}


@pytest.fixture(scope="module")
def lab(
    tmp_path_factory: pytest.TempPathFactory, home: AgentHome, lab_config: dict[str, Any]
) -> Iterator[LabServer]:
    """One real ``jupyter lab`` per module, with the extension and the module's agent: for
    tests that drive it from outside, as a kernel or a notebook would."""
    tmp = tmp_path_factory.mktemp("lab")
    (tmp / "config").mkdir()
    settings = {**home.settings, **TEST_CATALOG, "groups": {"gpu-users": [ME]}, **lab_config}
    config = {"MLInfraApp": settings}
    (tmp / "config" / "jupyter_server_config.json").write_text(json.dumps(config))
    with running_lab(tmp) as server:
        yield server


@pytest.fixture
def mlinfra_config(agent_home: AgentHome) -> dict[str, Any]:
    """The MLInfraApp settings of the test server; override in a test module to change them."""
    return {
        **agent_home.settings,
        **TEST_CATALOG,
        "groups": {"gpu-users": [ME]},
        "default_quota": {"max_gpus": 2, "max_running_jobs": 4},
        "group_quotas": {"gpu-users": {"max_gpus": 4, "max_queued_jobs": 10}},
    }


@pytest.fixture
def jp_server_config(mlinfra_config: dict[str, Any], fake_gpus: list[str]) -> dict[str, Any]:
    return {
        "ServerApp": {"jpserver_extensions": {"jupyter_mlinfra": True}},
        "MLInfraApp": mlinfra_config,
    }


OLD_IPYKERNEL = "ipykernel==7.2.0"
"""The last ipykernel without CurveZMQ transport encryption."""


@pytest.fixture(scope="session")
def old_ipykernel(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A folder holding ipykernel 7.2 alone, from PyPI: on an environment's PYTHONPATH, this
    interpreter (its other packages unchanged) stands for one whose ipykernel cannot encrypt."""
    folder = tmp_path_factory.mktemp("ipykernel-7.2")
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(folder),
         OLD_IPYKERNEL],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    need(installed.returncode == 0, f"cannot install {OLD_IPYKERNEL}: {installed.stderr[-300:]}")
    return str(folder)
