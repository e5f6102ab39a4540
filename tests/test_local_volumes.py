"""Volumes on the local backend: the same declaration as on a cluster means the same thing, the
files a kernel or job finds at ``mount_path``; nothing is mounted, so the folder must exist on
this machine, and a start or submission that would miss it is refused saying so."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from . import kernel_starts
from .conftest import TEST_CATALOG
from .jobs_client import call
from .test_handlers import conforms
from .test_kernels import jp_server_config, run, stop_kernels

__all__ = ["jp_server_config", "stop_kernels"]  # fixtures: the kernels' server, for here too


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    folder = tmp_path / "datasets" / "imagenet"
    folder.mkdir(parents=True)
    (folder / "labels.txt").write_text("cat\ndog\n")
    return folder


@pytest.fixture
def mlinfra_config(mlinfra_config: dict[str, Any], dataset: Path) -> dict[str, Any]:
    environments = json.loads(json.dumps(TEST_CATALOG["environments"]))
    environments[0]["volumes"] = [
        {"name": "imagenet", "mount_path": str(dataset), "read_only": True}
    ]
    environments.append(
        {"name": "elsewhere", "volumes": [{"name": "gone", "mount_path": "/nonexistent/data"}]}
    )
    return {**mlinfra_config, "environments": environments}


async def test_a_kernel_finds_the_dataset_where_its_environment_declares_it(
    jp_fetch: Any, jp_serverapp: Any, dataset: Path
) -> None:
    response = await jp_fetch("mlinfra", "api", "v1", "environments")
    listing = json.loads(response.body)
    conforms(listing, "EnvironmentList")
    python = next(e for e in listing["environments"] if e["name"] == "python")
    assert python["volumes"] == [
        {"name": "imagenet", "mount_path": str(dataset), "read_only": True, "kind": "folder",
         "source": f"folder {dataset}", "description": ""},
    ]  # fmt: skip
    kernel = await kernel_starts.start(jp_fetch, {"flavor": "cpu", "environment": "python"})
    printed = await run(jp_serverapp, kernel["id"], f"print(open('{dataset}/labels.txt').read())")
    assert printed == "cat\ndog\n\n"


async def test_a_start_or_submission_whose_folder_is_missing_is_refused(jp_fetch: Any) -> None:
    message = (
        "volume 'gone' of this {} is declared at /nonexistent/data, which is not a folder of "
        "this machine (the local backend mounts nothing: the folder must exist)"
    )
    code, error = await kernel_starts.refused(
        jp_fetch, {"flavor": "cpu", "environment": "elsewhere"}
    )
    assert (code, error["message"]) == (409, message.format("kernel"))
    with pytest.raises(HTTPClientError) as raised:
        await call(jp_fetch, "jobs", "POST", {"code": "print(1)", "environment": "elsewhere"})
    assert raised.value.code == 409
    assert json.loads(raised.value.response.body)["message"] == message.format("job")
