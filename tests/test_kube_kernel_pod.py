"""A kernel's pod and Secret (validated against the official schemas) and how its start is
read from the pod and its events."""

from __future__ import annotations

from typing import Any

from jupyter_mlinfra.backends.kubernetes import kernel_pod as pods
from jupyter_mlinfra.backends.kubernetes import manifests
from jupyter_mlinfra.backends.kubernetes.kernel_startup import classify
from jupyter_mlinfra.catalog import Accelerator, Environment, Flavor

from .schema import validate

KERNEL_ID = "0f8fad5b-d9cb-469f-a165-70867728950e"
FLAVOR = Flavor(
    name="h100x1",
    display_name="1 × H100",
    cpu=4,
    memory_bytes=32 * 2**30,
    accelerator=Accelerator(kind="nvidia.com/gpu", model="H100", count=1),
)
PYTORCH = Environment(
    name="pytorch",
    display_name="PyTorch",
    framework="pytorch",
    image="pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime",
    env={"HF_HOME": "/cache/hf"},
)
OPTIONS = pods.KernelPodOptions(init_image="ghcr.io/jupyter-mlinfra/kernel-init:1", port=50000)


def pod() -> dict[str, Any]:
    return pods.kernel_pod(
        kernel_id=KERNEL_ID,
        namespace="jupyter-ann",
        owner="Ann Smith",
        flavor=FLAVOR,
        environment=PYTORCH,
        options=OPTIONS,
        env={"TZ": "UTC"},
        expires_at=1_800_000_000.5,
    )


def test_kernel_pod_and_secret_are_valid_objects() -> None:
    validate(pod())
    labels = pod()["metadata"]["labels"]
    secret = pods.key_secret(KERNEL_ID, "jupyter-ann", labels, "k" * 64)
    validate(secret)
    assert secret["metadata"]["name"] == f"kernel-{KERNEL_ID}-key"


def test_kernel_pod_runs_the_launcher_in_the_environments_image() -> None:
    manifest = pod()
    spec = manifest["spec"]
    assert manifest["metadata"]["name"] == f"kernel-{KERNEL_ID}"
    assert manifest["metadata"]["labels"][pods.LABEL_KERNEL_ID] == KERNEL_ID
    assert manifest["metadata"]["annotations"] == {
        "mlinfra.jupyter.org/owner": "Ann Smith",
        "mlinfra.jupyter.org/flavor": "h100x1",
        "mlinfra.jupyter.org/environment": "pytorch",
        "mlinfra.jupyter.org/kernel-port": "50000",
        "mlinfra.jupyter.org/expires-at": "1800000000",
    }
    assert spec["restartPolicy"] == "Never"
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    (init,) = spec["initContainers"]
    assert init["command"] == ["cp", "-R", "/opt/mlinfra/.", f"{pods.SHARED_DIR}/"]
    (kernel,) = spec["containers"]
    assert kernel["image"] == PYTORCH.image
    assert kernel["command"] == ["python3", f"{pods.SHARED_DIR}/launcher.py"]
    assert kernel["resources"]["limits"]["nvidia.com/gpu"] == "1"
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in kernel["env"]}
    # every address of the pod: its IP (pod-ip servers) and loopback (kubelets' port-forwards)
    assert "MLINFRA_KERNEL_IP" not in env
    assert env["TZ"] == "UTC" and env["HF_HOME"] == "/cache/hf"
    assert env["OMP_NUM_THREADS"] == "4"
    assert not any("KEY" in name and name != "MLINFRA_KERNEL_KEY_FILE" for name in env)
    assert [p["containerPort"] for p in kernel["ports"]] == list(range(50000, 50006))


def test_a_kernel_pod_lets_in_only_its_owners_server_on_its_ports() -> None:
    """The NetworkPolicy made with each kernel pod: it selects that pod alone, and lets in
    the pods of the server's labels in the server's namespace, on the kernel's six ports;
    for a server outside the cluster (port-forwards, which no policy governs), nobody."""
    labels = pod()["metadata"]["labels"]
    server = {"component": "singleuser-server", "hub.jupyter.org/username": "ann"}
    peer = manifests.server_peer(server, "jupyter-hub")
    policy = pods.kernel_network_policy(KERNEL_ID, "jupyter-ann", labels, 50000, peer)
    validate(policy)
    assert policy == {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": f"kernel-{KERNEL_ID}", "namespace": "jupyter-ann", "labels": labels},
        "spec": {
            "podSelector": {"matchLabels": {pods.LABEL_KERNEL_ID: KERNEL_ID}},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [
                        {
                            "namespaceSelector": {
                                "matchLabels": {"kubernetes.io/metadata.name": "jupyter-hub"}
                            },
                            "podSelector": {"matchLabels": server},
                        }
                    ],
                    "ports": [{"protocol": "TCP", "port": 50000, "endPort": 50005}],
                }
            ],
        },
    }
    ports = [p["containerPort"] for p in pod()["spec"]["containers"][0]["ports"]]
    assert (min(ports), max(ports)) == (50000, 50005)
    closed = pods.kernel_network_policy(KERNEL_ID, "jupyter-ann", labels, 50000, None)
    validate(closed)
    assert closed["spec"]["ingress"] == [] and closed["spec"]["policyTypes"] == ["Ingress"]


