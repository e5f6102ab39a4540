"""Flavor kernels through a real jupyter server, a real local agent and real ipykernels.

Two A100s come from the admin's accelerator inventory (``local_accelerators``), standing in
for ``nvidia-smi``: the inventory is config, the leases, pinning and accounting are real. The
server runs in this process (pytest-jupyter), so the tests talk to it through ``jp_fetch`` and
to kernels through the server's kernel manager, never with blocking calls.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
from jupyter_server.services.kernels.kernelmanager import ServerKernelManager
from tornado.httpclient import HTTPClientError

from jupyter_mlinfra.client import ENV_TOKEN, ENV_URL
from jupyter_mlinfra.kernels import registry
from jupyter_mlinfra.kernels.activity import last_activity
from jupyter_mlinfra.kernels.lease import LEASES

from . import kernel_starts
from .agents import AgentHome
from .conftest import ME
from .test_handlers import conforms
from .waits import until

SPEC_MANAGER = "jupyter_mlinfra.kernels.specs.MLInfraKernelSpecManager"

CATALOG: dict[str, Any] = {
    "flavors": [
        {"name": "cpu", "display_name": "CPU", "cpu": 0.5, "memory": "1Gi"},
        {
            "name": "a100x1",
            "display_name": "1 × A100",
            "accelerator": {"kind": "nvidia.com/gpu", "model": "A100", "count": 1},
            "cpu": 1,
            "memory": "1Gi",
            "groups": ["gpu-users"],
        },
        {
            "name": "a100x2",
            "accelerator": {"kind": "nvidia.com/gpu", "model": "A100", "count": 2},
            "users": ["somebody-else"],
        },
    ],
    "environments": [
        {"name": "python", "display_name": "Python"},
        {"name": "pytorch", "display_name": "PyTorch", "framework": "pytorch"},
        {"name": "secret", "display_name": "Secret", "groups": ["another-team"]},
    ],
    "default_flavor": "cpu",
}

A100S = [{"index": i, "model": "A100-SXM4-80GB", "memory": "80Gi"} for i in (0, 1)]

REPORT = """
import json, os
print(json.dumps({
    "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
    "affinity": sorted(os.sched_getaffinity(0)),
    "omp": os.environ.get("OMP_NUM_THREADS"),
    "mkl": os.environ.get("MKL_NUM_THREADS"),
    "flavor": os.environ.get("MLINFRA_FLAVOR"),
    "kernel_id": os.environ.get("MLINFRA_KERNEL_ID"),
}))
"""


@pytest.fixture
def mlinfra_config(agent_home: AgentHome) -> dict[str, Any]:
    return {
        **agent_home.settings,
        **CATALOG,
        "local_accelerators": A100S,
        "groups": {"gpu-users": [ME]},
        "group_quotas": {"gpu-users": {"max_gpus": 4}},
    }


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any]) -> dict[str, Any]:
    server = {**jp_server_config["ServerApp"], "kernel_spec_manager_class": SPEC_MANAGER}
    return {**jp_server_config, "ServerApp": server}


@pytest.fixture(autouse=True)
def stop_kernels(jp_serverapp: Any, jp_asyncio_loop: Any) -> Iterator[None]:
    """Shut every kernel down (releasing leases) while the test's agent still runs."""
    yield
    manager = jp_serverapp.kernel_manager

    async def stop_all() -> None:
        await asyncio.gather(*(manager.shutdown_kernel(k) for k in manager.list_kernel_ids()))

    jp_asyncio_loop.run_until_complete(stop_all())


async def call(jp_fetch: Any, *path: str, method: str = "GET", body: Any = None) -> Any:
    kwargs: dict[str, Any] = {"method": method}
    if body is not None:
        kwargs["body"] = json.dumps(body)
    response = await jp_fetch(*path, **kwargs)
    return response.code, json.loads(response.body)


async def kernels_api(jp_fetch: Any, *path: str, **kwargs: Any) -> Any:
    return await call(jp_fetch, *kernel_starts.KERNELS, *path, **kwargs)


