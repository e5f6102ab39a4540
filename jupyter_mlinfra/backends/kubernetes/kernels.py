"""Kernel pods on the cluster: their settings, and every API call the kernel provisioner makes.

One ``KernelPods`` per server keeps a watched copy of the kernel pods of each namespace it
uses (one list + watch, not a poll per kernel), creates a kernel's Secret and pod, follows its
start through the pod and its events, renews the pods' expiry while this server holds them,
and finds the pods a previous server left (to adopt them, or to delete them once expired).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from traitlets import CaselessStrEnum, Dict, Float, Int, List, Unicode
from traitlets.config import LoggingConfigurable

from ...background import Background
from ...catalog import Environment, Flavor
from ...errors import MLInfraError
from . import kernel_pod as pods
from . import manifests, storage
from .backend import KubernetesBackend
from .claims import require_nodes
from .client import KubernetesCluster
from .kernel_startup import CREATING, Startup, classify
from .manifests import DEFAULT_PYTHON, allowed_env, owner_reference
from .pod_config import PodConfig, customize, guard, run_hook
from .reflector import Reflector
from .rest import PLURALS, KubeError, Rest, path_of

log = logging.getLogger("jupyter_mlinfra.kubernetes")

REVISION_LABELS = frozenset(
    {"pod-template-hash", "controller-revision-hash", "statefulset.kubernetes.io/pod-name",
     "apps.kubernetes.io/pod-index"}
)  # fmt: skip
"""Labels a controller gives each revision or replica of a pod: a replaced server pod (a
rollout) has others, and must still reach the kernels it adopts."""


class KernelStartFailed(MLInfraError):
    """The cluster could not start the kernel; the message is the cluster's reason."""

    status = 409


class KubernetesKernels(LoggingConfigurable):
    """Settings of kernel pods (``c.KubernetesKernels.*``), used when backend is kubernetes."""

    init_image = Unicode(
        "ghcr.io/jupyter-mlinfra/kernel-init:latest",
        config=True,
        help="""Image of the kernel pods' init container (built from kernels/init/Dockerfile):
        it copies the kernel launcher, and ipykernel for images that lack it, into the pod.""",
    )
    init_source = Unicode(
        "/opt/mlinfra",
        config=True,
        help="The directory in the init image that holds launcher.py and site/.",
    )
    kernel_port = Int(
        50000,
        config=True,
        help="""First of the fixed ports a kernel listens on in its pod (the five kernel
        channels, then the launcher's control port): pods have their own network namespace,
        so every kernel can use the same ports.""",
    )
    python = Unicode(
        DEFAULT_PYTHON,
        config=True,
        help="The interpreter in the image that runs the kernel, when an environment names none.",
    )
    image_pull_policy = CaselessStrEnum(
        ["Always", "IfNotPresent", "Never"],
        "IfNotPresent",
        config=True,
        help="imagePullPolicy of kernel pods' containers.",
    )
    service_account = Unicode(
        "",
        config=True,
        help="""ServiceAccount of kernel pods; empty: the namespace's default. Its token is
        never mounted (automountServiceAccountToken is false).""",
    )
    server_pod_labels = Dict(
        value_trait=Unicode(),
        default_value={},
        config=True,
        help="""Labels of the pods a kernel pod accepts connections from (its NetworkPolicy;
        see KubernetesCluster.network_policies), in this server's namespace. Empty: the
        labels of this server's own pod when it runs in one (read once; $HOSTNAME names it),
        such as z2jh's hub.jupyter.org/username, so only the owner's server reaches its
        kernels; outside a pod with connection = 'port-forward', none (port-forwards do not
        pass NetworkPolicies); outside a pod with 'pod-ip', kernel pods get no policy.""",
    )
    env_allowlist = List(
        Unicode(),
        default_value=[],
        config=True,
        help="""Names of the server's environment variables a kernel pod gets (shell-style
        patterns such as 'HF_*'); nothing else of the server's environment reaches a pod.""",
    )
    connection = CaselessStrEnum(
        ["pod-ip", "port-forward"],
        "pod-ip",
        config=True,
        help="""How the server reaches kernel pods: 'pod-ip' connects to the pod's IP (the
        server runs in the cluster); 'port-forward' forwards each kernel port through the
        API server (pods/portforward), for a server outside the cluster. A dropped forward
        reconnects with the next connection ZeroMQ makes.""",
    )
    capacity_timeout = Float(
        600.0,
        config=True,
        help="""Seconds a kernel may wait for a node (scheduling, or a node being added)
        before its start fails.""",
    )
    pull_timeout = Float(
        900.0, config=True, help="Seconds a kernel's image may take to pull before its start fails."
    )
    start_timeout = Float(
        120.0,
        config=True,
        help="Seconds from the kernel's container starting until it answers kernel_info.",
    )
    autoscaler_grace = Float(
        0.0,
        config=True,
        help="""Seconds an unschedulable kernel waits for the cluster autoscaler to add a node
        before its start fails with the scheduler's message; 0 fails at once (a cluster
        without an autoscaler). A scale-up, once announced, is waited for up to
        capacity_timeout.""",
    )
    on_server_stop = CaselessStrEnum(
        ["detach", "delete"],
        "detach",
        config=True,
        help="""What happens to kernel pods when the server stops: 'detach' leaves them running,
        and the next server adopts them with the same kernel ids (open notebooks reconnect);
        'delete' deletes them.""",
    )
    expiry = Float(
        6 * 3600.0,
        config=True,
        help="""Seconds a kernel pod lives after the last renewal by a server: a server renews
        the pods it holds every expiry/4; the pod ends itself once expired, and a server
        deletes expired pods it finds. Bounds how long a pod outlives a server that is gone.""",
    )

    def options(self, cluster: KubernetesCluster) -> pods.KernelPodOptions:
        return pods.KernelPodOptions(
            init_image=self.init_image,
            init_source=self.init_source,
            port=self.kernel_port,
            python=self.python,
            image_pull_policy=self.image_pull_policy,
            service_account=self.service_account,
            run_as=(cluster.run_as_user, cluster.run_as_group),
            placement=cluster.capacity_placement,
        )


