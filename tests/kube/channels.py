"""What exec and port-forward share: websocket subprotocols, and a pod that must be running
(the API server's rules and words)."""

from __future__ import annotations

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
