"""A flex-start job under the real Kueue: the example's flex-start queue
(``examples/kubernetes/kueue.yaml``: ClusterQueue ``mlinfra-flex`` whose admission check
``dws-prov`` is Kueue's ProvisioningRequest controller) holds the job until its capacity is
provisioned, and the job says why it waits in the provider's words.

No cluster autoscaler runs on the test cluster: the ProvisioningRequest CRD is installed (as an
autoscaler that supports it installs it; ``tests/cluster/addons.py``) and the test plays the
autoscaler, as GKE's queued provisioning would act: it accepts the request that Kueue made for
the job, says the capacity is not there yet, then adds the node and marks the request
``Provisioned``. What Kueue then does is Kueue's own: the check becomes Ready, the workload is
admitted, the Job unsuspended onto the new node, and its pods carry the request they consume."""

from __future__ import annotations

import copy
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from .cluster.admin import MERGE
from .cluster.fixture import KubeCluster
from .jobs_client import TERMINAL, call
from .kube_server import server_config, stop_watches_first, wait_for
from .waits import until

__all__ = ["stop_watches_first"]  # the autouse fixture, for this module too

pytestmark = pytest.mark.kueue_and_jobset

KUEUE_YAML = Path(__file__).parent.parent / "examples" / "kubernetes" / "kueue.yaml"
PROVISIONING = "autoscaling.x-k8s.io/v1"
FLAVOR = "h100x8-flex"
GPU_PRODUCT = "NVIDIA-H100-80GB-HBM3"
WAITING = (
    "Waiting for resources. Currently there are not enough resources available to fulfill the "
    "request."
)
"""GKE's queued provisioning's message while a request waits for capacity."""


def flex_queue(namespace: str) -> list[dict[str, Any]]:
    """The example's flex-start objects (its LocalQueue in ``namespace``) and the priority
    class "normal" that jobs name by default."""
    wanted = {
        ("ResourceFlavor", "h100-flex"),
        ("ClusterQueue", "mlinfra-flex"),
        ("AdmissionCheck", "dws-prov"),
        ("ProvisioningRequestConfig", "dws-config"),
        ("LocalQueue", "flex"),
        ("WorkloadPriorityClass", "normal"),
    }
    found = []
    for document in yaml.safe_load_all(KUEUE_YAML.read_text()):
        if document and (document["kind"], document["metadata"]["name"]) in wanted:
            obj = copy.deepcopy(document)
            if obj["kind"] == "LocalQueue":
                obj["metadata"]["namespace"] = namespace
            found.append(obj)
    assert len(found) == len(wanted)
    return found


@pytest.fixture
def jp_server_config(kube_cluster: KubeCluster) -> dict[str, Any]:
    """The example's flex-start flavor (``kueue.yaml``'s comment), its queue "flex"."""
    config = server_config(kube_cluster)
    config["MLInfraApp"]["flavors"].append(
        {
            "name": FLAVOR,
            "accelerator": {"kind": "nvidia.com/gpu", "model": "H100", "count": 8},
            "cpu": 96,
            "memory": "1Ti",
            "capacity_type": "flex-start",
            "max_nodes": 4,
        }
    )
    config["KubernetesQueues"]["flavor_queues"] = {FLAVOR: "flex"}
    return config


def condition(kind: str, status: str, reason: str, message: str) -> dict[str, Any]:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": now,
    }


def set_conditions(kube_cluster: KubeCluster, request: dict[str, Any], *conditions: Any) -> None:
    """What the autoscaler writes into the request's status (its status subresource)."""
    path = kube_cluster.admin.path(
        PROVISIONING, "ProvisioningRequest", kube_cluster.namespace, request["metadata"]["name"]
    )
    kube_cluster.admin.call(
        "PATCH", f"{path}/status", {"status": {"conditions": list(conditions)}}, content_type=MERGE
    )