@dataclass
class KernelRecord:
    """What GET /kernels shows of a kernel pod this server holds or is starting."""

    kernel_id: str
    owner: str
    flavor: str
    environment: str
    namespace: str
    started: float = field(default_factory=time.time)
    startup: Startup = field(default_factory=lambda: Startup(*CREATING))
    pod_uid: str = ""
    """The uid of the pod this kernel runs in now: its events are those of this uid, never of
    an earlier pod of the same name (a restart replaces the pod, and events outlive it)."""


class _Renewal(Background):
    """Pushes back the expiry of every kernel pod held, each quarter of the expiry."""

    def __init__(self, kernel_pods: KernelPods) -> None:
        self.kernel_pods = kernel_pods

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.kernel_pods.settings.expiry / 4)
            for record in list(self.kernel_pods.records.values()):
                try:
                    await self.kernel_pods.renew(record)
                except (KubeError, OSError, asyncio.TimeoutError) as error:
                    log.warning("kernel %s: expiry not renewed: %r", record.kernel_id, error)


class KernelPods:
    """The kernel pods of one server, and every API call made for them."""

    def __init__(
        self,
        cluster: KubernetesCluster,
        settings: KubernetesKernels,
        environ: Mapping[str, str],
        backend: KubernetesBackend | None = None,
    ) -> None:
        self.cluster = cluster
        self.settings = settings
        self.environ = environ
        self.backend = backend
        """Where ReadWriteOnce volumes are (``claim_nodes``) and what every pod gets."""
        self.pod_config = backend.pod_config if backend is not None else PodConfig()
        self.records: dict[str, KernelRecord] = {}
        self._rest: Rest | None = None
        self._server: tuple[dict[str, str], str] | None = None
        """The labels of the server's pod that kernel pods let in, and its namespace."""
        self._warned = False
        self._watches: dict[str, Reflector] = {}
        self._renewal = _Renewal(self)

    async def rest(self) -> Rest:
        if self._rest is None:
            self._rest = Rest(await self.cluster.api(), self.cluster.request_timeout)
        return self._rest

    async def namespace(self, user: str) -> str:
        """``user``'s namespace (connecting first: it may come from the kubeconfig)."""
        await self.cluster.api()
        return self.cluster.namespace_for(user)

    async def watch(self, namespace: str) -> Reflector:
        """The watched kernel pods of ``namespace`` (started and synced on first use)."""
        if namespace not in self._watches:
            reflector = Reflector(
                await self.rest(), path_of("v1", "pods", namespace), pods.kernel_selector()
            )
            self._watches[namespace] = reflector
            reflector.start()
        reflector = self._watches[namespace]
        await reflector.wait_synced(self.cluster.request_timeout)
        return reflector

    def cached(self, kernel_id: str, namespace: str) -> dict[str, Any] | None:
        """The pod as last seen by the watch: no API call."""
        reflector = self._watches.get(namespace)
        return reflector.objects.get(pods.pod_name(kernel_id)) if reflector else None

    # --- creating and following a start -------------------------------------------------

    async def create(
        self,
        record: KernelRecord,
        flavor: Flavor,
        environment: Environment,
        key: str,
        curve: pods.CurveKeys | None = None,
        encryption: str = "disabled",
        *,
        cwd: str = "",
    ) -> None:
        """The kernel's Secret, then its pod (its uid in ``record``), then the pod as the
        Secret's owner (so the Secret goes with the pod). ``curve`` and ``encryption``: see
        ``kernel_pod``; ``cwd``: the notebook's folder on this server, where the kernel runs
        when a volume of the pod holds it."""
        if not environment.image:
            raise KernelStartFailed(
                f"environment {environment.name!r} has no image: the Kubernetes backend runs"
                " kernels in the environment's container image",
                "environment",
            )
        rest = await self.rest()
        namespace = record.namespace
        await self.watch(namespace)
        manifest = await self._manifest(record, flavor, environment, encryption, cwd)
        labels = pods.kernel_labels(record.kernel_id, record.owner, flavor.name, environment.name)
        attached = [pods.key_secret(record.kernel_id, namespace, labels, key, curve)]
        ingress = await self._ingress(namespace)
        if ingress is not None:  # before the pod: it is never open to others, not even briefly
            port = self.settings.kernel_port
            attached.append(
                pods.kernel_network_policy(record.kernel_id, namespace, labels, port, ingress[0])
            )
        for obj in attached:
            await _create_afresh(rest, obj)
        try:
            pod = await rest.create(manifest)
        except KubeError:
            for obj in attached:
                await rest.delete(_path(obj))
            raise
        record.pod_uid = pod["metadata"]["uid"]
        for obj in attached:  # they go with the pod
            await rest.patch(_path(obj), {"metadata": {"ownerReferences": [owner_reference(pod)]}})

    async def _manifest(
        self,
        record: KernelRecord,
        flavor: Flavor,
        environment: Environment,
        encryption: str,
        cwd: str,
    ) -> dict[str, Any]:
        """The kernel's pod: its volumes, the admin's extras, then the admin's hook, which
        may not change what the flavor and the server decide (``pod_config.guard``)."""
        config = self.pod_config
        volumes = storage.mounted(config.home, environment.volumes, flavor.volumes)
        manifest = pods.kernel_pod(
            kernel_id=record.kernel_id,
            namespace=record.namespace,
            owner=record.owner,
            flavor=flavor,
            environment=environment,
            options=self.settings.options(self.cluster),
            env=allowed_env(self.environ, self.settings.env_allowlist),
            expires_at=time.time() + self.settings.expiry,
            encryption=encryption,
            volumes=volumes,
            working_dir=storage.working_dir(cwd, volumes),
        )
        manifest = customize(manifest, pods.CONTAINER, config)
        context = {"kind": "kernel", "user": record.owner, "namespace": record.namespace,
                   "flavor": flavor.name, "environment": environment.name}  # fmt: skip
        hooked = await run_hook(config.hook, manifest, context)
        guard(manifest, hooked, "kernel pod")
        if self.backend is not None:
            where = await self.backend.claim_nodes(record.namespace, volumes, record.owner, flavor)
            if where:
                require_nodes(hooked["spec"], where)
        return hooked

    async def _ingress(self, namespace: str) -> tuple[dict[str, Any] | None] | None:
        """Whether kernel pods in ``namespace`` get a NetworkPolicy (None: not), and whom it
        lets in: this server's pod, or (None) nobody, for a server outside the cluster, which
        port-forwards. The server's pod is named by ``server_pod_labels``, else by its own
        labels, read once."""
        if not self.cluster.network_policies:
            return None
        if self._server is None:
            labels = dict(self.settings.server_pod_labels)
            own = self.cluster.own_pod()
            if not labels and own is not None:
                labels = await self._own_labels(*own)
            self._server = (labels, own[0] if own is not None else "")
        labels, own_namespace = self._server
        if labels:
            return (manifests.server_peer(labels, own_namespace or namespace),)
        if self.settings.connection == "port-forward":
            return (None,)
        if not self._warned:
            self._warned = True
            log.warning(
                "kernel pods get no NetworkPolicy: this server runs in no pod and reaches "
                "them by their IPs; set c.KubernetesKernels.server_pod_labels to the labels of "
                "the pods they may accept connections from"
            )
        return None

    async def _own_labels(self, namespace: str, name: str) -> dict[str, str]:
        """This server's pod's labels, less those that change when it is replaced."""
        rest = await self.rest()
        try:
            pod = await rest.get(path_of("v1", "pods", namespace, name))
        except KubeError as error:
            pod, why = None, error.message
        else:
            why = "not found"
        if pod is None:
            raise KernelStartFailed(
                f"cannot read this server's pod {namespace}/{name} to let only it reach kernel "
                f"pods ({why}); set c.KubernetesKernels.server_pod_labels, or "
                "c.KubernetesCluster.network_policies = False"
            )
        labels = pod["metadata"].get("labels") or {}
        return {k: v for k, v in labels.items() if k not in REVISION_LABELS}

    async def wait_started(
        self, record: KernelRecord, on_progress: Callable[[Startup], None]
    ) -> dict[str, Any]:
        """Follow the pod until its kernel container runs; its pod then. Fails at once when
        the cluster says the start cannot succeed, and after the phase's timeout otherwise."""
        reflector = await self.watch(record.namespace)
        changed = asyncio.Event()  # set by the events watch; the pod's by the reflector
        events: list[dict[str, Any]] = []
        follow = asyncio.ensure_future(self._follow_events(record, events, changed))
        unschedulable_since: float | None = None
        seen = False
        try:
            while True:
                changed.clear()
                pod = reflector.objects.get(pods.pod_name(record.kernel_id))
                if pod is not None and pod["metadata"].get("uid") != record.pod_uid:
                    pod = None  # the watch still shows the pod this one replaced
                seen = seen or pod is not None
                # just created: the watch may not have brought the pod yet
                startup = classify(pod, events) if seen else record.startup
                if startup != record.startup:
                    record.startup = startup
                    on_progress(startup)
                now = time.time()
                if startup.phase == "unschedulable":
                    unschedulable_since = unschedulable_since or now
                    if now - unschedulable_since >= self.settings.autoscaler_grace:
                        raise KernelStartFailed(startup.reason, "flavor")
                if startup.failed:
                    raise KernelStartFailed(startup.reason)
                if startup.phase == "starting" and pod and pod.get("status", {}).get("podIP"):
                    return pod
                self._check_timeout(record, startup, now)
                await _either(reflector.wait_changed(1.0), changed.wait())
        finally:
            follow.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follow

    def _check_timeout(self, record: KernelRecord, startup: Startup, now: float) -> None:
        limits = {
            "scheduling": ("capacity_timeout", record.started),
            "scaling-up": ("capacity_timeout", record.started),
            "unschedulable": ("capacity_timeout", record.started),
            "pulling": ("pull_timeout", startup.since or now),
        }
        if startup.phase not in limits:
            return
        setting, since = limits[startup.phase]
        limit: float = getattr(self.settings, setting)
        if now - since > limit:
            raise KernelStartFailed(
                f"timed out after {limit:g}s ({setting}): {startup.reason}", "flavor"
            )

    async def _follow_events(
        self, record: KernelRecord, events: list[dict[str, Any]], changed: asyncio.Event
    ) -> None:
        """The events about the kernel's pod, as they come (a watch, resumed on drops): about
        this pod, by uid, not an earlier one of the same name."""
        rest = await self.rest()
        name, uid = pods.pod_name(record.kernel_id), record.pod_uid
        query = {"fieldSelector": f"involvedObject.name={name},involvedObject.uid={uid}"}
        path = path_of("v1", "events", record.namespace)
        version = ""
        while True:
            try:
                if not version:
                    listing = await rest.call("GET", path, query)
                    events[:] = [e for e in listing.get("items") or [] if _about(e, uid)]
                    version = listing.get("metadata", {}).get("resourceVersion", "")
                    changed.set()
                watch = {
                    **query,
                    "watch": "true",
                    "resourceVersion": version,
                    "allowWatchBookmarks": "true",
                    "timeoutSeconds": "300",
                }
                async for line in rest.lines(path, watch):
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    obj = event.get("object") or {}
                    if event.get("type") == "ERROR":
                        version = ""
                        break
                    version = obj.get("metadata", {}).get("resourceVersion", version)
                    if event.get("type") in ("ADDED", "MODIFIED") and _about(obj, uid):
                        events.append(obj)
                        changed.set()
            except KubeError as error:
                log.debug("events of %s: %s", name, error.message)
                version = ""
                await asyncio.sleep(1.0)
            except (OSError, asyncio.TimeoutError, ValueError) as error:
                log.debug("events of %s interrupted: %r", name, error)
                await asyncio.sleep(1.0)

    # --- holding, renewing, deleting, adopting ---------------------------------------------

    async def delete(self, kernel_id: str, namespace: str, grace: int | None = None) -> None:
        """Delete the kernel's pod (its Secret and NetworkPolicy follow through the owner
        reference) and the Secret itself, in case the pod was never created (a NetworkPolicy
        left so selects no pod, and the next start of the kernel id replaces it)."""
        rest = await self.rest()
        query = {"gracePeriodSeconds": str(grace)} if grace is not None else {}
        with contextlib.suppress(KubeError):
            await rest.call(
                "DELETE",
                path_of("v1", "pods", namespace, pods.pod_name(kernel_id)),
                query,
                body={"kind": "DeleteOptions", "apiVersion": "v1",
                      "propagationPolicy": "Background"},
            )  # fmt: skip
        await rest.delete(path_of("v1", "secrets", namespace, pods.secret_name(kernel_id)))

    async def read_keys(self, kernel_id: str, namespace: str) -> tuple[str, pods.CurveKeys | None]:
        """The keys of a kernel another server started (adoption)."""
        rest = await self.rest()
        secret = await rest.get(path_of("v1", "secrets", namespace, pods.secret_name(kernel_id)))
        if secret is None or pods.KEY not in secret.get("data", {}):
            raise KernelStartFailed(f"kernel {kernel_id}: its key Secret is gone")
        return pods.keys_of(secret)

    def start_renewing(self) -> None:
        self._renewal.start()

    async def renew(self, record: KernelRecord) -> None:
        rest = await self.rest()
        expires = str(int(time.time() + self.settings.expiry))
        await rest.patch(
            path_of("v1", "pods", record.namespace, pods.pod_name(record.kernel_id)),
            {"metadata": {"annotations": {pods.ANNOTATION_EXPIRES: expires}}},
        )

    async def left_behind(self, owner: str, namespace: str) -> list[dict[str, Any]]:
        """``owner``'s kernel pods that this server does not hold; expired or ended ones are
        deleted here, the others returned for adoption."""
        reflector = await self.watch(namespace)
        found = []
        for pod in list(reflector.objects.values()):
            metadata = pod["metadata"]
            kernel_id = metadata.get("labels", {}).get(pods.LABEL_KERNEL_ID, "")
            if metadata.get("annotations", {}).get("mlinfra.jupyter.org/owner") != owner:
                continue
            if not kernel_id or kernel_id in self.records or metadata.get("deletionTimestamp"):
                continue
            expires = float(metadata.get("annotations", {}).get(pods.ANNOTATION_EXPIRES) or 0)
            ended = pod.get("status", {}).get("phase") in ("Succeeded", "Failed")
            if ended or (expires and expires < time.time()):
                log.info("deleting kernel pod %s (ended or expired)", metadata["name"])
                await self.delete(kernel_id, namespace)
                continue
            found.append(pod)
        return found

    async def close(self) -> None:
        await self._renewal.stop()
        for reflector in self._watches.values():
            await reflector.stop()
        self._watches.clear()
        self._rest = None  # the cluster's client may be closed next; a later use reconnects


async def _create_afresh(rest: Rest, obj: Mapping[str, Any]) -> None:
    """Create ``obj``, replacing one of its name an interrupted start of the kernel left."""
    try:
        await rest.create(obj)
    except KubeError as error:
        if error.status != 409:
            raise
        await rest.delete(_path(obj))
        await rest.create(obj)


def _path(obj: Mapping[str, Any]) -> str:
    metadata = obj["metadata"]
    return path_of(obj["apiVersion"], PLURALS[obj["kind"]], metadata["namespace"], metadata["name"])


def _about(event: Mapping[str, Any], uid: str) -> bool:
    """Whether an event is about the pod of ``uid`` (what the field selector asked for)."""
    return bool(uid) and (event.get("involvedObject") or {}).get("uid") == uid


async def _either(*waits: Awaitable[Any]) -> None:
    """Return when the first of ``waits`` does; cancel the others."""
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
