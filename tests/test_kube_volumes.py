"""The user's files on a cluster: a home volume and a read-only dataset, as static
PersistentVolumes bound to their claims by the real controller manager, mounted by the test
kubelet into kernel and job pods (``tests/cluster/kubelet``: a claim's PersistentVolume with a
``hostPath`` is bound at the mount path in the container's own mount namespace).

The server's root directory is the home volume's folder, as in Zero to JupyterHub, where the
user's server and their pods mount the same claim at the same path. Pods run as uid 1000 (the
product's default) and the server here as root: the folders pods write are made theirs, as
they are on a cluster where the server and its pods run as the same user.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from tornado.httpclient import HTTPClientError

from jupyter_mlinfra.backends.kubernetes import kernel_pod as pods
from jupyter_mlinfra.backends.kubernetes.names import dns_label
from jupyter_mlinfra.backends.kubernetes.workloads import pod_template_of

from . import kernel_starts
from .cluster.fixture import KubeCluster
from .conftest import ME
from .jobs_client import TERMINAL, call
from .kube_server import wait_for
from .test_kernels import run
from .test_kube_kernels import CATALOG, kube_server_config, stop_kernels
from .waits import until

__all__ = ["stop_kernels"]  # an autouse fixture, for this module too

POD_UID, POD_GID = 1000, 100
DATASET_PATH = "/data/imagenet"
CLAIM = dns_label(f"claim-{ME}")
RWO_CLAIM = "home-once"


@pytest.fixture
def storage_root() -> Iterator[Path]:
    """A folder every pod's user can reach (``tmp_path`` is under a folder only root may
    enter, and a volume's mount path is the same path in the pod), holding ``home`` and
    ``datasets/imagenet``."""
    root = Path(tempfile.mkdtemp(prefix="mlinfra-volumes-", dir="/tmp"))
    root.chmod(0o755)
    (root / "home").mkdir(mode=0o755)
    os.chown(root / "home", POD_UID, POD_GID)
    dataset = root / "datasets" / "imagenet"
    dataset.mkdir(parents=True)
    (dataset / "labels.txt").write_text("cat\ndog\n")
    for folder in (root / "datasets", dataset):
        folder.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def jp_root_dir(storage_root: Path) -> Path:
    """The server's root directory is the user's home volume."""
    return storage_root / "home"


def persistent_volume(name: str, path: Path, mode: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": [mode],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "hostPath": {"path": str(path), "type": "Directory"},
        },
    }


def claim(name: str, volume: str, mode: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name},
        "spec": {
            "accessModes": [mode],
            "storageClassName": "",
            "volumeName": volume,
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }


def bind(cluster: KubeCluster, name: str, path: Path, mode: str) -> None:
    """A static PersistentVolume on ``path`` and the claim ``name`` for it, returning once the
    controller manager's binder has bound them."""
    volume = f"{name}-{cluster.namespace}"
    cluster.create(persistent_volume(volume, path, mode))
    cluster.create(claim(name, volume, mode))


async def bound(cluster: KubeCluster, *names: str) -> None:
    async def all_bound() -> bool:
        claims = [cluster.get("v1", "PersistentVolumeClaim", n) for n in names]
        return all((c or {}).get("status", {}).get("phase") == "Bound" for c in claims)

    await until(all_bound, timeout=60)


@pytest.fixture
def volumes(kube_cluster: KubeCluster, storage_root: Path) -> KubeCluster:
    bind(kube_cluster, CLAIM, storage_root / "home", "ReadWriteMany")
    bind(kube_cluster, "imagenet", storage_root / "datasets" / "imagenet", "ReadOnlyMany")
    return kube_cluster


def with_volumes(cluster: KubeCluster, *, home: bool = True) -> dict[str, Any]:
    """The kernels' test server, with the home volume and, in environment pytorch, the
    dataset; jobs use the same environment."""
    catalog = json.loads(json.dumps(CATALOG))
    catalog["flavors"][0]["max_nodes"] = 2
    catalog["environments"][0]["volumes"] = [
        {"name": "imagenet", "claim": "imagenet", "mount_path": DATASET_PATH, "read_only": True,
         "description": "ImageNet labels"},
    ]  # fmt: skip
    config = kube_server_config(cluster, catalog)
    if home:
        config["KubernetesPods"] = {"home_volume": {"claim": "claim-{username}"}}
    return config


def hook(pod: dict[str, Any], context: dict[str, str]) -> None:
    """An admin's hook: labels every pod with its kind, and tries to give flavor a100x1's
    pods all the node's GPUs."""
    pod["metadata"].setdefault("labels", {})["example.org/hooked"] = context["kind"]
    if context["flavor"] == "a100x1":
        pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = "4"


