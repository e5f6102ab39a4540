"""Volumes as declared, as mounted in pods, and the admin's extras and hook: pure, no cluster
(``test_kube_volumes.py`` has them on the real control plane)."""

from __future__ import annotations

from typing import Any

import pytest
from traitlets import TraitError

from jupyter_mlinfra.backends.kubernetes import storage
from jupyter_mlinfra.backends.kubernetes.claims import (
    affinity_nodes,
    require_nodes,
    shared,
    users_nodes,
)
from jupyter_mlinfra.backends.kubernetes.pod_config import (
    KubernetesPods,
    PodConfig,
    PodRefused,
    customize,
    guard,
    run_hook,
)
from jupyter_mlinfra.backends.kubernetes.room import NodeRoom
from jupyter_mlinfra.catalog import build_catalog
from jupyter_mlinfra.errors import CatalogError, InvalidInput
from jupyter_mlinfra.volumes import Volume, parse_volume, parse_volumes


def test_volumes_are_checked_each_mistake_named_where_it_is() -> None:
    with pytest.raises(CatalogError) as raised:
        build_catalog(
            [{"name": "cpu"}],
            [
                {
                    "name": "e",
                    "volumes": [
                        {"name": "Data", "mount_path": "data", "claim": "x"},
                        {"name": "a", "mount_path": "/data", "claim": "x", "nfs": {}},
                        {"name": "b", "mount_path": "/data/sub", "host_path": "/srv/b"},
                        {"name": "c", "mount_path": "/dev/x", "csi": {"driver": "d"}},
                        {"name": "d", "mount_path": "/d", "nfs": {"server": "fs"}, "size": 1},
                    ],
                }
            ],
        )
    where = "environments[0] 'e'.volumes"
    assert raised.value.problems == [
        f"{where}[0] 'Data'.name: must be a name of lower-case letters, digits and '-' (at "
        "most 40), got 'Data'",
        f"{where}[0] 'Data'.mount_path: must be an absolute path, got 'data'",
        f"{where}[2] 'b': mount_path /data/sub overlaps volume 'a' at /data",
        f"{where}[3] 'c'.mount_path: /dev/x clashes with /dev, which pods use",
        f"{where}[4] 'd': unknown field 'size'; known fields: name, mount_path, read_only, "
        "sub_path, description, claim, nfs, csi, host_path",
        f"{where}[4] 'd'.nfs: must be a mapping with server and path, got {{'server': 'fs'}}",
    ]


def test_a_volume_shows_where_it_comes_from() -> None:
    problems: list[str] = []
    (data,) = parse_volumes(
        [{"name": "data", "mount_path": "/data/", "claim": "data-{username}", "read_only": True,
          "description": "ImageNet"}],
        "volumes",
        problems,
    )  # fmt: skip
    assert problems == []
    assert data.to_json("alice") == {
        "name": "data",
        "mount_path": "/data",
        "read_only": True,
        "kind": "claim",
        "source": "claim data-alice",
        "description": "ImageNet",
    }
    assert data.holds("/data/x/y") and data.holds("/data") and not data.holds("/database")