async def refused(jp_fetch: Any, *path: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(HTTPClientError) as raised:
        await call(jp_fetch, *path, **kwargs)
    assert raised.value.response is not None
    return raised.value.code, json.loads(raised.value.response.body)


async def start(jp_fetch: Any, flavor: str, environment: str = "python") -> dict[str, Any]:
    return await kernel_starts.start(jp_fetch, {"flavor": flavor, "environment": environment})


async def run(serverapp: Any, kernel_id: str, code: str) -> str:
    """Execute ``code`` in the kernel; its stdout."""
    client = serverapp.kernel_manager.get_kernel(kernel_id).client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=30)
        out: list[str] = []

        def collect(msg: dict[str, Any]) -> None:
            if msg["msg_type"] == "stream" and msg["content"]["name"] == "stdout":
                out.append(msg["content"]["text"])

        reply = await client.execute_interactive(code, output_hook=collect, timeout=30)
        assert reply["content"]["status"] == "ok", reply["content"]
        return "".join(out)
    finally:
        client.stop_channels()


async def report(serverapp: Any, kernel_id: str) -> dict[str, Any]:
    return dict(json.loads(await run(serverapp, kernel_id, REPORT)))


def spec_names(body: dict[str, Any]) -> set[str]:
    """The generated kernelspecs, and python3 (pytest-jupyter adds an 'echo' kernel too)."""
    return {n for n in body["kernelspecs"] if n.startswith("mlinfra-") or n == "python3"}


def test_a_kernel_not_yet_started_has_no_last_activity() -> None:
    """jupyter_server maps a kernel before its start returns (an adopted pod's, too) and sets
    last_activity only then: GET kernels in between answered 500 in a fresh-clone CI."""
    manager = ServerKernelManager()
    assert last_activity(manager) is None
    manager.last_activity = datetime.fromtimestamp(1_700_000_000, tz=timezone.utc)
    assert last_activity(manager) == 1_700_000_000


async def test_kernelspecs_show_exactly_the_entitled_environments(jp_fetch: Any) -> None:
    code, body = await call(jp_fetch, "api", "kernelspecs")
    assert code == 200
    assert spec_names(body) == {"python3", "mlinfra-python", "mlinfra-pytorch"}  # not secret
    pytorch = body["kernelspecs"]["mlinfra-pytorch"]["spec"]
    assert pytorch["display_name"] == "PyTorch (CPU)"
    provisioner = pytorch["metadata"]["kernel_provisioner"]
    assert provisioner == {
        "provisioner_name": "mlinfra-local-provisioner",
        "config": {"environment": "pytorch", "flavor": ""},
    }
    # what the browser reads of a generated spec (never its name), as the API documents it
    start = pytorch["metadata"]["mlinfra"]
    conforms(start, "KernelSpecStart")
    assert start == {"environment": "pytorch", "flavor": "cpu", "default_flavor": True}
    assert body["kernelspecs"]["python3"]["spec"]["metadata"].get("kernel_provisioner") is None
    assert body["kernelspecs"]["python3"]["spec"]["metadata"].get("mlinfra") is None
    assert "logo-64x64" in body["kernelspecs"]["mlinfra-python"]["resources"]


async def test_gpu_kernels_are_pinned_never_share_a_device_and_a_third_is_refused(
    jp_fetch: Any, jp_serverapp: Any
) -> None:
    first = await start(jp_fetch, "a100x1")
    conforms(first, "Kernel")
    assert (first["flavor"], first["environment"], first["owner"]) == ("a100x1", "python", ME)
    assert first["state"] == "running" and len(first["devices"]) == 1
    seen = await report(jp_serverapp, first["id"])
    assert seen["cuda"] == str(first["devices"][0])
    assert seen["affinity"] == first["cpus"] and len(first["cpus"]) == 1
    assert seen["omp"] == seen["mkl"] == "1"
    assert (seen["flavor"], seen["kernel_id"]) == ("a100x1", first["id"])

    second = await start(jp_fetch, "a100x1", environment="pytorch")
    assert second["devices"] != first["devices"]
    seen = await report(jp_serverapp, second["id"])
    assert seen["cuda"] == str(second["devices"][0])
    assert seen["affinity"] == second["cpus"]
    assert {first["devices"][0], second["devices"][0]} == {0, 1}

    code, error = await kernel_starts.refused(jp_fetch, {"flavor": "a100x1"})
    assert (code, error["field"]) == (409, "flavor")
    assert "nvidia.com/gpu" in error["message"] and "0 free" in error["message"], error

    _, listing = await kernels_api(jp_fetch)
    conforms(listing, "KernelList")
    listed = {k["id"]: k for k in listing["kernels"] if k["state"] == "running"}
    assert set(listed) == {first["id"], second["id"]}
    [failed] = [k for k in listing["kernels"] if k["state"] == "failed"]  # said, and kept
    assert (failed["flavor"], failed["error"]["message"]) == ("a100x1", error["message"])
    assert listed[first["id"]]["devices"] == first["devices"]
    assert listed[first["id"]]["execution_state"] == "idle"
    assert listed[first["id"]]["last_activity"] >= first["started"]
    _, one = await kernels_api(jp_fetch, first["id"])
    assert one == listed[first["id"]]
    _, plain = await call(jp_fetch, "api", "kernels")  # ordinary jupyter_server kernels too
    assert {k["id"] for k in plain} == set(listed)

    # stopping the failed start takes it off the list, answered as it ended, once
    code, dismissed = await kernels_api(jp_fetch, failed["id"], method="DELETE")
    assert (code, dismissed) == (200, failed)
    for method in ("GET", "DELETE"):
        code, gone = await refused(jp_fetch, *kernel_starts.KERNELS, failed["id"], method=method)
        assert (code, gone["field"]) == (404, "kernel_id")

    code, stopped = await kernels_api(jp_fetch, first["id"], method="DELETE")
    assert (code, stopped["state"]) == (200, "stopped")
    third = await start(jp_fetch, "a100x1")  # the freed device goes to the next kernel
    assert third["devices"] == first["devices"]
    _, listing = await kernels_api(jp_fetch)
    running = {k["id"] for k in listing["kernels"] if k["state"] == "running"}
    assert running == {second["id"], third["id"]}