HATCHES = {
    "modify_pod_hook": hook,
    "extra_pod_config": {"hostAliases": [{"ip": "10.1.2.3", "hostnames": ["datasets.example"]}]},
    "extra_container_config": {"env": [{"name": "FROM_ADMIN", "value": "yes"}]},
    "extra_volumes": [{"name": "scratch", "emptyDir": {}}],
    "extra_volume_mounts": [{"name": "scratch", "mountPath": "/scratch"}],
}


@pytest.fixture
def jp_server_config(volumes: KubeCluster, request: pytest.FixtureRequest) -> dict[str, Any]:
    """The server with volumes; a test's ``param``: "no-home" (none) or "hatches" (with the
    admin's extras and hook of ``HATCHES``)."""
    param = getattr(request, "param", "")
    config = with_volumes(volumes, home=param != "no-home")
    if param == "hatches":
        config["KubernetesPods"].update(HATCHES)
    if param == "rwo":
        config["KubernetesPods"]["home_volume"]["claim"] = RWO_CLAIM
    return config


NOTEBOOK = f"""
import os
print(json.dumps({{
    "cwd": os.getcwd(),
    "home": os.environ["HOME"],
    "data": open("data.csv").read(),
    "labels": open("{DATASET_PATH}/labels.txt").read(),
}}))
with open("out.txt", "w") as file:
    file.write("written in the pod")
try:
    open("{DATASET_PATH}/new.txt", "w")
except OSError as error:
    print("dataset:", error.strerror)
"""