def test_each_source_becomes_the_pods_volume_and_mount() -> None:
    home = parse_volume(
        {"claim": "claim-{username}", "sub_path": "{username}"}, "home_volume", [], home=True,
        mount_path="/home/jovyan",
    )  # fmt: skip
    assert home is not None
    nfs = Volume("shared", "/shared", read_only=True, nfs={"server": "fs", "path": "/exports"})
    csi = Volume("bucket", "/bucket", csi={"driver": "s3.csi.aws.com",
                                           "volume_attributes": {"bucket": "b"}})  # fmt: skip
    local = Volume("scratch", "/scratch", host_path="/mnt/nvme")
    spec: dict[str, Any] = {"volumes": []}
    container: dict[str, Any] = {"name": "kernel"}
    volumes = storage.mounted(home, (nfs, csi), (local,))
    storage.add_volumes(spec, container, volumes, "Alice Smith")
    assert spec["volumes"] == [
        {"name": "user-home", "persistentVolumeClaim": {"claimName": "claim-alice-smith-2461bba5"}},
        {"name": "vol-shared", "nfs": {"server": "fs", "path": "/exports", "readOnly": True}},
        {"name": "vol-bucket", "csi": {"driver": "s3.csi.aws.com",
                                       "volumeAttributes": {"bucket": "b"}}},
        {"name": "vol-scratch", "hostPath": {"path": "/mnt/nvme", "type": "Directory"}},
    ]  # fmt: skip
    assert container["volumeMounts"] == [
        {"name": "user-home", "mountPath": "/home/jovyan", "subPath": "alice-smith-8ae10dfc"},
        {"name": "vol-shared", "mountPath": "/shared", "readOnly": True},
        {"name": "vol-bucket", "mountPath": "/bucket"},
        {"name": "vol-scratch", "mountPath": "/scratch"},
    ]
    assert storage.working_dir("/home/jovyan/project", volumes) == "/home/jovyan/project"
    assert storage.working_dir("/opt/elsewhere", volumes) == ""
    assert storage.working_dir("/home/jovyan/../../etc", volumes) == ""
    assert storage.working_dir("/home/jovyan/a/../b/", volumes) == "/home/jovyan/b"
    assert storage.home_env(volumes) == {"HOME": "/home/jovyan"}
    assert storage.results_dir(volumes) == "/home/jovyan/.mlinfra/results"


def test_volumes_that_cannot_be_mounted_together_or_on_a_cluster_are_refused() -> None:
    home = Volume("home", "/home/jovyan", claim="c")
    inside = Volume("data", "/home/jovyan/data", claim="d")
    with pytest.raises(InvalidInput, match="volume 'data' at /home/jovyan/data overlaps"):
        storage.mounted(home, (inside,))
    with pytest.raises(InvalidInput, match="names no source a cluster can mount"):
        storage.volume_source(Volume("folder", "/data"), "alice")


POD: dict[str, Any] = {
    "metadata": {"labels": {"a": "1"}},
    "spec": {
        "securityContext": {"runAsNonRoot": True},
        "nodeSelector": {"pool": "gpu"},
        "volumes": [{"name": "dshm", "emptyDir": {}}],
        "containers": [
            {
                "name": "kernel",
                "resources": {"limits": {"nvidia.com/gpu": "1"}},
                "env": [{"name": "MLINFRA_FLAVOR", "value": "a100"}],
                "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}],
            }
        ],
    },
}


def test_extras_add_to_the_pod_and_never_take_over() -> None:
    config = PodConfig(
        extra_pod={"nodeSelector": {"zone": "a"}, "priorityClassName": "high",
                   "tolerations": [{"key": "k", "operator": "Exists"}]},
        extra_container={"env": [{"name": "MLINFRA_FLAVOR", "value": "x"}, {"name": "A",
                                                                             "value": "1"}]},
        extra_volumes=[{"name": "scratch", "emptyDir": {}}],
        extra_mounts=[{"name": "scratch", "mountPath": "/scratch"}],
    )  # fmt: skip
    pod = customize(POD, "kernel", config)
    spec = pod["spec"]
    assert spec["nodeSelector"] == {"pool": "gpu", "zone": "a"}
    assert spec["priorityClassName"] == "high"
    assert spec["tolerations"] == [{"key": "k", "operator": "Exists"}]
    assert spec["volumes"][-1] == {"name": "scratch", "emptyDir": {}}
    container = spec["containers"][0]
    assert [e["name"] for e in container["env"]] == ["MLINFRA_FLAVOR", "A", "MLINFRA_FLAVOR"]
    assert container["volumeMounts"][-1] == {"name": "scratch", "mountPath": "/scratch"}
    assert POD["spec"]["nodeSelector"] == {"pool": "gpu"}  # a copy was changed

    conflicting = PodConfig(extra_pod={"nodeSelector": {"pool": "cpu"}})
    with pytest.raises(PodRefused, match=r'nodeSelector\.pool = "cpu" conflicts'):
        customize(POD, "kernel", conflicting)
    with pytest.raises(PodRefused, match="no volume 'nowhere' in the pod"):
        customize(POD, "kernel", PodConfig(extra_mounts=[{"name": "nowhere", "mountPath": "/n"}]))
    with pytest.raises(PodRefused, match="volume 'dshm' is the pod's own name"):
        customize(POD, "kernel", PodConfig(extra_volumes=[{"name": "dshm", "emptyDir": {}}]))


