"""Cluster DNS: CoreDNS (built from its Go module with the plugins a cluster's DNS uses, see
``coredns/``) answering ``cluster.local`` from the real Services, EndpointSlices and pods, on
the cluster's address (port 53), which every pod's ``/etc/resolv.conf`` names.

On a cluster CoreDNS runs as pods behind the ``kube-dns`` Service's ClusterIP; nothing here
routes ClusterIPs (there is no kube-proxy), so it runs beside the control plane instead, as the
node-side stand-in's part: the answers are CoreDNS's own (``<svc>.<ns>.svc.cluster.local``,
``<hostname>.<subdomain>.<ns>.svc.cluster.local`` from a headless Service's EndpointSlices with
their ``publishNotReadyAddresses`` rule, ``<a-b-c-d>.<ns>.pod.cluster.local``). A name outside
the cluster domain gets no answer (pods here have no way out of the machine anyway); a
ClusterIP Service's name resolves to its ClusterIP, which nothing routes."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

from ..processes import Component

READY_PORT = 8181
START_SECONDS = 60.0


def corefile(address: str, kubeconfig: Path, domain: str) -> str:
    return f"""{domain}:53 in-addr.arpa:53 ip6.arpa:53 {{
    bind {address}
    ready {address}:{READY_PORT}
    errors
    kubernetes {domain} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 1
    }}
}}
.:53 {{
    bind {address}
    errors
}}
"""


class ClusterDns:
    """The CoreDNS process of one test cluster, logging into ``logs``."""

    def __init__(
        self,
        binary: str,
        address: str,
        kubeconfig: Path,
        folder: Path,
        logs: Path,
        domain: str = "cluster.local",
    ) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        config = folder / "Corefile"
        config.write_text(corefile(address, kubeconfig, domain))
        self.address = address
        self.component = Component("coredns", [binary, "-conf", str(config)], logs / "coredns.log")

    def _ready(self) -> bool:
        try:
            url = f"http://{self.address}:{READY_PORT}/ready"
            with urllib.request.urlopen(url, timeout=5) as answer:
                return bool(answer.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def start(self) -> None:
        """Returns once CoreDNS has synced the cluster's Services and EndpointSlices."""
        self.component.start()
        self.component.wait_until(self._ready, "ready", START_SECONDS)

    def stop(self) -> None:
        self.component.stop()