async def test_a_pod_kernel_runs_in_the_notebooks_folder_of_the_home_volume(
    jp_fetch: Any, jp_serverapp: Any, volumes: KubeCluster, jp_root_dir: Path
) -> None:
    await call_contents(jp_fetch, "project", {"type": "directory"})
    os.chown(jp_root_dir / "project", POD_UID, POD_GID)
    await call_contents(
        jp_fetch, "project/data.csv", {"type": "file", "format": "text", "content": "a,b\n1,2\n"}
    )
    await bound(volumes, CLAIM, "imagenet")
    listing = json.loads((await jp_fetch("mlinfra", "api", "v1", "environments")).body)
    shown = next(e for e in listing["environments"] if e["name"] == "pytorch")["volumes"]
    assert [(v["name"], v["mount_path"], v["read_only"], v["source"]) for v in shown] == [
        ("home", str(jp_root_dir), False, f"claim claim-{ME}"),
        ("imagenet", DATASET_PATH, True, "claim imagenet"),
    ]

    kernel = await kernel_starts.start(
        jp_fetch, {"flavor": "cpu", "environment": "pytorch", "path": "project"}
    )
    printed = await run(jp_serverapp, kernel["id"], "import json\n" + NOTEBOOK)
    seen = json.loads(printed.splitlines()[0])
    assert seen == {
        "cwd": str(jp_root_dir / "project"),
        "home": str(jp_root_dir),
        "data": "a,b\n1,2\n",
        "labels": "cat\ndog\n",
    }
    assert printed.splitlines()[1] == "dataset: Read-only file system"
    written = await call_contents(jp_fetch, "project/out.txt")
    assert written["content"] == "written in the pod"

    pod = volumes.get("v1", "Pod", pods.pod_name(kernel["id"]))
    assert pod is not None
    claims = {
        v["name"]: v["persistentVolumeClaim"]
        for v in pod["spec"]["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert claims == {
        "user-home": {"claimName": CLAIM},
        "vol-imagenet": {"claimName": "imagenet", "readOnly": True},
    }
    assert pod["spec"]["containers"][0]["workingDir"] == str(jp_root_dir / "project")


CHECKPOINT = """
import os
os.makedirs("checkpoints", exist_ok=True)
with open(f"checkpoints/rank-{os.environ['RANK']}.txt", "w") as file:
    file.write(f"step 100 of rank {os.environ['RANK']} in {os.getcwd()}")
"""

RESUME = """
import os
found = sorted(open(f"checkpoints/{name}").read() for name in os.listdir("checkpoints"))
blob = b"w" * 3_000_000
"""


async def test_a_two_node_jobs_checkpoints_are_read_by_the_next_job_and_the_notebook(
    jp_fetch: Any, volumes: KubeCluster, jp_root_dir: Path
) -> None:
    """Both nodes write into the home volume in the folder the job was submitted from; a later
    job reads them and pulls back more than a Secret holds, through the volume."""
    project = jp_root_dir / "project"
    project.mkdir()
    os.chown(project, POD_UID, POD_GID)
    await bound(volumes, CLAIM, "imagenet")
    where = {"environment": "pytorch", "flavor": "cpu", "working_dir": str(project)}
    job = await call(jp_fetch, "jobs", "POST", {"code": CHECKPOINT, "nodes": 2, **where})
    done = await wait_for(jp_fetch, job["id"], TERMINAL)
    assert done["state"] == "succeeded", await call(jp_fetch, f"jobs/{job['id']}/logs")
    for rank in (0, 1):
        listed = await call_contents(jp_fetch, f"project/checkpoints/rank-{rank}.txt")
        assert listed["content"] == f"step 100 of rank {rank} in {project}"

    later = await call(
        jp_fetch, "jobs", "POST", {"code": RESUME, "pull": ["found", "blob"], **where}
    )
    done = await wait_for(jp_fetch, later["id"], TERMINAL)
    assert done["state"] == "succeeded", await call(jp_fetch, f"jobs/{later['id']}/logs")
    result = await call(jp_fetch, f"jobs/{later['id']}/result")
    pulled = cloudpickle.loads(base64.b64decode(result["variables"]))
    assert pulled["found"] == [f"step 100 of rank {r} in {project}" for r in (0, 1)]
    assert pulled["blob"] == b"w" * 3_000_000
    secret = volumes.get("v1", "Secret", f"mlinfra-{later['id']}-1-result")
    assert secret is not None and set(secret["data"]) == {"pull.location"}
    (left,) = (jp_root_dir / ".mlinfra" / "results").iterdir()
    assert left.name == f"mlinfra-{later['id']}-1-result.pkl"

    obj = volumes.get("batch/v1", "Job", f"mlinfra-{later['id']}-1")
    assert obj is not None
    container = pod_template_of(obj)["spec"]["containers"][0]
    assert container["workingDir"] == str(project)


@pytest.mark.parametrize("jp_server_config", ["no-home"], indirect=True)
async def test_without_a_home_volume_a_large_pull_says_why_it_cannot_come_back(
    jp_fetch: Any, volumes: KubeCluster
) -> None:
    job = await call(
        jp_fetch,
        "jobs",
        "POST",
        {"code": "blob = b'w' * 3_000_000", "pull": ["blob"], "environment": "pytorch",
         "flavor": "cpu"},
    )  # fmt: skip
    done = await wait_for(jp_fetch, job["id"], TERMINAL)
    assert done["state"] == "failed"
    assert "more than the 1.0 MiB a Kubernetes Secret holds" in done["message"], done
    assert "no shared volume" in done["message"]


async def call_contents(jp_fetch: Any, path: str, body: Any = None) -> Any:
    """The contents API of the user's server: PUT ``body``, or GET."""
    kwargs: dict[str, Any] = {"method": "GET"}
    if body is not None:
        kwargs = {"method": "PUT", "body": json.dumps(body)}
    response = await jp_fetch("api", "contents", *path.split("/"), **kwargs)
    return json.loads(response.body)


@pytest.mark.parametrize("jp_server_config", ["hatches"], indirect=True)
async def test_the_admins_extras_and_hook_shape_kernel_and_job_pods_but_not_their_gpus(
    jp_fetch: Any, jp_serverapp: Any, volumes: KubeCluster
) -> None:
    cluster = volumes
    cluster.add_node("gpu-1", allocatable={"nvidia.com/gpu": "4"})
    await bound(cluster, CLAIM, "imagenet")
    kernel = await kernel_starts.start(jp_fetch, {"flavor": "cpu", "environment": "pytorch"})
    probe = "import os\nprint(os.environ['FROM_ADMIN'], os.access('/scratch', os.W_OK))"
    assert await run(jp_serverapp, kernel["id"], probe) == "yes True\n"
    job = await call(
        jp_fetch, "jobs", "POST", {"code": "print('ok')", "environment": "pytorch",
                                   "flavor": "cpu"},
    )  # fmt: skip
    assert (await wait_for(jp_fetch, job["id"], TERMINAL))["state"] == "succeeded"
    made = [
        cluster.get("v1", "Pod", pods.pod_name(kernel["id"])),
        *cluster.list("v1", "Pod", label_selector=f"mlinfra.jupyter.org/job-id={job['id']}"),
    ]
    assert [p["metadata"]["labels"]["example.org/hooked"] for p in made if p] == ["kernel", "job"]
    for pod in made:
        assert pod is not None
        assert pod["spec"]["hostAliases"] == [{"ip": "10.1.2.3", "hostnames": ["datasets.example"]}]

    before = cluster.list("v1", "Pod")
    code, refusal = await refused(jp_fetch, "a100x1", "pytorch")
    assert code == 500
    assert "modify_pod_hook changed the kernel pod's container 'kernel' resources" in refusal
    assert '"nvidia.com/gpu": "1"' in refusal and '"nvidia.com/gpu": "4"' in refusal
    with pytest.raises(HTTPClientError) as raised:
        await call(jp_fetch, "jobs", "POST", {"code": "print(1)", "environment": "pytorch",
                                              "flavor": "a100x1"})  # fmt: skip
    assert raised.value.code == 500
    assert (
        "modify_pod_hook changed the job's pod template's container 'node' resources"
        in (json.loads(raised.value.response.body)["message"])
    )
    assert [p["metadata"]["name"] for p in cluster.list("v1", "Pod")] == [
        p["metadata"]["name"] for p in before
    ]
    listing = await call(jp_fetch, "jobs")
    assert [j["id"] for j in listing["jobs"]] == [job["id"]]


async def refused(jp_fetch: Any, flavor: str, environment: str) -> tuple[int, str]:
    code, error = await kernel_starts.refused(
        jp_fetch, {"flavor": flavor, "environment": environment}
    )
    return code, error["message"]


def server_stand_in(node: str) -> dict[str, Any]:
    """The user's server pod on ``node``, mounting the ReadWriteOnce home claim (bound to the
    node by name, as a StatefulSet's pod stays where its volume is)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "jupyter-server"},
        "spec": {
            "nodeName": node,
            "containers": [
                {
                    "name": "notebook",
                    "image": "python:3.12",
                    "command": ["python3", "-c", "import time; time.sleep(3600)"],
                    "volumeMounts": [{"name": "home", "mountPath": "/home/jovyan"}],
                }
            ],
            "volumes": [{"name": "home", "persistentVolumeClaim": {"claimName": RWO_CLAIM}}],
        },
    }


@pytest.mark.parametrize("jp_server_config", ["rwo"], indirect=True)
async def test_a_readwriteonce_home_puts_the_kernel_where_it_is_attached_or_refuses(
    jp_fetch: Any, jp_serverapp: Any, volumes: KubeCluster, storage_root: Path
) -> None:
    """Documented in the README (Where files live): a ReadWriteOnce volume attached to a
    node takes a kernel to that node when its flavor may run there; otherwise the start is
    refused at once, saying where the volume is, and so is a multi-node job."""
    cluster = volumes
    cluster.add_node("node-1")
    cluster.add_node("gpu-1", allocatable={"nvidia.com/gpu": "4"})
    bind(cluster, RWO_CLAIM, storage_root / "home", "ReadWriteOnce")
    await bound(cluster, RWO_CLAIM, "imagenet")
    cluster.create(server_stand_in("node-1"))

    async def serving() -> bool:
        pod = cluster.get("v1", "Pod", "jupyter-server")
        return (pod or {}).get("status", {}).get("phase") == "Running"

    await until(serving)

    kernel = await kernel_starts.start(jp_fetch, {"flavor": "cpu", "environment": "pytorch"})
    pod = cluster.get("v1", "Pod", pods.pod_name(kernel["id"]))
    assert pod is not None and pod["spec"]["nodeName"] == "node-1"
    assert pod["spec"]["affinity"]["nodeAffinity"] == {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [
                {"matchFields": [{"key": "metadata.name", "operator": "In",
                                  "values": ["node-1"]}]}
            ]
        }
    }  # fmt: skip
    assert await run(jp_serverapp, kernel["id"], "import os\nprint(os.environ['HOME'])") == (
        f"{storage_root / 'home'}\n"
    )

    code, message = await refused(jp_fetch, "a100x1", "pytorch")
    assert code == 409
    assert message == (
        f"volume 'home' (claim {RWO_CLAIM}) is ReadWriteOnce and is attached to node-1 (pod "
        "jupyter-server mounts it); flavor 'a100x1' cannot run there, so the kernel could never "
        "mount it. Use a flavor that runs there, stop what uses the volume, or ask an admin for "
        "a ReadWriteMany volume"
    )
    with pytest.raises(HTTPClientError) as raised:
        await call(jp_fetch, "jobs", "POST", {"code": "print(1)", "environment": "pytorch",
                                              "flavor": "cpu", "nodes": 2})  # fmt: skip
    assert raised.value.code == 409
    assert json.loads(raised.value.response.body)["message"] == (
        f"volume 'home' (claim {RWO_CLAIM}) is ReadWriteOnce: the 2 nodes of a job cannot all "
        "mount it; ask an admin for a ReadWriteMany volume"
    )