def test_settings_that_would_take_over_are_refused_at_start() -> None:
    with pytest.raises(TraitError, match="extra_container_config may not set 'resources': that"):
        KubernetesPods(extra_container_config={"resources": {}})
    with pytest.raises(TraitError, match="extra_pod_config may not set 'volumes': that is extra_v"):
        KubernetesPods(extra_pod_config={"volumes": []})
    with pytest.raises(TraitError, match="home_volume: needs a source"):
        KubernetesPods(home_volume={"mount_path": "/home/jovyan"})
    with pytest.raises(TraitError, match="needs a name and an absolute mountPath"):
        KubernetesPods(extra_volume_mounts=[{"name": "x", "mountPath": "x"}])
    settings = KubernetesPods(home_volume={"claim": "claim-{username}"}).settings("/home/me")
    assert settings.home == Volume("home", "/home/me", claim="claim-{username}")


async def test_a_hook_may_change_the_pod_but_not_its_resources_or_security() -> None:
    def relabel(pod: dict[str, Any], context: dict[str, str]) -> None:
        pod["metadata"]["labels"]["kind"] = context["kind"]

    async def grab(pod: dict[str, Any], context: dict[str, str]) -> dict[str, Any]:
        pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = "8"
        return pod

    hooked = await run_hook(relabel, POD, {"kind": "job"})
    guard(POD, hooked, "job's pod template")
    assert hooked["metadata"]["labels"] == {"a": "1", "kind": "job"}
    assert POD["metadata"]["labels"] == {"a": "1"}
    grabbed = await run_hook(grab, POD, {})
    with pytest.raises(PodRefused) as raised:
        guard(POD, grabbed, "kernel pod")
    assert raised.value.message == (
        "KubernetesPods.modify_pod_hook changed the kernel pod's container 'kernel' resources "
        'from {"limits": {"nvidia.com/gpu": "1"}} to {"limits": {"nvidia.com/gpu": "8"}}: '
        "the flavor and the server decide these; the pod was not created"
    )
    with pytest.raises(PodRefused, match="must leave a pod"):
        await run_hook(lambda pod, context: "nothing", POD, {})


def test_where_a_readwriteonce_volume_is() -> None:
    rooms = [
        NodeRoom("node-0", {"zone": "a"}, (), {}, {}, True),
        NodeRoom("node-1", {"zone": "b"}, (), {}, {}, True),
    ]
    local = {"spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]},
    ]}}}}  # fmt: skip
    assert affinity_nodes(local, rooms) == {"node-1"}
    assert affinity_nodes({"spec": {}}, rooms) is None
    mounting = {
        "metadata": {"name": "jupyter-alice"},
        "spec": {"nodeName": "node-0",
                 "volumes": [{"name": "h", "persistentVolumeClaim": {"claimName": "home"}}]},
    }  # fmt: skip
    finished = {**mounting, "status": {"phase": "Succeeded"}}
    assert users_nodes("home", [mounting, finished]) == {"node-0": "jupyter-alice"}
    assert users_nodes("other", [mounting]) == {}
    assert shared({"status": {"accessModes": ["ReadWriteMany"]}}, read_only=False)
    assert not shared({"status": {"accessModes": ["ReadOnlyMany"]}}, read_only=False)
    assert shared({"spec": {"accessModes": ["ReadOnlyMany"]}}, read_only=True)

    spec: dict[str, Any] = {"affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["gpu"]}]},
        ]}}}}  # fmt: skip
    require_nodes(spec, ["node-1"])
    (term,) = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert term == {
        "matchExpressions": [{"key": "pool", "operator": "In", "values": ["gpu"]}],
        "matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-1"]}],
    }