def test_connection_info_uses_the_fixed_ports() -> None:
    info = pods.connection_info("10.1.2.3", pods.pod_ports(50000), "abc")
    assert info == {
        "shell_port": 50000, "iopub_port": 50001, "stdin_port": 50002, "control_port": 50003,
        "hb_port": 50004, "ip": "10.1.2.3", "key": "abc", "transport": "tcp",
        "signature_scheme": "hmac-sha256",
    }  # fmt: skip
    assert pods.pod_ports(50000)[-1] == 50005  # the launcher's control port


def event(reason: str, message: str, at: str = "2026-11-26T21:00:00Z") -> dict[str, Any]:
    return {"reason": reason, "message": message, "lastTimestamp": at}


def status(**status: Any) -> dict[str, Any]:
    return {**pod(), "status": status}


def test_start_phases_from_pod_and_events() -> None:
    pending = status(phase="Pending")
    assert classify(pending, []).phase == "scheduling"
    refused = "0/2 nodes are available: 2 Insufficient nvidia.com/gpu."
    unschedulable = classify(pending, [event("FailedScheduling", refused)])
    assert (unschedulable.phase, unschedulable.reason) == (
        "unschedulable",
        f"unschedulable: {refused}",
    )
    for binding in (
        '0/1 nodes are available: persistentvolume "claim-alice" not found. not found',
        '0/1 nodes are available: persistentvolumeclaim "claim-bob" not found. not found',
        "0/2 nodes are available: pod has unbound immediate PersistentVolumeClaims.",
    ):  # the scheduler's cache or the volume controllers end these, not capacity
        waits = classify(pending, [event("FailedScheduling", binding)])
        assert (waits.phase, waits.reason) == (
            "scheduling",
            f"waiting for its volumes: {binding}",
        )
    elsewhere = "0/2 nodes are available: 2 node(s) had volume node affinity conflict."
    assert classify(pending, [event("FailedScheduling", elsewhere)]).phase == "unschedulable"
    scale_up = event("TriggeredScaleUp", "pod triggered scale-up", "2026-11-26T21:00:05Z")
    assert classify(pending, [event("FailedScheduling", refused), scale_up]).phase == "scaling-up"

    gated = {
        **pending,
        "metadata": {**pending["metadata"], "labels": {"kueue.x-k8s.io/queue-name": "default"}},
        "spec": {**pending["spec"], "schedulingGates": [{"name": "kueue.x-k8s.io/admission"}]},
    }
    held = classify(gated, [])
    assert held.phase == "scheduling"
    assert held.reason.startswith("held by Kueue until LocalQueue 'default' admits it"), held

    bound = {**pending, "spec": {**pending["spec"], "nodeName": "gpu-1"}}
    pulling = classify(bound, [event("Pulling", 'Pulling image "pytorch/pytorch"')])
    assert pulling.phase == "pulling" and pulling.since is not None

    waiting = {"state": {"waiting": {"reason": "ErrImagePull", "message": "not found"}},
               "name": "kernel", "image": "nope:1"}  # fmt: skip
    failed = classify({**bound, "status": {"phase": "Pending", "containerStatuses": [waiting]}}, [])
    assert failed.failed and failed.reason == "cannot pull image nope:1: not found"

    oom = {"name": "kernel", "state": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}
    ended = classify({**bound, "status": {"phase": "Failed", "containerStatuses": [oom]}}, [])
    assert ended.failed and ended.reason.startswith("OOMKilled")

    running = {"name": "kernel", "state": {"running": {"startedAt": "2026-11-26T21:01:00Z"}}}
    up = classify({**bound, "status": {"phase": "Running", "containerStatuses": [running]}}, [])
    assert up.phase == "starting"
    assert classify(None, []).reason == "the kernel's pod was deleted"
