"""``ClusterFixture``: the in-repo test API server and its controllers, in their own thread.

Not a Kubernetes distribution: a test fixture that speaks enough of the Kubernetes REST API
for the real ``kubernetes_asyncio`` client (through a kubeconfig), and runs pods as local
processes. Its event loop runs in a thread of its own so tests on any loop (pytest-jupyter's
included) can talk to it over HTTP, and its sync accessors are safe to call from tests."""

from __future__ import annotations

import asyncio
import builtins
import secrets
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from aiohttp import web

from .crds import ADDONS, addon_types
from .defaults import apply_defaults
from .deletion import Deleter
from .dns import ClusterDns
from .events import Recorder
from .execute import ExecEndpoint
from .http import ApiServer
from .jobs import JobController
from .jobset import JobSetController
from .kubelet import Kubelet
from .kueue import KueueController
from .logs import LogBook, LogEndpoint
from .portforward import PortForwardEndpoint
from .resources import Registry
from .scheduler import Scheduler
from .selectors import parse_label_selector
from .store import Obj, Store, meta
from .validation import validate
from .volumes import Volumes

T = TypeVar("T")


class ClusterFixture:
    """A test API server on 127.0.0.1 with scheduler, kubelet and Job controller."""

    def __init__(self, root: Path, namespace: str = "mlinfra-test") -> None:
        self.root = root
        self.namespace = namespace
        self.token = secrets.token_urlsafe(24)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="cluster-fixture", daemon=True
        )
        self._thread.start()
        self._stopped = False
        self.port = self._call_async(self._start)
        self.server_url = f"http://127.0.0.1:{self.port}"
        self.kubeconfig = root / "kubeconfig"
        self.kubeconfig.write_text(yaml.safe_dump(self._kubeconfig()))
        self.kubeconfig.chmod(0o600)
        for name in dict.fromkeys(("default", "kube-system", namespace)):
            self.add_namespace(name)
        self.add_node("node-0")

    # -- plumbing --------------------------------------------------------------------------

    def _call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``function`` on the fixture's loop (where the store lives) and wait for it."""

        async def run() -> T:
            return function(*args, **kwargs)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=60)

    def _call_async(self, function: Callable[[], Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(function(), self._loop).result(timeout=60)

    async def _start(self) -> int:
        self.registry = Registry()
        self.store = Store()
        self.store.admission.append(apply_defaults)
        self.store.validator = validate
        self.deleter = Deleter(self.store, self.registry)
        self.recorder = Recorder(self.store, self.registry)
        self.api = ApiServer(self.store, self.registry, self.deleter, self.token)
        self.dns = ClusterDns(self.store, self.registry, self.root / "dns")
        self.logs = LogBook()
        self.api.subresources[("", "pods", "log")] = LogEndpoint(self.store, self.logs)
        self.scheduler = Scheduler(self.store, self.registry, self.recorder)
        volumes = Volumes(self.store, self.registry, self.root / "claims", self.token)
        self.kubelet = Kubelet(
            self.store,
            self.registry,
            self.recorder,
            self.dns,
            volumes,
            self.logs,
            self.root / "pods",
        )
        self.api.subresources[("", "pods", "exec")] = ExecEndpoint(self.store, self.kubelet)
        self.api.subresources[("", "pods", "portforward")] = PortForwardEndpoint(
            self.store, self.kubelet
        )
        self.jobs = JobController(self.store, self.registry, self.recorder, self.deleter)
        self.installed: set[str] = set()
        # handler_cancellation: a client that hangs up ends its watch or log stream at once
        self._runner = web.AppRunner(
            self.api.app, handle_signals=False, handler_cancellation=True, shutdown_timeout=5
        )
        await self._runner.setup()
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        site = web.SockSite(self._runner, listener)
        await site.start()
        return int(listener.getsockname()[1])

    def _kubeconfig(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "preferences": {},
            "clusters": [{"name": "cluster-fixture", "cluster": {"server": self.server_url}}],
            "users": [{"name": "tester", "user": {"token": self.token}}],
            "contexts": [
                {
                    "name": "cluster-fixture",
                    "context": {
                        "cluster": "cluster-fixture",
                        "user": "tester",
                        "namespace": self.namespace,
                    },
                }
            ],
            "current-context": "cluster-fixture",
        }

    def _type(self, api_version: str, kind: str) -> Any:
        rtype = self.registry.by_kind(api_version, kind)
        if rtype is None:
            raise KeyError(f"the cluster fixture does not serve {api_version} {kind}")
        return rtype

    # -- setting the cluster up ------------------------------------------------------------

    def add_namespace(self, name: str) -> Obj:
        return self.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    def add_node(
        self,
        name: str,
        *,
        cpu: str = "16",
        memory: str = "64Gi",
        allocatable: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
        taints: list[dict[str, str]] | None = None,
        ready: bool = True,
        cordoned: bool = False,
    ) -> Obj:
        """A Ready node; ``allocatable`` adds extended resources (``{"nvidia.com/gpu": "8"}``).
        ``ready=False`` makes it NotReady, tainted ``node.kubernetes.io/not-ready`` as the node
        controller does; ``cordoned`` marks it unschedulable as ``kubectl cordon`` does."""
        resources = {"cpu": cpu, "memory": memory, "pods": "110", **(allocatable or {})}
        taints = [*(taints or [])]
        if not ready:
            taints.append({"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"})
        spec: dict[str, Any] = {"taints": taints} if taints else {}
        if cordoned:
            spec["unschedulable"] = True
        return self.create(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "labels": {
                        "kubernetes.io/hostname": name,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        **(labels or {}),
                    },
                },
                "spec": spec,
                "status": {
                    "capacity": resources,
                    "allocatable": resources,
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True" if ready else "Unknown",
                            "reason": "KubeletReady" if ready else "NodeStatusUnknown",
                            "message": "kubelet is posting ready status"
                            if ready
                            else "Kubelet stopped posting node status.",
                        }
                    ],
                    "addresses": [
                        {"type": "InternalIP", "address": "127.0.0.1"},
                        {"type": "Hostname", "address": name},
                    ],
                },
            }
        )

    def install(self, addon: str) -> None:
        """Add ``"jobset"`` or ``"kueue"``: their CRDs (read from ../shared/kubernetes/crds)
        become served kinds, visible in discovery, and their controllers start."""
        if addon not in ADDONS:
            raise ValueError(f"unknown add-on {addon!r}: choose one of {sorted(ADDONS)}")
        self._call(self._install, addon)

    def _install(self, addon: str) -> None:
        if addon in self.installed:
            return
        types = addon_types(addon)
        for rtype in types:
            self.registry.add(rtype)
        self.installed.add(addon)
        if addon == "jobset":
            JobSetController(self.store, self.registry, self.recorder, self.deleter, types[0])
            return
        kueue = KueueController(self.store, self.registry, self.recorder)
        for rtype in kueue.visibility_types():
            self.registry.add(rtype)
            self.api.subresources[(rtype.group, rtype.plural, "pendingworkloads")] = (
                kueue.pending_workloads
            )

    def remove_node(self, name: str) -> None:
        self._call(self.deleter.delete, self._type("v1", "Node"), None, name)

    def fail_image_pull(self, image: str) -> None:
        """Pods using ``image`` get ErrImagePull / ImagePullBackOff instead of starting."""
        self._call(self.kubelet.failing_images.add, image)

    @property
    def image_pull_seconds(self) -> float:
        return self.kubelet.image_pull_seconds

    @image_pull_seconds.setter
    def image_pull_seconds(self, seconds: float) -> None:
        self.kubelet.image_pull_seconds = seconds

    # -- sync accessors for assertions -----------------------------------------------------

    def create(self, obj: Obj) -> Obj:
        """Create any served object (validated, as from a client)."""
        rtype = self._type(obj["apiVersion"], obj["kind"])
        namespace = meta(obj).get("namespace", self.namespace) if rtype.namespaced else None
        return self._call(self.store.create, rtype, namespace, obj, checked=True)

    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> Obj | None:
        rtype = self._type(api_version, kind)
        where = (namespace or self.namespace) if rtype.namespaced else None
        return self._call(self.store.find, rtype, where, name)

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
    ) -> builtins.list[Obj]:
        """Objects of a kind; ``namespace=None`` lists every namespace."""
        rtype = self._type(api_version, kind)
        selected = parse_label_selector(label_selector)
        return self._call(
            self.store.list, rtype, namespace, lambda obj: selected(meta(obj).get("labels") or {})
        )

    def events(self, namespace: str | None = None) -> builtins.list[Obj]:
        return self.list("v1", "Event", namespace or self.namespace)

    def processes(self) -> dict[str, int]:
        """Pod name -> pid of a running container process."""
        return self._call(self.kubelet.processes)

    def forbid(self, group: str, plural: str) -> None:
        """Answer 403 Forbidden to every request on ``plural`` of API ``group`` from now on, as
        when the server's Role does not grant it."""
        self.api.forbidden.add((group, plural))

    def rotate_token(self) -> str:
        """Accept a new bearer token, and no longer the current one (as when an exec plugin's
        credential expires or the kubelet rotates a projected token); returns the new one."""
        self.token = secrets.token_urlsafe(24)
        self.api.token = self.token
        return self.token

    def make_unavailable(self, group: str, plural: str) -> None:
        """Answer 503 to every request on ``plural`` of API ``group`` from now on, as the API
        server does for an aggregated API (Kueue's visibility API) whose server is down."""
        self.api.unavailable.add((group, plural))

    def drop_watches(self) -> None:
        """End every open watch stream (clients must reconnect and resume)."""
        self._call(self.api.drop_watches)

    def compact(self) -> None:
        """Forget the change history: resuming a watch from an older version gets 410 Gone."""
        self._call(self.store.compact)

    @property
    def requests(self) -> builtins.list[tuple[str, str]]:
        """(method, path with query) of every authenticated API request so far."""
        return list(self.api.requests)

    @property
    def unauthorized(self) -> builtins.list[tuple[str, str]]:
        """(method, path with query) of every request refused with 401 so far."""
        return list(self.api.unauthorized)

    # -- teardown ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Kill every pod process, stop the server and the loop; raise if a controller of the
        fixture crashed meanwhile (a fixture bug must not pass silently)."""
        if self._stopped:
            return
        self._stopped = True
        self._call_async(self.kubelet.stop)
        self._call(self.api.drop_watches)
        self._call_async(self._runner.cleanup)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()
        if self.store.errors:
            raise RuntimeError(f"cluster fixture controllers failed: {self.store.errors!r}")
