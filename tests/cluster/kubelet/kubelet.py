"""The test kubelet: any number of nodes of a real control plane, whose pods run as local
processes. It runs in a thread with its own event loop, so a test on any loop (pytest-jupyter's
included) drives it through the sync methods here, which are safe from any thread."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import socket
import ssl
import threading
from collections.abc import Coroutine, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Protocol, TypeVar

from .. import images
from ..binaries import Built
from ..network import Subnet
from ..pki import Authority
from .api import Api
from .cgroups import Cgroups
from .context import ImageContent, Settings
from .dns import ClusterDns
from .logs import LogBook
from .node import NodeAgent, NodeSpec
from .pod_network import PodNetwork

log = logging.getLogger("tests.cluster.kubelet")

T = TypeVar("T")

STOP_SECONDS = 120.0


class ControlPlane(Protocol):
    """What the kubelet needs of ``tests.cluster.control_plane.ControlPlane``."""

    subnet: Subnet | None
    ca: Authority | None
    built: Built
    admin_kubeconfig: Path
    logs_dir: Path

    @property
    def host(self) -> str: ...

    @property
    def apiserver_port(self) -> int: ...

    def node_kubeconfig(self, node: str) -> Path: ...


def top_level_mounts() -> list[str]:
    """The host's mounts right under ``/``, which a container's root gets bound in (``/dev`` is
    the container's own)."""
    entries = [line.split() for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    root = next(fields[0] for fields in entries if fields[4] == "/")
    return sorted(
        {f[4] for f in entries if f[1] == root and f[4] not in ("/", "/dev") and f[0] != root}
    )


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


class Kubelet:
    """Nodes of ``plane``, their pods run under ``root``."""

    def __init__(self, plane: ControlPlane, root: Path) -> None:
        assert plane.subnet is not None and plane.ca is not None, "start the control plane first"
        self.plane = plane
        self.root = root
        self.nodes: dict[str, NodeAgent] = {}
        self.logs = LogBook()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="test-kubelet", daemon=True
        )
        self.network = PodNetwork(plane.subnet.network, plane.host)
        self.cgroups = Cgroups()
        self.dns: ClusterDns | None = None
        self.settings: Settings | None = None
        self._admin: Api | None = None
        self._server_context: ssl.SSLContext | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> Kubelet:
        self.root.mkdir(parents=True, exist_ok=True)
        self.network.start()
        self.cgroups.start()
        try:
            nameserver = self._start_dns()
            release = images.release_images(self.plane.built)
            self.settings = Settings(
                root=self.root / "pods",
                host_ip=self.plane.host,
                apiserver_port=self.plane.apiserver_port,
                network=self.network,
                cgroups=self.cgroups,
                logs=self.logs,
                images=release,
                image_users={reference: image.user for reference, image in release.items()},
                submounts=top_level_mounts(),
                nameserver=nameserver,
            )
            self._server_context = self._serving_context()
            self._thread.start()
            self._admin = Api(self.plane.admin_kubeconfig, self.root / "credentials" / "admin")
        except BaseException:
            self.stop()
            raise
        return self

    def _start_dns(self) -> str | None:
        binary = self.plane.built.bin / "coredns"
        if not binary.exists():
            log.warning("no %s: pods get no cluster DNS", binary)
            return None
        self.dns = ClusterDns(
            os.fspath(binary),
            self.plane.host,
            self.plane.admin_kubeconfig,
            self.root / "coredns",
            self.plane.logs_dir,
        )
        self.dns.start()
        return self.plane.host

    def _serving_context(self) -> ssl.SSLContext:
        """HTTPS for the kubelet API: a serving certificate from the cluster's CA for the
        nodes' address; callers must present a client certificate from that CA (the API
        server's ``kube-apiserver-kubelet-client``), as a kubelet with ``--client-ca-file``
        requires."""
        assert self.plane.ca is not None
        pair = self.plane.ca.issue(
            "test-kubelet-serving", "test-kubelet", ip_addresses=[self.plane.host], server=True
        )
        context = ssl.create_default_context(
            ssl.Purpose.CLIENT_AUTH, cafile=str(self.plane.ca.pair.cert)
        )
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_cert_chain(pair.cert, pair.key)
        return context

    def _call(self, coroutine: Coroutine[Any, Any, T], timeout: float = STOP_SECONDS) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(timeout)
        except TimeoutError as error:  # say where the kubelet's loop waits, to find why
            error.add_note(self._call(_stacks(), timeout=10))
            raise

    def stop(self, delete_nodes: bool = True) -> None:
        """Kill every pod process, stop every node (deleting the Node objects and their pods'
        objects unless ``delete_nodes`` is False), CoreDNS, the pod network and the cgroups."""
        try:
            if self._thread.is_alive():
                for name in list(self.nodes):
                    self._call(self._stop_node(name, delete=delete_nodes))
                if self._admin is not None:
                    self._call(self._admin.close())
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(30)
            if not self._thread.is_alive():
                self._loop.close()
        finally:
            try:
                if self.dns is not None:
                    self.dns.stop()
            finally:
                self.cgroups.stop()
                self.network.stop()

    # -- nodes ------------------------------------------------------------------------------

    def add_node(
        self,
        name: str,
        *,
        cpu: str = "16",
        memory: str = "64Gi",
        pods: str = "110",
        allocatable: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        taints: Sequence[Mapping[str, str]] = (),
        ready: bool = True,
        cordoned: bool = False,
    ) -> None:
        """Register a node and run the pods bound to it; returns once it is Ready (or NotReady
        when ``ready`` is False) and its pods are watched."""
        spec = NodeSpec(
            name,
            cpu,
            memory,
            pods,
            dict(allocatable or {}),
            dict(labels or {}),
            tuple(taints),
            ready,
            cordoned,
        )
        self._call(self._add_node(spec))

    async def _add_node(self, spec: NodeSpec) -> None:
        assert self.settings is not None and self._admin is not None
        assert self._server_context is not None
        if spec.name in self.nodes:
            raise ValueError(f"node {spec.name} exists already")
        api = Api(self.plane.node_kubeconfig(spec.name), self.root / "credentials" / spec.name)
        agent = NodeAgent(
            spec,
            api,
            self._admin,
            self.settings,
            _free_port(self.plane.host),
            self._server_context,
        )
        # a Node of this name without its kubelet (an earlier test's teardown that ran out of
        # time) would refuse the registration: its objects go first
        await self._delete_node_objects(spec.name)
        self.nodes[spec.name] = agent
        try:
            await agent.start()
        except BaseException:
            del self.nodes[spec.name]  # a node that failed to start is not one
            with contextlib.suppress(Exception):
                await agent.stop()
            await agent.api.close()
            raise

    def set_ready(self, name: str, ready: bool) -> None:
        """The node's kubelet reports Ready, or NotReady (the node lifecycle controller then
        taints it ``node.kubernetes.io/not-ready``); its pods keep running."""
        self._call(self.nodes[name].set_ready(ready))

    def remove_node(self, name: str) -> None:
        """The node goes away as a reclaimed spot VM does: its kubelet fails its pods
        (``reason: Terminated``, condition ``DisruptionTarget``/``TerminationByKubelet``) after
        stopping their containers within their grace periods, then the Node is deleted (its
        pods' objects stay until the pod garbage collector removes them, as on a cluster)."""
        self._call(self._remove_node(name))

    def stop_node(self, name: str) -> None:
        """The node's kubelet stops: its pods' processes are killed, and the Node and its
        pods' objects are deleted (a test's node, gone with the test)."""
        self._call(self._stop_node(name, delete=True))

    async def _remove_node(self, name: str) -> None:
        agent = self.nodes[name]
        await agent.fail_pods(
            "Terminated", "Pod was terminated in response to imminent node shutdown."
        )
        await self._stop_node(name, delete=False)
        assert self._admin is not None
        await self._admin.delete(f"/api/v1/nodes/{name}")

    async def _stop_node(self, name: str, *, delete: bool) -> None:
        agent = self.nodes.pop(name)
        await agent.stop()
        await agent.api.close()
        if delete:
            await self._delete_node_objects(name)

    async def _delete_node_objects(self, name: str) -> None:
        """The Node ``name`` and its pods' objects are deleted (at once: no process is left)."""
        assert self._admin is not None
        await self._admin.delete(f"/api/v1/nodes/{name}")
        pods = await self._admin.get("/api/v1/pods", {"fieldSelector": f"spec.nodeName={name}"})
        for pod in pods.get("items", []):
            metadata = pod["metadata"]
            await self._admin.delete(
                f"/api/v1/namespaces/{metadata['namespace']}/pods/{metadata['name']}",
                {"gracePeriodSeconds": 0},
            )

    # -- what tests look at and change ---------------------------------------------------------

    def processes(self, namespace: str | None = None) -> dict[str, int]:
        """Pod name -> pid of a running container's first process (the first container's when
        several run), of the pods in ``namespace`` (all pods when None)."""
        return self._call(self._processes(namespace))

    async def _processes(self, namespace: str | None) -> dict[str, int]:
        found: dict[str, int] = {}
        for agent in self.nodes.values():
            for worker in agent.workers.values():
                if namespace is not None and worker.namespace != namespace:
                    continue
                for running in worker.running.values():
                    found.setdefault(worker.name, running.process.pid)
        return found

    def fail_image_pull(self, image: str) -> None:
        """Pods using ``image`` get ErrImagePull then ImagePullBackOff and stay Pending."""
        assert self.settings is not None
        self._loop.call_soon_threadsafe(self.settings.failing_images.add, image)

    def pull_image_again(self, image: str) -> None:
        """Undo ``fail_image_pull(image)``: pods using ``image`` start again."""
        assert self.settings is not None
        self._loop.call_soon_threadsafe(self.settings.failing_images.discard, image)

    def forget_images(self) -> None:
        """Every node's images are gone, as after the kubelet's image garbage collection: the
        next pod of each image pulls it again (Pulling, then Pulled after
        ``image_pull_seconds``)."""
        self._call(self._forget_images())

    async def _forget_images(self) -> None:
        for agent in self.nodes.values():
            agent.context.pulled.clear()

    def add_image(
        self, reference: str, files: Mapping[str, Path], env: Mapping[str, str] | None = None
    ) -> None:
        """An image that carries ``files`` (path in the container -> host file or folder,
        bound read-only) and ``env`` (its ``ENV``, which the pod's variables override), on
        top of this machine's programs, which every image stands for."""
        assert self.settings is not None
        content = ImageContent({t: os.fspath(s) for t, s in files.items()}, dict(env or {}))
        self._loop.call_soon_threadsafe(
            self.settings.image_contents.__setitem__, reference, content
        )

    def remove_image(self, reference: str) -> None:
        """Undo ``add_image(reference)``."""
        assert self.settings is not None
        self._loop.call_soon_threadsafe(self.settings.image_contents.pop, reference, None)

    @property
    def image_pull_seconds(self) -> float:
        assert self.settings is not None
        return self.settings.image_pull_seconds

    @image_pull_seconds.setter
    def image_pull_seconds(self, seconds: float) -> None:
        assert self.settings is not None
        self.settings.image_pull_seconds = seconds


async def _stacks() -> str:
    """Where each task of the kubelet's loop waits now (a call that timed out is among them)."""
    out = io.StringIO()
    for task in asyncio.all_tasks():
        if task is not asyncio.current_task():
            task.print_stack(limit=12, file=out)
    return out.getvalue()