async def test_a_restarted_kernel_keeps_its_lease(jp_fetch: Any, jp_serverapp: Any) -> None:
    kernel = await start(jp_fetch, "a100x1")
    before = jp_serverapp.kernel_manager.get_kernel(kernel["id"]).provisioner.pid
    code, _ = await call(
        jp_fetch, "api", "kernels", kernel["id"], "restart", method="POST", body={}
    )
    assert code == 200
    assert jp_serverapp.kernel_manager.get_kernel(kernel["id"]).provisioner.pid != before
    seen = await report(jp_serverapp, kernel["id"])
    assert seen["cuda"] == str(kernel["devices"][0]) and seen["affinity"] == kernel["cpus"]
    _, listing = await kernels_api(jp_fetch)
    [after] = listing["kernels"]
    assert (after["id"], after["devices"]) == (kernel["id"], kernel["devices"])
    assert after["last_exit"] is None  # a restart asked for is no death
    app = registry.current()
    assert app is not None  # the agent holds one lease, bound to the new process
    answer = await app.agent.client.fetch("GET", LEASES, identity=app.identities.owner())
    [held] = json.loads(answer.body)["leases"]
    pid = jp_serverapp.kernel_manager.get_kernel(kernel["id"]).provisioner.pid
    assert (held["kernel_id"], held["devices"], held["pid"]) == (
        kernel["id"],
        kernel["devices"],
        pid,
    )


async def test_a_kernel_killed_comes_back_saying_why(jp_fetch: Any, jp_serverapp: Any) -> None:
    """SIGKILL, as the out-of-memory killer sends: jupyter_server restarts the kernel by itself
    (same id, same lease), and the kernel's last_exit says how it died, once."""
    kernel = await start(jp_fetch, "a100x1")
    manager = jp_serverapp.kernel_manager.get_kernel(kernel["id"])
    first = manager.provisioner.pid
    os.kill(first, signal.SIGKILL)

    async def restarted() -> bool:
        return manager.provisioner.pid not in (None, first) and bool(await manager.is_alive())

    await until(restarted)
    _, seen = await kernels_api(jp_fetch, kernel["id"])
    assert (seen["state"], seen["devices"]) == ("running", kernel["devices"])
    assert seen["last_exit"]["reason"] == (
        "the kernel process was killed by SIGKILL (as the out-of-memory killer does when memory "
        "runs out)"
    )
    assert seen["last_exit"]["at"] >= kernel["started"]
    assert await run(jp_serverapp, kernel["id"], "print(6 * 7)") == "42\n"
    _, again = await kernels_api(jp_fetch, kernel["id"])
    assert again["last_exit"] == seen["last_exit"]  # one death, told once


