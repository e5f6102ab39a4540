"""What exec and port-forward share: the pod must be running, and its container is named by
the ``container`` query parameter unless it has only one (the API server's rules and words)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .errors import bad_request
from .kubelet import Kubelet, PodRun
from .resources import ResourceType
from .store import Obj, Store

#: channel-multiplexing websocket subprotocols kubernetes clients offer
PROTOCOLS = ("v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io")


def running_pod(
    store: Store, kubelet: Kubelet, rtype: ResourceType, namespace: str | None, name: str
) -> tuple[Obj, PodRun]:
    pod = store.get(rtype, namespace, name)
    run = kubelet.running(namespace or "", name)
    if run is None:
        phase = pod.get("status", {}).get("phase")
        raise bad_request(f"unable to upgrade connection: pod {name} is not running ({phase})")
    return pod, run


def chosen_container(pod: Obj, request: web.Request) -> dict[str, Any]:
    containers = pod["spec"]["containers"]
    wanted = request.query.get("container")
    if wanted is None:
        if len(containers) != 1:
            raise bad_request(
                f"a container name must be specified for pod {pod['metadata']['name']}, "
                f"choose one of: [{' '.join(c['name'] for c in containers)}]"
            )
        return containers[0]  # type: ignore[no-any-return]
    for container in containers:
        if container["name"] == wanted:
            return container  # type: ignore[no-any-return]
    raise bad_request(f"container {wanted} is not valid for pod {pod['metadata']['name']}")
