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


class PodChannelEndpoint:
    """A websocket subresource of a pod (``exec``, ``portforward``): refused before the
    upgrade, as the API server does, unless the pod is running."""

    def __init__(self, store: Store, kubelet: Kubelet) -> None:
        self.store = store
        self.kubelet = kubelet

    async def __call__(
        self, request: web.Request, rtype: ResourceType, namespace: str | None, name: str
    ) -> web.StreamResponse:
        pod = self.store.get(rtype, namespace, name)
        run = self.kubelet.running(namespace or "", name)
        if run is None:
            phase = pod.get("status", {}).get("phase")
            raise bad_request(f"unable to upgrade connection: pod {name} is not running ({phase})")
        return await self.serve(request, pod, run)

    async def serve(self, request: web.Request, pod: Obj, run: PodRun) -> web.StreamResponse:
        """Answer the request for the running ``pod``."""
        raise NotImplementedError


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