async def test_a_start_answers_at_once_and_is_followed_by_its_id(
    jp_fetch: Any, agent_home: AgentHome
) -> None:
    """The start is a resource from its first moment: while the agent that grants its lease
    cannot answer (stopped), ``POST kernels`` has answered 202 and the kernel is listed,
    starting, under its id; once the agent answers, the same id runs. A stop asked meanwhile
    waits for the start and then stops it (no kernel is left behind)."""
    await start(jp_fetch, "cpu")  # the agent runs
    pids = agent_home.agent_pids()
    assert pids
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        kernel = await kernel_starts.begin(jp_fetch, {"flavor": "a100x1"})
        assert (kernel["flavor"], kernel["environment"], kernel["owner"]) == (
            "a100x1", "python", ME
        )  # fmt: skip
        _, seen = await kernels_api(jp_fetch, kernel["id"])
        assert (seen["state"], seen["since"]) == ("starting", kernel["since"])
        _, listing = await kernels_api(jp_fetch)
        assert kernel["id"] in {k["id"] for k in listing["kernels"] if k["state"] == "starting"}
        stopping = asyncio.ensure_future(kernels_api(jp_fetch, kernel["id"], method="DELETE"))
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    code, stopped = await stopping
    assert (code, stopped["id"], stopped["state"]) == (200, kernel["id"], "stopped")
    _, listing = await kernels_api(jp_fetch)
    assert kernel["id"] not in {k["id"] for k in listing["kernels"]}

    running = await kernel_starts.start(jp_fetch, {"flavor": "a100x1"})
    assert running["devices"] and running["state"] == "running"


async def test_cpu_kernel_hides_accelerators(jp_fetch: Any, jp_serverapp: Any) -> None:
    kernel = await start(jp_fetch, "cpu")
    assert kernel["devices"] == []
    seen = await report(jp_serverapp, kernel["id"])
    assert seen["cuda"] == ""
    assert seen["flavor"] == "cpu" and seen["omp"] == "1"


async def test_plain_python3_kernel_is_untouched(jp_fetch: Any, jp_serverapp: Any) -> None:
    code, kernel = await call(jp_fetch, "api", "kernels", method="POST", body={"name": "python3"})
    assert code == 201
    seen = await report(jp_serverapp, kernel["id"])
    assert seen["flavor"] is None and seen["kernel_id"] is None
    _, listing = await kernels_api(jp_fetch)
    assert listing["kernels"] == []


async def test_bad_requests_name_the_field(jp_fetch: Any) -> None:
    path = ("mlinfra", "api", "v1", "kernels")
    cases = [
        ({"flavor": "a100x1", "gpus": 8}, 400, "gpus"),
        ({"flavor": 3}, 400, "flavor"),
        ({"flavor": "nope"}, 404, "flavor"),
        ({"flavor": "a100x2"}, 403, "flavor"),
        ({"environment": "secret"}, 403, "environment"),
        ({"environment": "nope"}, 404, "environment"),
    ]
    for body, status, field in cases:
        code, error = await kernel_starts.refused(jp_fetch, body)
        assert (code, error["field"]) == (status, field), (body, error)
    code, error = await refused(
        jp_fetch, *path, "0000aaaa-0000-4000-8000-000000000000", method="DELETE"
    )
    assert (code, error["field"]) == (404, "kernel_id")
    _, listing = await kernels_api(jp_fetch)
    assert listing["kernels"] == []


class TestFlavorLaunchers:
    @pytest.fixture
    def mlinfra_config(self, mlinfra_config: dict[str, Any]) -> dict[str, Any]:
        return {**mlinfra_config, "flavor_launchers": True}

    async def test_one_kernelspec_per_environment_and_entitled_flavor(self, jp_fetch: Any) -> None:
        _, body = await call(jp_fetch, "api", "kernelspecs")
        assert spec_names(body) == {
            "python3",
            "mlinfra-python",
            "mlinfra-pytorch",
            "mlinfra-python--cpu",
            "mlinfra-python--a100x1",
            "mlinfra-pytorch--cpu",
            "mlinfra-pytorch--a100x1",
        }
        spec = body["kernelspecs"]["mlinfra-pytorch--a100x1"]["spec"]
        assert spec["display_name"] == "PyTorch · 1 × A100"
        assert spec["metadata"]["kernel_provisioner"]["config"]["flavor"] == "a100x1"

    async def test_jupyter_server_starts_a_flavor_kernelspec(
        self, jp_fetch: Any, jp_serverapp: Any
    ) -> None:
        code, kernel = await call(
            jp_fetch, "api", "kernels", method="POST", body={"name": "mlinfra-pytorch--a100x1"}
        )
        assert code == 201
        _, listing = await kernels_api(jp_fetch)
        [mine] = listing["kernels"]
        assert (mine["id"], mine["flavor"], mine["environment"]) == (
            kernel["id"],
            "a100x1",
            "pytorch",
        )
        seen = await report(jp_serverapp, kernel["id"])
        assert seen["cuda"] == str(mine["devices"][0])


