"""Defaulting done by the API server on create, so objects read back look like a cluster's:
pod and container defaults, QoS class, Service cluster IPs, Job selectors and labels."""

from __future__ import annotations

import copy
import itertools
from typing import Any

from .resources import ResourceType
from .store import Obj, meta

_CLUSTER_IPS = itertools.count(1)


def _container_defaults(container: dict[str, Any]) -> None:
    image = container.get("image", "")
    tag = image.rsplit("/", 1)[-1]
    latest = ":" not in tag or tag.endswith(":latest")
    container.setdefault(
        "imagePullPolicy", "Always" if latest and "@" not in tag else "IfNotPresent"
    )
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    resources = container.setdefault("resources", {})
    limits = resources.get("limits") or {}
    if limits:
        requests = resources.setdefault("requests", {})
        for key, value in limits.items():
            requests.setdefault(key, value)
    for port in container.get("ports") or []:
        port.setdefault("protocol", "TCP")


def pod_spec_defaults(spec: dict[str, Any]) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("serviceAccountName", spec.get("serviceAccount", "default"))
    spec.setdefault("securityContext", {})
    spec.setdefault("enableServiceLinks", True)
    for container in [*spec.get("initContainers", []), *spec.get("containers", [])]:
        _container_defaults(container)
    for toleration in (
        {
            "key": "node.kubernetes.io/not-ready",
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": 300,
        },
        {
            "key": "node.kubernetes.io/unreachable",
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": 300,
        },
    ):
        tolerations = spec.setdefault("tolerations", [])
        if toleration not in tolerations:
            tolerations.append(toleration)


def qos_class(spec: dict[str, Any]) -> str:
    """Guaranteed when every container's cpu and memory requests equal limits, BestEffort when
    nothing is requested, Burstable otherwise (the kubelet's rule)."""
    containers = spec.get("containers", [])
    resources = [c.get("resources") or {} for c in containers]
    if not any((r.get("requests") or r.get("limits")) for r in resources):
        return "BestEffort"
    for r in resources:
        limits, requests = r.get("limits") or {}, r.get("requests") or {}
        for key in ("cpu", "memory"):
            if key not in limits or requests.get(key, limits[key]) != limits[key]:
                return "Burstable"
    return "Guaranteed"


def _pod(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    pod_spec_defaults(spec)
    obj["status"] = {"phase": "Pending", "qosClass": qos_class(spec)}


def _service(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    if spec.get("clusterIP") != "None":
        n = next(_CLUSTER_IPS)
        spec["clusterIP"] = f"10.96.{n // 250}.{n % 250 + 1}"
    spec["clusterIPs"] = [spec["clusterIP"]]
    for port in spec.get("ports") or []:
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port.get("port"))
    obj.setdefault("status", {"loadBalancer": {}})


def _job(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    uid = meta(obj)["uid"]
    name = meta(obj)["name"]
    if spec.get("parallelism") is None and spec.get("completions") is None:
        spec["completions"] = 1
    spec.setdefault("parallelism", 1)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("backoffLimit", 2147483647 if "backoffLimitPerIndex" in spec else 6)
    spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
    spec.setdefault("manualSelector", False)
    owned = {
        "batch.kubernetes.io/controller-uid": uid,
        "batch.kubernetes.io/job-name": name,
        "controller-uid": uid,
        "job-name": name,
    }
    if not spec.get("manualSelector"):
        spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
        template_meta = spec.setdefault("template", {}).setdefault("metadata", {})
        template_meta.setdefault("labels", {}).update(owned)
    pod_spec_defaults(spec.setdefault("template", {}).setdefault("spec", {}))
    obj.setdefault("status", {})


def _namespace(obj: Obj) -> None:
    meta(obj).setdefault("labels", {})["kubernetes.io/metadata.name"] = meta(obj)["name"]
    obj.setdefault("spec", {"finalizers": ["kubernetes"]})
    obj["status"] = {"phase": "Active"}


_ON_CREATE = {
    ("", "Pod"): _pod,
    ("", "Service"): _service,
    ("batch", "Job"): _job,
    ("", "Namespace"): _namespace,
}


def schema_defaults(schema: dict[str, Any] | None, value: Any) -> Any:
    """Fill ``default`` values of a structural schema into ``value`` (returns a new value)."""
    if schema is None:
        return value
    if isinstance(value, dict) and "properties" in schema:
        result = dict(value)
        for key, child in schema["properties"].items():
            if key not in result and "default" in child:
                result[key] = copy.deepcopy(child["default"])
            if key in result:
                result[key] = schema_defaults(child, result[key])
        return result
    if isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        return {k: schema_defaults(schema["additionalProperties"], v) for k, v in value.items()}
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [schema_defaults(schema["items"], item) for item in value]
    return value


def apply_defaults(rtype: ResourceType, obj: Obj, old: Obj | None) -> None:
    """Admission step: default a new object in place (updates keep what they send, but
    custom objects get their schema's defaults on every write, as the API server does)."""
    if rtype.schema is not None:
        obj.update(schema_defaults(rtype.schema, obj))
    if old is not None:
        if rtype.kind == "Service" and not rtype.group:
            spec = obj.setdefault("spec", {})
            for key in ("clusterIP", "clusterIPs"):
                if key in (old.get("spec") or {}):
                    spec.setdefault(key, copy.deepcopy(old["spec"][key]))
        return
    default = _ON_CREATE.get((rtype.group, rtype.kind))
    if default is not None:
        default(obj)
