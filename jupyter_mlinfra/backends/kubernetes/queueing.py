"""Who queues this server's jobs on a cluster: Kueue, in the API version the cluster serves,
or nobody. Pure.

The answer is the backend's (``GET capacity`` and ``whoami`` say it, and the quota left in
the flavors' ClusterQueues depends on it) as much as the jobs service's (which submits to
Kueue or starts jobs at once), so it is found by the backend (``kueue_queues``) and only read
by the jobs service.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from ...models import catalog as wire

KUEUE_GROUP = "kueue.x-k8s.io"
VISIBILITY_GROUP = "visibility.kueue.x-k8s.io"
KUEUE_VERSIONS = ("v1beta2", "v1beta1")
"""Kueue's API versions this server speaks, newest first: Kueue serves ``v1beta2`` since
v0.15, stores it since v0.16 and plans to stop serving ``v1beta1``; the fields read here
(Workload conditions and admission checks, LocalQueue ``clusterQueue``, ClusterQueue resource
groups and ``flavorsReservation``, ResourceFlavor node labels and taints) are the same in
both, and the visibility API's pending workloads too."""


@dataclass(frozen=True)
class Queueing:
    """Who queues this server's jobs, as discovery found and ``KubernetesQueues.kueue`` chose."""

    by: Literal["kueue", "none"]
    """``kueue``, or ``none``: jobs start at once and only the scheduler decides."""
    reason: str
    """Why, for admins and users (empty under Kueue)."""
    kueue_api: str = ""
    """``kueue.x-k8s.io/v1beta2`` or ``v1beta1``, as served; empty when Kueue is not."""
    visibility_api: str = ""
    """Kueue's visibility API (queue positions) as served; empty when it is not."""
    refused: bool = False
    """``kueue = 'required'`` and no Kueue: jobs are refused rather than started."""

    def to_json(self) -> wire.Queueing:
        return {"by": self.by, "api": self.kueue_api, "reason": self.reason}


def queueing(mode: str, kueue_api: str, visibility_api: str) -> Queueing:
    """Whether Kueue queues jobs, from ``KubernetesQueues.kueue`` (``mode``) and the Kueue API
    version the cluster serves ("" for none)."""
    if mode == "off":
        return Queueing(
            "none",
            "c.KubernetesQueues.kueue is 'off': jobs start at once and the cluster's scheduler "
            "decides; no ClusterQueue quota applies",
        )
    if kueue_api:
        return Queueing("kueue", "", kueue_api, visibility_api)
    missing = (
        f"the cluster serves no Kueue Workload API ({KUEUE_GROUP} {' or '.join(KUEUE_VERSIONS)})"
    )
    if mode == "on":
        return Queueing(
            "kueue",
            f"c.KubernetesQueues.kueue is 'on' but {missing}: jobs wait suspended until Kueue "
            "is installed",
        )
    if mode == "required":
        return Queueing(
            "none",
            f"Kueue is required (c.KubernetesQueues.kueue = 'required') but {missing}: jobs "
            "are refused",
            refused=True,
        )
    return Queueing(
        "none",
        f"Kueue is not installed ({missing}): jobs start at once, outside any ClusterQueue "
        "quota; set c.KubernetesQueues.kueue = 'required' to refuse jobs instead",
    )
