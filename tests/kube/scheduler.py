"""The fixture's scheduler: binds pending pods to nodes whose allocatable resources minus
what bound pods request still fit the pod (cpu, memory, pods, any extended resource), with
nodeSelector, required node affinity and taints/tolerations, or reports why not the way
kube-scheduler does (PodScheduled=False/Unschedulable and a FailedScheduling event)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from .amounts import Amounts, allocatable, pod_requests
from .events import Recorder
from .resources import Registry
from .selectors import node_selector_term_matches
from .store import Change, Obj, Store, meta, now

AFFINITY = "node(s) didn't match Pod's node affinity/selector"


def _tolerated(taint: dict[str, Any], tolerations: list[dict[str, Any]]) -> bool:
    for toleration in tolerations:
        if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
            continue
        if toleration.get("operator") == "Exists":
            if not toleration.get("key") or toleration["key"] == taint.get("key"):
                return True
        elif toleration.get("key") == taint.get("key") and toleration.get("value", "") == taint.get(
            "value", ""
        ):
            return True
    return False


def _selector_fits(spec: dict[str, Any], labels: dict[str, str]) -> bool:
    for key, value in (spec.get("nodeSelector") or {}).items():
        if labels.get(key) != value:
            return False
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms") or []
    return not terms or any(node_selector_term_matches(term, labels) for term in terms)


def reasons(pod: Obj, node: Obj, used: Amounts) -> list[str]:
    """Why ``pod`` cannot go to ``node`` (empty when it can), in kube-scheduler's words and
    filter order: unschedulable, affinity/selector, taints, then every short resource."""
    spec = pod.get("spec") or {}
    if (node.get("spec") or {}).get("unschedulable"):
        return ["node(s) were unschedulable"]
    if not _selector_fits(spec, meta(node).get("labels") or {}):
        return [AFFINITY]
    for taint in (node.get("spec") or {}).get("taints") or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not _tolerated(
            taint, spec.get("tolerations") or []
        ):
            value = f": {taint['value']}" if taint.get("value") else ""
            return [f"node(s) had untolerated taint {{{taint['key']}{value}}}"]
    free = allocatable(node)
    short = []
    for resource, wanted in sorted(pod_requests(spec).items()):
        if wanted and wanted > free.get(resource, 0) - used.get(resource, 0):
            short.append("Too many pods" if resource == "pods" else f"Insufficient {resource}")
    return short


def unschedulable_message(counts: Counter[str], nodes: int) -> str:
    if not nodes:
        return "no nodes available to schedule pods"
    listed = ", ".join(f"{count} {reason}" for reason, count in sorted(counts.items()))
    return f"0/{nodes} nodes are available: {listed}."


class Scheduler:
    """Re-evaluates every pending pod whenever a pod or node changes (one coalesced pass)."""

    def __init__(self, store: Store, registry: Registry, recorder: Recorder) -> None:
        self.store = store
        self.pods = registry.lookup("", "v1", "pods")
        self.nodes = registry.lookup("", "v1", "nodes")
        self.recorder = recorder
        self._pending_pass = False
        store.subscribe(self._on_change)

    def _on_change(self, change: Change) -> None:
        if change.rtype in (self.pods, self.nodes) and not self._pending_pass:
            self._pending_pass = True
            asyncio.get_running_loop().call_soon(self._pass)

    def _usage(self) -> dict[str, Amounts]:
        used: dict[str, Amounts] = {}
        assert self.pods is not None
        for pod in self.store.list(self.pods):
            node = pod.get("spec", {}).get("nodeName")
            if node and pod.get("status", {}).get("phase") not in ("Succeeded", "Failed"):
                used.setdefault(node, Amounts()).add(pod_requests(pod["spec"]))
        return used

    def _pass(self) -> None:
        self._pending_pass = False
        assert self.pods is not None and self.nodes is not None
        pending = self.store.list(
            self.pods,
            where=lambda p: (
                not p["spec"].get("nodeName")
                and not meta(p).get("deletionTimestamp")
                and p["spec"].get("schedulerName", "default-scheduler") == "default-scheduler"
            ),
        )
        if not pending:
            return
        nodes = self.store.list(self.nodes)
        used = self._usage()
        for pod in pending:
            counts: Counter[str] = Counter()
            for node in nodes:
                why = reasons(pod, node, used.get(meta(node)["name"], Amounts()))
                if not why:
                    self._bind(pod, node)
                    used.setdefault(meta(node)["name"], Amounts()).add(pod_requests(pod["spec"]))
                    break
                counts.update(why)
            else:
                self._unschedulable(pod, unschedulable_message(counts, len(nodes)))

    def _set_condition(self, pod: Obj, condition: dict[str, Any]) -> None:
        conditions = [
            c for c in pod["status"].get("conditions", []) if c["type"] != condition["type"]
        ]
        pod["status"]["conditions"] = [*conditions, condition]

    def _bind(self, pod: Obj, node: Obj) -> None:
        assert self.pods is not None
        pod["spec"]["nodeName"] = meta(node)["name"]
        self._set_condition(
            pod,
            {
                "type": "PodScheduled",
                "status": "True",
                "lastProbeTime": None,
                "lastTransitionTime": now(),
            },
        )
        self.store.update(self.pods, pod)
        self.recorder.record(
            pod,
            "Scheduled",
            f"Successfully assigned {meta(pod)['namespace']}/{meta(pod)['name']} to "
            f"{meta(node)['name']}",
            component="default-scheduler",
        )

    def _unschedulable(self, pod: Obj, message: str) -> None:
        assert self.pods is not None
        previous = next(
            (c for c in pod["status"].get("conditions", []) if c["type"] == "PodScheduled"), None
        )
        if previous is not None and previous.get("message") == message:
            return
        self._set_condition(
            pod,
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": message,
                "lastProbeTime": None,
                "lastTransitionTime": now(),
            },
        )
        self.store.update(self.pods, pod)
        self.recorder.record(
            pod, "FailedScheduling", message, component="default-scheduler", warning=True
        )
