"""The test kubelet's parts that need no control plane: how a container's environment and
user are made, how volumes are written (a real kubelet's ``..data`` swap), the pod status it
reports, which Node labels it may set itself, and a container started for real in its own
namespaces, root and cgroup (root only)."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.kubelet.cgroups import Cgroups
from tests.cluster.kubelet.containers import CannotRun, environment, process_spec, user
from tests.cluster.kubelet.launcher import ENTER
from tests.cluster.kubelet.node import kubelet_may_set
from tests.cluster.kubelet.pod_network import PodNetwork
from tests.cluster.kubelet.status import PodState, initial_container_status, pod_status
from tests.cluster.kubelet.volumes import MissingSource, Volumes, atomic_write, mounts
from tests.cluster.network import Subnet

from .optional import need


def a_pod(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "p",
            "namespace": "ns",
            "uid": "u-1",
            "labels": {"app": "x"},
            "annotations": {"a": "1"},
        },
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "python"}], **spec},
        "status": {"podIP": "10.244.3.7", "hostIP": "10.244.3.1"},
    }


def test_environment_in_kubernetes_order_with_expansion_and_value_sources() -> None:
    container = {
        "name": "c",
        "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}],
        "env": [
            {"name": "A", "value": "a"},
            {"name": "B", "value": "$(A)-$(CM_K)-$$(A)-$(MISSING)"},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "LABEL", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "S", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
            {
                "name": "MEM",
                "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
            },
        ],
        "resources": {"limits": {"memory": "1536Mi"}},
    }
    data = {("configmap", "cm"): {"K": b"v"}, ("secret", "s"): {"k": b"secret"}}

    def lookup(kind: str, name: str, optional: bool) -> dict[str, bytes] | None:
        return data.get((kind, name))

    env = environment(a_pod(), container, {"PATH": "/bin"}, lookup, {"memory": "64Gi"})
    assert env == {
        "PATH": "/bin",
        "CM_K": "v",
        "A": "a",
        "B": "a-v-$(A)-$(MISSING)",
        "IP": "10.244.3.7",
        "LABEL": "x",
        "S": "secret",
        "MEM": "1536",
    }


def test_a_missing_key_is_a_create_container_config_error_worded_as_upstream() -> None:
    container = {
        "name": "c",
        "env": [{"name": "S", "valueFrom": {"secretKeyRef": {"name": "s", "key": "nope"}}}],
    }
    with pytest.raises(CannotRun) as raised:
        environment(a_pod(), container, {}, lambda *_: {"k": b"v"}, {})
    assert raised.value.reason == "CreateContainerConfigError"
    assert raised.value.message == "couldn't find key nope in Secret ns/s"
    with pytest.raises(CannotRun) as raised:
        environment(a_pod(), container, {}, lambda *_: None, {})
    assert raised.value.message == 'secret "s" not found'


def test_user_from_security_context_with_groups_and_the_images_home() -> None:
    pod = a_pod(securityContext={"runAsUser": 4321, "runAsGroup": 99, "fsGroup": 7})
    assert user(pod, pod["spec"]["containers"][0], None).uid == 4321
    found = user(pod, {"name": "c", "securityContext": {"runAsUser": 5}}, None)
    assert (found.uid, found.gid, found.groups) == (5, 99, (99, 7))
    assert user(pod, pod["spec"]["containers"][0], None).home == "/"  # no such user here
    assert user(a_pod(), {"name": "c"}, None).home == "/root"
    assert user(a_pod(), {"name": "c"}, (65532, 65532)).gid == 65532  # the image's user
    refused = a_pod(securityContext={"runAsNonRoot": True})
    with pytest.raises(CannotRun, match="runAsNonRoot and image will run as root"):
        user(refused, refused["spec"]["containers"][0], None)


def test_python_is_the_test_interpreter_and_other_images_need_a_command() -> None:
    container = {"name": "c", "image": "python:3.12", "command": ["python3", "-c", "$(X)"]}
    spec = process_spec(
        a_pod(),
        {**container, "env": [{"name": "X", "value": "print(1)"}]},
        base_env={},
        lookup=lambda *_: None,
        images={},
        image_user=None,
        allocatable={},
    )
    assert spec.argv == [sys.executable, "-c", "print(1)"]
    assert spec.cwd == "/"
    with pytest.raises(CannotRun, match="explicit command"):
        process_spec(
            a_pod(),
            {"name": "c", "image": "busybox"},
            base_env={},
            lookup=lambda *_: None,
            images={},
            image_user=None,
            allocatable={},
        )


def test_volume_files_are_swapped_at_once_through_a_data_link(tmp_path: Path) -> None:
    atomic_write(tmp_path, {"tls.crt": (b"one", 0o644), "dir/x": (b"x", 0o600)}, None)
    assert os.readlink(tmp_path / "tls.crt") == "..data/tls.crt"
    assert (tmp_path / "tls.crt").read_bytes() == b"one"
    assert ((tmp_path / "dir" / "x").stat().st_mode & 0o777) == 0o600
    first = os.readlink(tmp_path / "..data")
    atomic_write(tmp_path, {"tls.crt": (b"one", 0o644), "dir/x": (b"x", 0o600)}, None)
    assert os.readlink(tmp_path / "..data") == first  # unchanged: nothing rewritten
    atomic_write(tmp_path, {"tls.crt": (b"two", 0o644)}, None)
    assert (tmp_path / "tls.crt").read_bytes() == b"two"
    assert not (tmp_path / "dir").exists()
    assert not (tmp_path / first).exists()
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("..")) == ["tls.crt"]


def test_mounts_put_parents_before_children(tmp_path: Path) -> None:
    (tmp_path / "certs").mkdir()
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "config.yaml").write_text("a: 1")
    container = {
        "volumeMounts": [
            {"name": "certs", "mountPath": "/tmp/k8s-webhook-server/serving-certs/"},
            {
                "name": "cfg",
                "mountPath": "/controller_manager_config.yaml",
                "subPath": "config.yaml",
            },
            {"name": "tmp", "mountPath": "/tmp", "readOnly": True},
        ]
    }
    volumes = {"certs": tmp_path / "certs", "cfg": tmp_path / "cfg", "tmp": tmp_path}
    assert [(m["target"], m["file"], m["readOnly"]) for m in mounts(container, volumes)] == [
        ("/controller_manager_config.yaml", True, False),
        ("/tmp", False, True),
        ("/tmp/k8s-webhook-server/serving-certs", False, False),
    ]


def test_driver_volumes_wait_as_unmountable_and_claims_bind_their_volumes_path(
    tmp_path: Path,
) -> None:
    """NFS and CSI volumes are validated by the API server but mounted by no driver here: the
    pod waits with FailedMount rather than run with an empty folder in their place."""
    pod: dict[str, Any] = {
        "spec": {"volumes": [{"name": "home", "persistentVolumeClaim": {"claimName": "c"}}]}
    }

    def nothing(*args: Any) -> Any:
        raise AssertionError("no content volume here")

    volumes = Volumes(pod, tmp_path, nothing, nothing, {})
    assert volumes.set_up(pod, {"c": "/srv/home"}) == {"home": Path("/srv/home")}
    for source in ({"nfs": {"server": "fs", "path": "/x"}}, {"csi": {"driver": "d"}}):
        pod["spec"]["volumes"] = [{"name": "data", **source}]
        with pytest.raises(MissingSource, match="volumes are not mounted by the test kubelet"):
            volumes.set_up(pod, {})


def test_pod_status_sends_the_kubelets_conditions_and_keeps_their_times() -> None:
    pod = a_pod(initContainers=[{"name": "init", "image": "python"}])
    state = PodState(host_ip="10.244.3.1", ip="10.244.3.9", sandbox_ready=True)
    state.containers = {
        "init": initial_container_status({"name": "init"}, True),
        "c": initial_container_status({"name": "c"}, False),
    }
    status = pod_status(pod, state)
    conditions = {c["type"]: c for c in status["conditions"]}
    assert set(conditions) == {
        "PodReadyToStartContainers",
        "Initialized",
        "ContainersReady",
        "Ready",
    }
    assert conditions["Initialized"]["message"] == "containers with incomplete status: [init]"
    assert status["podIPs"] == [{"ip": "10.244.3.9"}]
    state.initialized = True
    state.phase = "Running"
    state.containers["c"]["state"] = {"running": {"startedAt": "2026-01-01T00:00:00Z"}}
    pod["status"] = {"conditions": [{**conditions["PodReadyToStartContainers"], "x": 1}]}
    again = {c["type"]: c for c in pod_status(pod, state)["conditions"]}
    assert again["PodReadyToStartContainers"]["x"] == 1  # unchanged: the same entry
    assert again["Ready"]["status"] == "True"
    state.ready["c"] = False
    assert {c["type"]: c for c in pod_status(pod, state)["conditions"]}["Ready"][
        "message"
    ] == "containers with unready status: [c]"


def test_node_labels_a_kubelet_may_set_itself() -> None:
    assert kubelet_may_set("kubernetes.io/hostname")
    assert kubelet_may_set("node.kubernetes.io/instance-type")
    assert kubelet_may_set("nvidia.com/gpu.product")
    assert kubelet_may_set("pool")
    assert not kubelet_may_set("node-role.kubernetes.io/worker")
    assert kubelet_may_set("cloud.google.com/gke-spot")
    assert not kubelet_may_set("karpenter.k8s.io/capacity-type")


def test_a_container_in_its_own_namespaces_root_and_cgroup(tmp_path: Path) -> None:
    """Through ``enter.py`` as the kubelet runs it: a file and a folder bound at absolute
    paths that do not exist on the host (they stay off the host), the pod's hostname and
    address, a non-root user, a private /dev; then a memory limit the kernel enforces."""
    need(os.geteuid() == 0, "namespaces, mounts and cgroups need root")
    subnet = Subnet.claim()
    network = PodNetwork(subnet.network, subnet.host)
    cgroups = Cgroups()
    network.start()
    cgroups.start()
    try:
        sandbox = network.add_pod()
        config = tmp_path / "config.yaml"
        config.write_text("hello: 1\n")
        certs = tmp_path / "certs"
        certs.mkdir()
        (certs / "tls.crt").write_text("cert")
        hosts = tmp_path / "hosts"
        hosts.write_text(f"127.0.0.1 localhost\n{sandbox.ip} pod-a\n")
        mark = secrets.token_hex(4)  # paths no one else has on this machine
        config_path, certs_path = f"/config-{mark}.yaml", f"/tmp/webhook-{mark}/serving-certs"
        script = (
            "import json, os, socket\n"
            f"print(json.dumps([open('{config_path}').read(),"
            f" os.listdir('{certs_path}'), os.getuid(),"
            " socket.gethostname(), socket.gethostbyname(socket.gethostname()),"
            " sorted(os.listdir('/dev')),"
            " sum(' - nsfs ' in line for line in open('/proc/self/mountinfo'))]))\n"
            f"open('/written-{mark}', 'w').write('x')\n"
        )

        def launch(name: str, argv: list[str], uid: int, limit: int | None) -> tuple[int, str]:
            cgroup = cgroups.container(name, limit)
            folder = tmp_path / name
            for part in ("upper", "work", "rootfs"):
                (folder / part).mkdir(parents=True)
            spec = {
                "cgroup": cgroup.procs,
                "netns": sandbox.path,
                "hostname": "pod-a",
                "rootfs": {
                    "target": str(folder / "rootfs"),
                    "upper": str(folder / "upper"),
                    "work": str(folder / "work"),
                    "submounts": ["/proc", "/sys"],
                },
                "mounts": [
                    {"source": str(config), "target": config_path, "file": True, "readOnly": True},
                    {"source": str(certs), "target": certs_path, "file": False, "readOnly": True},
                    {"source": str(hosts), "target": "/etc/hosts", "file": True, "readOnly": False},
                ],
                "user": {"uid": uid, "gid": uid, "groups": [uid]},
                "cwd": "/",
                "argv": argv,
                "env": {"PATH": "/usr/bin:/bin"},
            }
            launch_file = folder / "launch.json"
            launch_file.write_text(json.dumps(spec))
            report, report_w = os.pipe()
            done = subprocess.Popen(
                [sys.executable, "-I", "-S", str(ENTER), str(launch_file), str(report_w)],
                pass_fds=(report_w,),
                stdout=subprocess.PIPE,
            )
            os.close(report_w)
            assert os.read(report, 4096) == b""
            os.close(report)
            out, _ = done.communicate(timeout=60)
            kills = cgroup.oom_kills()
            asyncio.run(cgroup.remove())
            return kills, out.decode()

        kills, out = launch("sees", [sys.executable, "-c", script], 1000, None)
        seen = json.loads(out)
        assert seen[:5] == ["hello: 1\n", ["tls.crt"], 1000, "pod-a", sandbox.ip]
        assert {"null", "zero", "urandom", "shm", "pts"} <= set(seen[5])
        assert seen[6] == 0  # no other pod's network namespace kept alive by this one
        assert kills == 0
        for path in (config_path, f"/tmp/webhook-{mark}", f"/written-{mark}"):
            assert not os.path.lexists(path), f"{path} leaked onto the host"
        hog = "x = bytearray(256 * 1024 * 1024)"
        kills, _ = launch("hog", [sys.executable, "-c", hog], 0, 64 * 1024 * 1024)
        assert kills == 1
    finally:
        cgroups.stop()
        network.stop()
        subnet.release()
