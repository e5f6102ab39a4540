"""``KubernetesProvisioner``: a flavor kernel running in a pod of the environment's image.

Registered as the ``mlinfra-kubernetes-provisioner`` kernel provisioner; the generated
kernelspecs name it when ``MLInfraApp.backend`` is "kubernetes". The server picks the
connection up front (fixed ports, a random key in a Secret), creates the pod, follows its start
through a watch (progress and the cluster's reasons show in ``GET /mlinfra/api/v1/kernels``),
and connects to the pod IP; nothing dials back.

* interrupt: by message (the kernelspec's ``interrupt_mode``), no signal crosses the network;
* restart: the launcher in the pod restarts the kernel process (same pod, same GPUs, seconds);
  a restart on another flavor, or of a pod that is gone, replaces the pod (hard restart);
* shutdown: the pod is deleted, its Secret with it (owner reference);
* server stop: kernels are detached (``KubernetesKernels.on_server_stop``) and the next server
  adopts them by kernel id: a start whose kernel id has a live pod connects to that pod;
* transport encryption (``MappingKernelManager.transport_encryption``): the kernel's CurveZMQ
  keys go into its Secret with the key; the pod's launcher, which alone can see the image's
  ipykernel, says whether the kernel runs encrypted, and the server connects the same way. A
  kernel that cannot be encrypted (the image's ipykernel, an older launcher, an adopted pod
  started without keys) fails its start under "required", saying why.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import secrets
import time
from typing import Any, cast

import zmq
from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.provisioning.provisioner_base import KernelProvisionerBase
from traitlets import Unicode

from ..backends.kubernetes import kernel_pod as pods
from ..backends.kubernetes.kernel_startup import CREATING, Startup, classify
from ..backends.kubernetes.kernels import KernelPods, KernelRecord, KernelStartFailed
from ..backends.kubernetes.launcher_control import LauncherUnreachable, command
from ..backends.kubernetes.port_forward import PortForward
from ..catalog import Flavor
from ..errors import Conflict, MLInfraError
from ..identity import Identity
from . import registry
from .deaths import process_exit_reason
from .pod_kernels import PodKernels
from .provisioner import FLAVOR_ARGUMENT, KernelStartRefused

LAUNCHER_TIMEOUT = 10.0
INFO_INTERVAL = 2.0
FORWARDED_STATUS_SECONDS = 10.0
"""How long a port-forwarded kernel's "running" stands before its launcher is asked again:
jupyter_client asks every few seconds, and each question costs a request to the API server."""
"""Seconds between ``kernel_info`` requests while a kernel starts."""


CLUSTER_ERRORS = (MLInfraError, OSError, asyncio.TimeoutError)
"""What a start may meet: a refusal, or a cluster that cannot be reached."""


def _refused(error: BaseException) -> KernelStartRefused:
    """The HTTP error a failed start answers with, naming the reason."""
    if not isinstance(error, MLInfraError):
        error = KernelStartFailed(f"cannot reach the cluster: {error!r}")
    return KernelStartRefused(error)


def _pods() -> tuple[registry.ServerParts, KernelPods]:
    server = registry.current()
    backend = server.kernels.backend if server is not None else None
    if server is None or not isinstance(backend, PodKernels):
        raise RuntimeError(
            "mlinfra Kubernetes kernels start only in a Jupyter server with the jupyter_mlinfra"
            " extension enabled and MLInfraApp.backend = 'kubernetes'"
        )
    return server, backend.pods


class KubernetesProvisioner(KernelProvisionerBase):
    environment = Unicode(config=True, help="The catalog environment this kernel runs.")
    flavor = Unicode(
        config=True, help="The flavor used when the start names none; empty: the default flavor."
    )

    record: KernelRecord | None = None
    forward: PortForward | None = None
    key: str = ""
    curve: pods.CurveKeys | None = None
    encryption = "disabled"
    """The server's policy for this kernel: "disabled", "auto" or "required"."""
    encrypted = False
    """Whether the kernel runs with ``curve`` (its launcher says)."""
    ip: str = ""
    port: int = 0
    cwd = ""
    """The folder the kernel is started in on this server: the pod's working directory when
    a volume mounted in the pod holds it (``KubernetesPods.home_volume``)."""
    detached = False
    _restarting = False
    _killed = False
    _hard = False
    _alive_until = 0.0

    @property
    def has_process(self) -> bool:
        return self.record is not None and bool(self.ip)

    # --- starting -------------------------------------------------------------------------

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        requested = kwargs.pop(FLAVOR_ARGUMENT, None) or self.flavor
        server, kernel_pods = _pods()
        try:
            identity = server.identities.owner()
            catalog = server.inventory.catalog
            environment = catalog.environment(self.environment, identity)
            flavor = catalog.flavor(
                requested or catalog.for_identity(identity).default_flavor, identity
            )
            if self.record is None or self.record.flavor != flavor.name:  # not a restart
                await self._check_quota(server, identity, flavor)
        except CLUSTER_ERRORS as error:
            self._forget()
            raise _refused(error) from None
        self._flavor, self._environment = flavor, environment
        policy = kwargs.pop("transport_encryption", None) or getattr(
            self.parent, "transport_encryption", "disabled"
        )
        self.encryption = str(policy).lower()
        if self.encryption != "disabled" and self.curve is None:  # kept across restarts
            public, secret = zmq.curve_keypair()
            self.curve = pods.CurveKeys(public.decode(), secret.decode())
        if self.record is not None and self.record.flavor != flavor.name:
            self._hard = True  # another flavor: another pod
            self.record.flavor = flavor.name
        if self.record is None:
            namespace = await kernel_pods.namespace(identity.user)
            self.record = KernelRecord(
                self.kernel_id, identity.user, flavor.name, environment.name, namespace
            )
        # the notebook's folder on this server; else the server's own, as a local kernel's
        self.cwd = str(kwargs.get("cwd") or os.getcwd())
        kwargs = await super().pre_launch(**kwargs)
        kwargs.setdefault("cmd", [])
        return kwargs

    async def _check_quota(
        self, server: registry.ServerParts, identity: Identity, flavor: Flavor
    ) -> None:
        """The owner's GPU quota counts the accelerators of all their kernel and job pods
        (this kernel's own pod aside: a restart or an adoption never exceeds it)."""
        quota = server.inventory.quotas.for_identity(identity)
        if quota.max_gpus is None or not flavor.accelerators:
            return
        held = await server.inventory.backend.capacity()
        used = sum(
            len(a.devices)
            for a in held.allocations
            if a.owner == identity.user and a.holder != f"kernel:{self.kernel_id}"
        )
        if used + flavor.accelerators > quota.max_gpus:
            raise Conflict(
                f"user quota: {used} of {quota.max_gpus} GPUs in use; flavor {flavor.name}"
                f" needs {flavor.accelerators}",
                "flavor",
            )

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        _, kernel_pods = _pods()
        record = self.record
        assert record is not None
        kernel_pods.records[record.kernel_id] = record
        try:
            if self._restarting and not self._hard and await self._restart_in_place(kernel_pods):
                return self._connection()
            existing = kernel_pods.cached(record.kernel_id, record.namespace) or (
                await kernel_pods.watch(record.namespace)
            ).objects.get(pods.pod_name(record.kernel_id))
            if existing is not None and not self._hard and not self._restarting:
                await self._adopt(kernel_pods, existing)
                return self._connection()
            if existing is not None:
                await kernel_pods.delete(record.kernel_id, record.namespace, grace=0)
                await self._gone(kernel_pods)
            await self._create(kernel_pods)
        except asyncio.CancelledError:  # given up (DELETE kernels/{id} while it starts)
            await self._abandon(kernel_pods)
            self.log.info("mlinfra kernel %s: its start was given up", self.kernel_id)
            raise
        except CLUSTER_ERRORS as error:
            await self._abandon(kernel_pods)
            refused = _refused(error)
            self.log.info("mlinfra kernel %s not started: %s", self.kernel_id, refused.error)
            raise refused from None
        return self._connection()

    async def _abandon(self, kernel_pods: KernelPods) -> None:
        """A start that did not finish leaves no listener, pipe, record or pod behind."""
        record = self.record
        assert record is not None
        await self._unreach()
        self._forget()
        with contextlib.suppress(*CLUSTER_ERRORS):
            await kernel_pods.delete(record.kernel_id, record.namespace, grace=0)

    async def _create(self, kernel_pods: KernelPods) -> None:
        record = self.record
        assert record is not None
        record.started = time.time()
        record.startup = Startup(*CREATING, since=record.started)
        self.key = secrets.token_hex(32)
        self.port = kernel_pods.settings.kernel_port
        self.ip = ""
        if self.encryption == "disabled":  # an adopted pod's keys go with it
            self.curve = None
        await kernel_pods.create(
            record,
            self._flavor,
            self._environment,
            self.key,
            self.curve,
            self.encryption,
            cwd=self.cwd,
        )

        server, _ = _pods()
        server.tabs.kernels()  # a start under way: the sidebars list it

        def progress(startup: Startup) -> None:
            self.log.info(
                "mlinfra kernel %s: %s %s", record.kernel_id, startup.phase, startup.reason
            )
            server.tabs.kernels()

        pod = await kernel_pods.wait_started(record, progress)
        self.ip = pod["status"]["podIP"]
        await self._reach(kernel_pods)
        await self._transport(kernel_pods)

    async def _adopt(self, kernel_pods: KernelPods, pod: dict[str, Any]) -> None:
        """Connect to a pod a previous server started for this kernel id."""
        record = self.record
        assert record is not None
        annotations = pod["metadata"].get("annotations", {})
        record.pod_uid = pod["metadata"].get("uid", "")
        self.key, self.curve = await kernel_pods.read_keys(record.kernel_id, record.namespace)
        self.port = int(annotations.get(pods.ANNOTATION_PORT) or kernel_pods.settings.kernel_port)
        self.ip = pod.get("status", {}).get("podIP", "")
        if not self.ip:
            pod = await kernel_pods.wait_started(record, lambda _: None)
            self.ip = pod["status"]["podIP"]
        await self._reach(kernel_pods)
        await self._transport(kernel_pods)
        record.flavor = annotations.get(pods.ANNOTATION_FLAVOR, record.flavor)
        self.log.info(
            "mlinfra kernel %s: adopted pod %s", record.kernel_id, pod["metadata"]["name"]
        )

    async def _restart_in_place(self, kernel_pods: KernelPods) -> bool:
        """Ask the pod's launcher for a fresh kernel process; False when the pod is gone."""
        record = self.record
        assert record is not None
        pod = kernel_pods.cached(record.kernel_id, record.namespace)
        if pod is None or pod.get("status", {}).get("phase") != "Running" or not self.ip:
            return False
        try:
            await self._launcher("restart")
        except LauncherUnreachable as error:
            self.log.warning("mlinfra kernel %s: %s; replacing the pod", record.kernel_id, error)
            return False
        record.startup = Startup("starting", "kernel restarting", time.time())
        return True

    async def _gone(self, kernel_pods: KernelPods) -> None:
        """Wait until the old pod has left the watch (a new one gets the same name)."""
        record = self.record
        assert record is not None
        reflector = await kernel_pods.watch(record.namespace)
        deadline = time.monotonic() + kernel_pods.settings.start_timeout
        while pods.pod_name(record.kernel_id) in reflector.objects:
            if time.monotonic() > deadline:
                raise KernelStartFailed("the kernel's previous pod is not going away")
            await reflector.wait_changed(1.0)

    def _endpoint(self) -> tuple[str, list[int]]:
        """Where this server reaches the pod's ports: the pod IP, or local forwards."""
        ports = pods.pod_ports(self.port)
        if self.forward is None:
            return self.ip, ports
        return "127.0.0.1", [self.forward.local[port] for port in ports]

    async def _reach(self, kernel_pods: KernelPods) -> None:
        """Port-forward to the (new) pod when the server is outside the cluster."""
        await self._unreach()
        record = self.record
        if kernel_pods.settings.connection != "port-forward" or record is None:
            return
        api = await kernel_pods.cluster.port_forward_api()  # a pool apart from the API calls
        self.forward = PortForward(api, record.namespace, pods.pod_name(record.kernel_id))
        await self.forward.start(pods.pod_ports(self.port))

    async def _unreach(self) -> None:
        if self.forward is not None:
            await self.forward.close()
            self.forward = None

    async def _transport(self, kernel_pods: KernelPods) -> None:
        """Whether the kernel runs encrypted, as its launcher decided in the pod (it answers
        once it has, before the kernel starts); under "required", unencrypted is a failure."""
        self.encrypted = False
        status: dict[str, Any] = {}
        if self.curve is not None:
            status = await self._first_status(kernel_pods)
            self.encrypted = status.get("encryption") == "curve"
        if self.encryption == "required" and not self.encrypted:
            why = status.get("unencrypted") or (
                "its pod was started without transport encryption"
                if self.curve is None
                else "its pod's launcher is older than transport encryption (update"
                " KubernetesKernels.init_image)"
            )
            raise KernelStartFailed(f"transport encryption is required but {why}", "environment")

    async def _first_status(self, kernel_pods: KernelPods) -> dict[str, Any]:
        """The launcher's first answer; a pod that ends first fails the start with its
        reason (the launcher's, from the termination log)."""
        record = self.record
        assert record is not None
        deadline = time.monotonic() + kernel_pods.settings.start_timeout
        while True:
            try:
                return await self._launcher("status")
            except LauncherUnreachable as error:
                startup = classify(kernel_pods.cached(record.kernel_id, record.namespace), ())
                if startup.failed:
                    raise KernelStartFailed(startup.reason) from None
                self._check_forward()
                if time.monotonic() > deadline:
                    raise KernelStartFailed(
                        f"the kernel's launcher did not answer: {error}"
                    ) from None
            await asyncio.sleep(0.2)

    def _check_forward(self) -> None:
        """A start through a port-forward that the API server refuses (RBAC) fails saying so,
        rather than waiting for a kernel it can never reach."""
        if self.forward is not None and self.forward.refused:
            raise KernelStartFailed(self.forward.refused)

    def _connection(self) -> KernelConnectionInfo:
        """The key as bytes, as the kernel manager holds it, so the two compare equal."""
        ip, ports = self._endpoint()
        info = pods.connection_info(ip, ports, self.key, self.curve if self.encrypted else None)
        info["key"] = self.key.encode()
        return cast(KernelConnectionInfo, info)

    async def post_launch(self, **kwargs: Any) -> None:
        """Ready once the kernel answers ``kernel_info``; a kernel process that exits first
        fails the start with its exit code."""
        _, kernel_pods = _pods()
        record = self.record
        assert record is not None
        self._killed = False  # a new kernel process runs: poll() asks the launcher again
        try:
            await self._kernel_info(kernel_pods.settings.start_timeout)
        except KernelStartFailed as error:
            await self._unreach()
            self._forget()
            await kernel_pods.delete(record.kernel_id, record.namespace, grace=0)
            raise KernelStartRefused(error) from None
        record.startup = Startup("ready", "", time.time())
        self._restarting = self._killed = self._hard = False
        kernel_pods.start_renewing()

    async def _kernel_info(self, timeout: float) -> None:
        """Ask ``kernel_info`` until it is answered (the heartbeat is not used: its first
        pings may go out before the kernel listens, and would read as a dead kernel)."""
        client = AsyncKernelClient()
        client.load_connection_info(self._connection())
        client.start_channels(hb=False)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                asked = client.kernel_info()
                try:
                    while True:
                        reply = await client.get_shell_msg(timeout=INFO_INTERVAL)
                        if reply["parent_header"].get("msg_id") == asked:
                            return
                except queue.Empty:
                    pass
                self._check_forward()
                code = await self.poll()
                if code is not None:
                    raise KernelStartFailed(f"the kernel exited with code {code} at start")
            raise KernelStartFailed(f"the kernel did not answer kernel_info in {timeout:g}s")
        finally:
            client.stop_channels()

    # --- running --------------------------------------------------------------------------

    async def _launcher(self, name: str) -> dict[str, Any]:
        ip, ports = self._endpoint()
        return await command(ip, ports[-1], self.key.encode(), name, LAUNCHER_TIMEOUT)

    async def poll(self) -> int | None:
        """None while the kernel process runs: the pod (from the watch) is Running and its
        launcher says so; an exit code otherwise."""
        if self.record is None or not self.ip:
            return 0
        if self._restarting and self._killed:
            return 0
        _, kernel_pods = _pods()
        pod = kernel_pods.cached(self.record.kernel_id, self.record.namespace)
        if pod is None or pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            self._died(classify(pod, ()).reason)
            return 1
        if not self._restarting and time.monotonic() < self._alive_until:
            return None
        try:
            status = await self._launcher("status")
        except LauncherUnreachable:  # starting up; a launcher that is gone ends its pod
            return None
        if status.get("kernel") == "running":
            if self.forward is not None:  # each status is a websocket through the API server
                self._alive_until = time.monotonic() + FORWARDED_STATUS_SECONDS
            return None
        code = int(status.get("code", 1) or 0)
        self._died(process_exit_reason(code))
        return code

    def _died(self, reason: str) -> None:
        """The kernel ended without being asked to: remember why, for the user, and list it
        as failed (no longer ready) until the restart that follows starts it again."""
        server = registry.current()
        record = self.record
        if server is None or record is None or self._restarting or record.startup.phase != "ready":
            return
        server.kernels.deaths.died(record.kernel_id, reason, record.startup.since or 0.0)
        record.startup = Startup("failed", reason, time.time())

    async def wait(self) -> int | None:
        while (code := await self.poll()) is None:
            await asyncio.sleep(0.5)
        return code

    async def send_signal(self, signum: int) -> None:
        """Signals do not cross the network: interrupts go by message (the kernelspec's
        interrupt_mode), and stopping is done by the pod's deletion."""
        self.log.debug("mlinfra kernel %s: signal %s not sent to its pod", self.kernel_id, signum)

    async def kill(self, restart: bool = False) -> None:
        await self._end(restart, grace=0)

    async def terminate(self, restart: bool = False) -> None:
        await self._end(restart, grace=None)

    async def _end(self, restart: bool, grace: int | None) -> None:
        """Stop the kernel: its pod goes, its record stays until ``cleanup``.

        jupyter_client kills with ``restart=False`` even within a ``restart_kernel(now=True)``
        (its restarter's, after the kernel died), and says it restarts only to ``cleanup``
        after: until then, the kernel must stay listed, or it reads as gone (404)."""
        if restart or self._restarting:  # the launcher stops the old process, starts the next
            self._killed = True
            return
        await self._delete_pod(grace)

    async def shutdown_requested(self, restart: bool = False) -> None:
        self._restarting = restart

    async def cleanup(self, restart: bool = False) -> None:
        record = self.record
        if record is None:
            return
        if restart:
            self._restarting = True
            if record.startup.phase == "ready":
                record.startup = Startup("starting", "kernel restarting", time.time())
            return
        if self.ip or self.forward is not None:  # not killed before
            await self._delete_pod(None)
        self._forget()

    def _forget(self) -> None:
        """The kernel is no longer listed: it ended, or its (re)start failed."""
        if self.record is not None:
            _pods()[1].records.pop(self.record.kernel_id, None)

    async def _delete_pod(self, grace: int | None) -> None:
        """Delete the kernel's pod (a detached kernel's stays, for the next server)."""
        if self.record is None:
            return
        _, kernel_pods = _pods()
        if not self.detached:
            await kernel_pods.delete(self.record.kernel_id, self.record.namespace, grace)
        await self._unreach()
        self.ip = ""

    def get_shutdown_wait_time(self, recommended: float = 5.0) -> float:
        return max(recommended, 10.0)

    def get_stable_start_time(self, recommended: float = 10.0) -> float:
        return max(recommended, 10.0)