async def test_a_flex_start_job_waits_for_its_provisioning_request_then_runs_on_the_new_node(
    jp_fetch: Any, kube_cluster: KubeCluster
) -> None:
    for obj in flex_queue(kube_cluster.namespace):
        kube_cluster.create(obj)

    def check_active() -> bool:
        check = kube_cluster.get("kueue.x-k8s.io/v1beta2", "AdmissionCheck", "dws-prov") or {}
        conditions = check.get("status", {}).get("conditions") or []
        return any(c["type"] == "Active" and c["status"] == "True" for c in conditions)

    async def active() -> bool:
        return check_active()

    await until(active)  # Kueue's provisioning controller runs: the CRD was served at its start
    # no node of the cluster has an H100 now: the flavor's nodes come with the job
    job = await call(
        jp_fetch,
        "jobs",
        "POST",
        {
            "code": "print('on flex capacity')\n",
            "flavor": FLAVOR,
            "procs_per_node": 1,
            "max_runtime_seconds": 600,
        },
    )
    made = kube_cluster.get("batch/v1", "Job", f"mlinfra-{job['id']}-1")
    assert made is not None
    assert made["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "flex"
    assert made["metadata"]["annotations"]["provreq.kueue.x-k8s.io/maxRunDurationSeconds"] == "600"

    async def requested() -> list[dict[str, Any]]:
        return kube_cluster.list(PROVISIONING, "ProvisioningRequest")

    (request,) = await until(requested)
    assert request["spec"]["provisioningClassName"] == "queued-provisioning.gke.io"
    assert request["spec"]["parameters"] == {"maxRunDurationSeconds": "600"}
    (pod_set,) = request["spec"]["podSets"]
    assert pod_set["count"] == 1
    template = kube_cluster.get("v1", "PodTemplate", pod_set["podTemplateRef"]["name"])
    assert template is not None
    (container,) = template["template"]["spec"]["containers"]
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "8"

    async def seen(check: Any) -> Any:
        async def now() -> Any:
            state = await call(jp_fetch, f"jobs/{job['id']}")
            return state if check(state) else None

        return await until(now)

    waiting = await seen(lambda j: "admission check dws-prov" in j["reason"])
    assert waiting["state"] == "queued"
    assert waiting["reason"].startswith("quota reserved; waiting for admission check dws-prov"), (
        waiting
    )

    # the autoscaler accepts the request; the capacity is not there yet
    set_conditions(
        kube_cluster,
        request,
        condition("Accepted", "True", "Accepted", "ProvisioningRequest accepted"),
        condition("Provisioned", "False", "NotProvisioned", WAITING),
    )
    told = await seen(lambda j: WAITING in j["reason"])
    assert told["state"] == "queued"
    assert (
        told["reason"]
        == f"quota reserved; waiting for admission check dws-prov: Pending ({WAITING})"
    )

    # the capacity comes: a node, then the request provisioned
    provisioned = time.time()
    kube_cluster.add_node(
        "flex-0",
        cpu="100",
        memory="1100Gi",
        allocatable={"nvidia.com/gpu": "8"},
        labels={"nvidia.com/gpu.product": GPU_PRODUCT},
    )
    set_conditions(
        kube_cluster,
        request,
        condition("Accepted", "True", "Accepted", "ProvisioningRequest accepted"),
        condition("Provisioned", "True", "Provisioned", "Capacity is provisioned"),
    )
    done = await wait_for(jp_fetch, job["id"], TERMINAL)
    logs = await call(jp_fetch, f"jobs/{job['id']}/logs")
    assert done["state"] == "succeeded", (done, logs)
    assert logs == "on flex capacity\n"
    (pod,) = kube_cluster.list(
        "v1", "Pod", label_selector=f"mlinfra.jupyter.org/job-id={job['id']}"
    )
    assert pod["spec"]["nodeName"] == "flex-0"
    assert pod["spec"]["nodeSelector"]["nvidia.com/gpu.product"] == GPU_PRODUCT  # the flavor's
    annotations = pod["metadata"]["annotations"]
    assert (
        annotations["autoscaling.x-k8s.io/consume-provisioning-request"]
        == request["metadata"]["name"]
    )
    events = (await call(jp_fetch, f"jobs/{job['id']}/events"))["events"]
    assert [e["condition"] for e in events][:3] == ["Queued", "QuotaReserved", "Admitted"]
    assert events[2]["time"] >= provisioned - 1  # admitted once provisioned (whole seconds)
