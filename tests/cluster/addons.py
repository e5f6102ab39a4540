"""Kueue and JobSet, installed from their own release manifests (``build.sh`` renders them), and
the check that their admission webhooks are really served.

The manifests are applied as an admin would (``kubectl apply --server-side``): CRDs, RBAC, the
webhook configurations, Kueue's visibility APIService and the controller Deployment, whose pod
the test kubelet runs (``images.py`` says which binary stands for its image). A webhook counts
as served when a server-side dry-run create comes back changed the way only that webhook
changes it (Kueue suspends a Job that names a queue; JobSet defaults a replicated job's pod
``restartPolicy`` to ``OnFailure``): the API server called it through its Service's endpoint."""

from __future__ import annotations

import functools
import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .control_plane import ControlPlane
from .kubelet import Kubelet

PROBE_NAMESPACE = "default"  # Kueue's default managedJobsNamespaceSelector leaves out kube-system


def _probe_job() -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "webhook-probe",
            "namespace": PROBE_NAMESPACE,
            "labels": {"kueue.x-k8s.io/queue-name": "webhook-probe"},
        },
        "spec": {
            "suspend": False,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "probe", "command": ["true"]}],
                }
            },
        },
    }


def _probe_jobset() -> dict[str, Any]:
    return {
        "apiVersion": "jobset.x-k8s.io/v1alpha2",
        "kind": "JobSet",
        "metadata": {"name": "webhook-probe", "namespace": PROBE_NAMESPACE},
        "spec": {
            "replicatedJobs": [
                {
                    "name": "r",
                    "replicas": 1,
                    "template": {
                        "spec": {
                            "template": {
                                "spec": {
                                    "containers": [
                                        {"name": "c", "image": "probe", "command": ["true"]}
                                    ]
                                }
                            }
                        }
                    },
                }
            ]
        },
    }


def _job_suspended(job: dict[str, Any]) -> bool:
    return bool(job["spec"].get("suspend"))


def _jobset_defaulted(jobset: dict[str, Any]) -> bool:
    pod = jobset["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    return bool(pod.get("restartPolicy") == "OnFailure")


@dataclass(frozen=True)
class Addon:
    name: str
    namespace: str
    deployment: str
    probe: Callable[[], dict[str, Any]]
    probed: Callable[[dict[str, Any]], bool]
    api_services: tuple[str, ...] = ()


ADDONS = {
    "kueue": Addon(
        "kueue",
        "kueue-system",
        "kueue-controller-manager",
        _probe_job,
        _job_suspended,
        ("v1beta1.visibility.kueue.x-k8s.io", "v1beta2.visibility.kueue.x-k8s.io"),
    ),
    "jobset": Addon(
        "jobset", "jobset-system", "jobset-controller-manager", _probe_jobset, _jobset_defaulted
    ),
}


SYSTEM_NODE = "system"


def install_all(plane: ControlPlane, kubelet: Kubelet) -> None:
    """Kueue and JobSet, their pods on a node of their own, ``system``, cordoned once they run
    (so no other pod lands there and capacity counts only the other nodes). Kueue first: its pod
    webhook covers every namespace but its own and kube-system, JobSet's included. Before
    them the ProvisioningRequest CRD, which Kueue's flex-start admission check needs."""
    kubelet.add_node(SYSTEM_NODE, cpu="2", memory="2Gi")
    install_provisioning_requests(plane)
    for name in ("kueue", "jobset"):
        install(plane, name)
    plane.kubectl("cordon", SYSTEM_NODE)


PROVISIONING_REQUESTS = "provisioningrequests.autoscaling.x-k8s.io"


def install_provisioning_requests(plane: ControlPlane) -> None:
    """The ProvisioningRequest CRD, as a cluster autoscaler that supports it installs it (GKE's
    does): Kueue runs its provisioning admission check controller (flex-start) only where that
    API is served when it starts. No autoscaler acts on the requests: a test that wants one
    provisioned adds the node and sets the request's ``Provisioned`` condition, as the
    autoscaler would."""
    plane.apply(plane.built.manifest("provisioningrequest").read_text())
    plane.kubectl(
        "wait", "--for=condition=Established", "--timeout=120s", f"crd/{PROVISIONING_REQUESTS}"
    )


def install(plane: ControlPlane, name: str, timeout: float = 300) -> None:
    """Apply ``name``'s release manifest and wait until its webhooks are served (its pod must
    run: a test kubelet node is needed for that)."""
    apply_manifest(plane, name)
    wait_served(plane, name, timeout)
    plane.after_restart.append(functools.partial(wait_served, plane, name, timeout))


def apply_manifest(plane: ControlPlane, name: str) -> None:
    """The release manifest, applied; returns once its CRDs are established."""
    plane.apply(plane.built.manifest(name).read_text())
    plane.kubectl(
        "wait", "--for=condition=Established", "--timeout=120s", "crd",
        "-l", f"app.kubernetes.io/name={name}",
    )  # fmt: skip


def webhook_answer(plane: ControlPlane, name: str) -> dict[str, Any] | str:
    """The object a server-side dry-run create of ``name``'s probe came back as, or the API
    server's refusal (for example, no endpoint for the webhook's Service yet)."""
    probe = json.dumps(ADDONS[name].probe())
    try:
        out = plane.kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", input=probe)
    except subprocess.CalledProcessError as error:
        return str(error.stderr).strip()
    answer: dict[str, Any] = json.loads(out)
    return answer


def wait_served(plane: ControlPlane, name: str, timeout: float = 300) -> None:
    """Wait until ``name``'s webhooks change its probe and its APIServices are Available."""
    addon = ADDONS[name]
    deadline = time.monotonic() + timeout
    last: dict[str, Any] | str = ""
    while True:
        last = webhook_answer(plane, name)
        if isinstance(last, dict) and addon.probed(last):
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name}'s webhooks were not served within {timeout:.0f} s: {last}")
        time.sleep(1)
    for service in addon.api_services:
        plane.kubectl(
            "wait", "--for=condition=Available", f"--timeout={int(timeout)}s",
            f"apiservice/{service}",
        )  # fmt: skip