class TestCulling:
    @pytest.fixture
    def mlinfra_config(self, mlinfra_config: dict[str, Any]) -> dict[str, Any]:
        # Long enough that a loaded machine connects and runs a cell before the kernel, idle
        # since its start, is warned or culled (2 s lost that race in CI-like load).
        return {
            **mlinfra_config,
            "accelerator_kernel_idle_timeout": 8,
            "accelerator_kernel_cull_warning": 4,
        }

    @pytest.fixture(autouse=True)
    def started(self, jp_serverapp: Any, jp_asyncio_loop: Any, monkeypatch: Any) -> None:
        """Start the extension as ``jupyter server`` does once its loop runs (pytest-jupyter
        does not); the variables it sets for kernels are put back after the test."""
        for name in (ENV_URL, ENV_TOKEN):
            monkeypatch.setenv(name, "")
        jp_asyncio_loop.run_until_complete(jp_serverapp.extension_manager.start_all_extensions())

    async def test_idle_gpu_kernel_is_warned_then_culled_and_its_device_freed(
        self, jp_fetch: Any, jp_serverapp: Any
    ) -> None:
        gpu = await start(jp_fetch, "a100x1")
        cpu = await start(jp_fetch, "cpu")  # holds no accelerator: never culled here
        client = jp_serverapp.kernel_manager.get_kernel(gpu["id"]).client()
        client.start_channels()
        try:
            await client.wait_for_ready(timeout=30)
            await client.execute_interactive("x = 1", timeout=30)
            warning = ""
            deadline = time.monotonic() + 60
            while "[mlinfra]" not in warning:
                msg = await client.get_iopub_msg(timeout=deadline - time.monotonic())
                if msg["msg_type"] == "stream" and msg["content"]["name"] == "stderr":
                    warning += msg["content"]["text"]
        finally:
            client.stop_channels()
        assert re.search(r"will be shut down in \d+ s to release its accelerators", warning)

        deadline = time.monotonic() + 60
        while True:
            _, listing = await kernels_api(jp_fetch)
            states = {k["id"]: k for k in listing["kernels"]}
            # absent for a moment while the kernel manager shuts it down
            if states.get(gpu["id"], {}).get("state") == "culled":
                break
            assert time.monotonic() < deadline, listing
            await asyncio.sleep(0.2)
        conforms(listing, "KernelList")
        culled = states[gpu["id"]]
        idle = re.fullmatch(r"idle for (\d+) s", culled["reason"])
        assert idle is not None and int(idle[1]) >= 8, culled
        assert culled["devices"] == gpu["devices"] and culled["ended"] is not None
        assert states[cpu["id"]]["state"] == "running"
        assert gpu["id"] not in jp_serverapp.kernel_manager.list_kernel_ids()
        again = await start(jp_fetch, "a100x1")
        assert again["state"] == "running"


def test_kernel_env_and_pinned_command_match_the_lease() -> None:
    from jupyter_mlinfra.capacity import Lease
    from jupyter_mlinfra.catalog import Environment
    from jupyter_mlinfra.kernels.launch import PIN, kernel_env, pinned_command

    lease = Lease("k1", ME, "a100x2", "pytorch", (2, 3), (4, 5, 6), 3.0, 2**30, 1.0, 1.0)
    environment = Environment("pytorch", "PyTorch", env={"A": "1", "CUDA_VISIBLE_DEVICES": "9"})
    assert kernel_env(lease, environment) == {
        "A": "1",
        "OMP_NUM_THREADS": "3",
        "MKL_NUM_THREADS": "3",
        "OPENBLAS_NUM_THREADS": "3",
        "CUDA_VISIBLE_DEVICES": "2,3",
        "MLINFRA_CPUS": "4,5,6",
        "MLINFRA_FLAVOR": "a100x2",
        "MLINFRA_ENVIRONMENT": "pytorch",
        "MLINFRA_KERNEL_ID": "k1",
    }
    command = ["/env/bin/python", "-m", "ipykernel_launcher", "-f", "k.json"]
    assert pinned_command("/env/bin/python", (4, 5, 6), command) == [
        "/env/bin/python", "-I", "-S", str(PIN), "4,5,6", "--", *command,
    ]  # fmt: skip
    assert pinned_command("/env/bin/python", (), command) == command


async def test_switch_flavor_restarts_the_same_kernel_on_the_new_flavor(
    jp_fetch: Any, jp_serverapp: Any
) -> None:
    kernel = await start(jp_fetch, "cpu")
    assert (await report(jp_serverapp, kernel["id"]))["cuda"] == ""
    code, switched = await kernels_api(
        jp_fetch, kernel["id"], method="PATCH", body={"flavor": "a100x1"}
    )
    assert code == 200
    assert (switched["id"], switched["flavor"]) == (kernel["id"], "a100x1")
    seen = await report(jp_serverapp, kernel["id"])
    assert (seen["cuda"], seen["flavor"]) == (str(switched["devices"][0]), "a100x1")
    other = await start(jp_fetch, "a100x1")  # both GPUs and both CPUs are held now
    assert other["devices"] != switched["devices"]
    # back to cpu: it fits in what the kernel's own lease gives back
    code, back = await kernels_api(jp_fetch, kernel["id"], method="PATCH", body={"flavor": "cpu"})
    assert (code, back["flavor"], back["devices"]) == (200, "cpu", [])
    path = ("mlinfra", "api", "v1", "kernels", kernel["id"])
    status, error = await refused(jp_fetch, *path, method="PATCH", body={"flavor": "a100x2"})
    assert (status, error["field"]) == (403, "flavor")
    status, error = await refused(jp_fetch, *path, method="PATCH", body={"flavour": "x"})
    assert (status, error["field"]) == (400, "flavour")


async def test_a_kernel_on_a_chosen_flavor_carries_that_flavors_name(jp_fetch: Any) -> None:
    """Unlisted (flavor_launchers is off), the per-flavor kernelspec still resolves by name,
    so JupyterLab names the kernel by the flavor it holds, not by its environment's default."""
    kernel = await start(jp_fetch, "a100x1")
    assert kernel["name"] == "mlinfra-python--a100x1"
    code, spec = await call(jp_fetch, "api", "kernelspecs", "mlinfra-python--a100x1")
    assert code == 200
    assert spec["spec"]["display_name"] == "Python · 1 × A100"
    _, listing = await call(jp_fetch, "api", "kernelspecs")
    assert "mlinfra-python--a100x1" not in spec_names(listing)


class TestRefusedStart:
    @pytest.fixture
    def mlinfra_config(self, mlinfra_config: dict[str, Any]) -> dict[str, Any]:
        return {**mlinfra_config, "group_quotas": {"gpu-users": {"max_gpus": 0}}}

    async def test_a_refused_start_is_one_readable_line_in_the_log(
        self, jp_fetch: Any, jp_serverapp: Any
    ) -> None:
        """Not the two ERROR records with a traceback each that jupyter_client writes for a
        kernel start that raised (its kernel manager, then its multi-kernel manager)."""
        records: list[logging.LogRecord] = []
        keep = logging.Handler()
        keep.emit = records.append  # type: ignore[method-assign]
        jp_serverapp.log.addHandler(keep)
        try:
            code, error = await kernel_starts.refused(jp_fetch, {"flavor": "a100x1"})
        finally:
            jp_serverapp.log.removeHandler(keep)
        assert 400 <= code < 500 and error["field"], error
        said = [r for r in records if error["message"] in r.getMessage()]
        assert [(r.levelno, r.exc_info) for r in said] == [(logging.INFO, None)], said
        assert said[0].getMessage().startswith("mlinfra kernel ")
        assert not [r for r in records if r.levelno >= logging.ERROR or r.exc_info]


async def test_a_kernel_runs_in_the_folder_of_its_path(
    jp_fetch: Any, jp_serverapp: Any, jp_root_dir: Any
) -> None:
    """A path inside the root still sets the working directory (what confining it keeps)."""
    (jp_root_dir / "project" / "notebooks").mkdir(parents=True)
    kernel = await kernel_starts.start(jp_fetch, {"path": "project/notebooks/train.ipynb"})
    cwd = await run(jp_serverapp, kernel["id"], "import os; print(os.getcwd())")
    assert cwd.strip() == str((jp_root_dir / "project" / "notebooks").resolve())
