"""Flavor kernels on this server: start (after the catalog's checks), list, stop.

Kernels are started through jupyter_server's kernel manager, with the generated kernelspec of
their environment and the chosen flavor, so sessions, websockets and culling treat them like
any other kernel; their lease lives in their ``MLInfraProvisioner``. No tornado here: the REST
handlers only translate HTTP.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Literal

from ..capacity import Lease
from ..errors import Conflict, NotFound
from ..identity import Identity
from ..models.kernels import Kernel, KernelList, KernelStart, KernelSwitch
from ..models.validation import validated
from .activity import last_activity
from .deaths import Deaths
from .provisioner import FLAVOR_ARGUMENT, KernelStartRefused, MLInfraProvisioner
from .specs import spec_name
from .starts import KernelStarts, asked_for
from .working_dir import confined_path

if TYPE_CHECKING:
    from ..backends.base import KernelsBackend
    from ..inventory import Inventory

ENDED_KEPT = 100
"""How many ended (culled) kernels ``GET /kernels`` keeps showing."""


class KernelService:
    def __init__(
        self,
        kernel_manager: Any,
        inventory: Inventory,
        backend: KernelsBackend,
        log: logging.Logger,
        changed: Callable[[], None],
    ) -> None:
        self.kernel_manager = kernel_manager
        self.inventory = inventory
        self.backend = backend
        """Where kernels run: besides the kernels holding local leases, those it holds."""
        self.log = log
        self.changed = changed
        """Tells the browsers that the kernels listed changed."""
        self.ended: deque[Kernel] = deque(maxlen=ENDED_KEPT)
        self.deaths = Deaths(changed)
        """``changed`` is told of each death at once: jupyter_server's kernel events tell of
        the restart that follows only once it is done (a new pod may take minutes)."""
        self.starts = KernelStarts(log, changed, self.ended.append)

    def running(self) -> Iterator[tuple[str, Any, Lease]]:
        """(kernel id, its KernelManager, its lease) of each kernel holding a lease."""
        for kernel_id in list(self.kernel_manager.list_kernel_ids()):
            try:
                manager = self.kernel_manager.get_kernel(kernel_id)
            except KeyError:  # gone meanwhile
                continue
            provisioner = getattr(manager, "provisioner", None)
            if isinstance(provisioner, MLInfraProvisioner) and provisioner.lease is not None:
                yield kernel_id, manager, provisioner.lease

    def cullable(self) -> Iterator[tuple[str, Any, bool]]:
        """(kernel id, its KernelManager, whether it holds accelerators) of every running
        flavor kernel: those holding a local lease and those the backend holds (pods)."""
        for kernel_id, manager, lease in self.running():
            yield kernel_id, manager, bool(lease.devices)
        yield from self.backend.cullable(self.kernel_manager)

    def model(self, kernel_id: str, manager: Any, lease: Lease) -> Kernel:
        return {
            **asked_for(
                kernel_id,
                manager.kernel_name,
                lease.owner,
                lease.flavor,
                lease.environment,
                lease.created,
            ),
            "devices": list(lease.devices),
            "cpus": list(lease.cpus),
            "last_activity": last_activity(manager),
            "execution_state": getattr(manager, "execution_state", "starting"),
            "state": "running",
            "last_exit": self.deaths.to_json(kernel_id),
        }

    async def start(self, identity: Identity, body: Any) -> Kernel:
        """Begin a start and answer at once with the kernel it will be (state 'starting'):
        what can be refused without starting anything (the request, the catalog's rules, the
        environment's transport) is refused here; the rest (room, quota, the pod, the kernel
        itself) is told through the kernel's state, 'running' or 'failed'."""
        request = validated(KernelStart, body)
        path = confined_path(self.kernel_manager.root_dir, request.get("path", ""))
        catalog = self.inventory.catalog
        mine = catalog.for_identity(identity)
        environment = catalog.environment(
            request.get("environment") or mine.default_environment, identity
        )
        flavor = catalog.flavor(request.get("flavor") or mine.default_flavor, identity)
        transport = await self.inventory.kernel_transport(environment)
        if not transport.available:  # jupyter_client would refuse it, saying less
            raise Conflict(f"environment {environment.name!r}: {transport.summary}", "environment")
        kernel_id = str(uuid.uuid4())
        name = spec_name(
            environment.name, "" if flavor.name == mine.default_flavor else flavor.name
        )
        kernel = asked_for(
            kernel_id, name, identity.user, flavor.name, environment.name, time.time()
        )
        if self.backend.first_phase is not None:
            kernel["phase"], kernel["reason"] = self.backend.first_phase

        async def launch() -> None:
            try:
                await self.kernel_manager.start_kernel(
                    kernel_id=kernel_id,
                    kernel_name=name,
                    path=path or None,
                    **{FLAVOR_ARGUMENT: flavor.name},
                )
            except KernelStartRefused as refused:
                self.forget_failed_starts()
                raise refused.error from None
            except Exception:
                self.forget_failed_starts()
                raise

        self.starts.begin(kernel, launch)
        return kernel

    async def switch(self, identity: Identity, kernel_id: str, body: Any) -> Kernel:
        """Restart the kernel on another flavor ("Switch flavor"): same kernel id, so the
        notebook stays attached. Refused up front when the flavor has no room now, so a full
        flavor never costs the user their running kernel. A kernel in a pod gets a new pod."""
        request = validated(KernelSwitch, body)
        pod = self._pod_kernel(identity, kernel_id)
        if pod is not None:
            manager, current = self.kernel_manager.get_kernel(kernel_id), pod["flavor"]
        else:
            _, manager, lease = self._find(identity, kernel_id)
            current = lease.flavor
        flavor = self.inventory.catalog.flavor(request["flavor"], identity)
        if flavor.name != current:
            held = await self.inventory.backend.capacity()
            room = held.without(f"kernel:{kernel_id}").availability(flavor)
            if not room.kernels_available:
                raise Conflict(f"flavor {flavor.name} is full: {room.summary}", "flavor")
            try:
                await manager.restart_kernel(now=False, **{FLAVOR_ARGUMENT: flavor.name})
            except KernelStartRefused as refused:  # taken meanwhile
                raise refused.error from None
        return self.get(identity, kernel_id)

    def forget_failed_starts(self) -> None:
        """Drop the kernels whose start failed from the kernel manager's pending kernels.

        jupyter_client keeps a kernel whose start raised (here: a refused lease) among its
        pending kernels for good, and ``shutdown_all`` then fails on it at server exit."""
        pending = getattr(self.kernel_manager, "_pending_kernels", None)
        if not isinstance(pending, dict):
            return
        for kernel_id, task in list(pending.items()):
            if task.done() and kernel_id not in self.kernel_manager:
                pending.pop(kernel_id, None)

    def _held(self) -> list[Kernel]:
        """The kernels the backend holds itself (pods), those still starting included."""
        return self.backend.kernels(self.kernel_manager, self.deaths)

    def list(self, identity: Identity) -> KernelList:
        self.deaths.forget_all_but(self.kernel_manager)
        return {"kernels": list(_visible(identity, self._listed()))}

    def _listed(self) -> Iterator[Kernel]:
        """Every kernel, in the listing's order: those holding a lease, those the backend
        holds (pods), starts neither lists yet, then ended ones, newest first."""
        starting = {k["id"]: k for k in self.starts.under_way()}
        listed: set[str] = set()
        for kernel in itertools.chain((self.model(*e) for e in self.running()), self._held()):
            start = starting.get(kernel["id"])
            if start is not None and kernel["state"] == "running":  # not yet answered for
                kernel["state"], kernel["since"] = "starting", start["since"]
            listed.add(kernel["id"])
            yield kernel
        yield from (k for k in starting.values() if k["id"] not in listed)
        yield from reversed(self.ended)

    def _find(self, identity: Identity | None, kernel_id: str) -> tuple[str, Any, Lease]:
        """The running kernel ``kernel_id`` if ``identity`` may see it (None: anybody may)."""
        for entry in self.running():
            if entry[0] == kernel_id and _may_see(identity, entry[2].owner):
                return entry
        raise NotFound(f"no mlinfra kernel {kernel_id!r}", "kernel_id")

    def _pod_kernel(self, identity: Identity | None, kernel_id: str) -> Kernel | None:
        return next((k for k in _visible(identity, self._held()) if k["id"] == kernel_id), None)

    def get(self, identity: Identity, kernel_id: str) -> Kernel:
        """The kernel as listed: starting, running, or ended (failed, culled) lately."""
        for kernel in _visible(identity, self._listed()):
            if kernel["id"] == kernel_id:
                return kernel
        raise NotFound(f"no mlinfra kernel {kernel_id!r}", "kernel_id")

    async def stop(
        self,
        identity: Identity | None,
        kernel_id: str,
        *,
        reason: str = "",
        state: Literal["stopped", "culled"] = "stopped",
    ) -> Kernel:
        """Shut the kernel down through the kernel manager (which releases its lease); a
        culled kernel (``state`` "culled") is remembered with its reason. A start under way is
        given up where the backend can (a pod), else stopped once it settles. A kernel that has
        ended already (its start failed, it was culled) is taken off the list."""
        starting = [k for k in _visible(identity, self.starts.under_way()) if k["id"] == kernel_id]
        if starting and self.backend.starts_cancel:
            model = self._pod_kernel(identity, kernel_id) or starting[0]
            await self.starts.cancel(kernel_id)
            return _ended(model, "stopped", "its start was given up")
        if starting:
            await self.starts.settled(kernel_id)
        try:
            model = self._pod_kernel(identity, kernel_id) or self.model(
                *self._find(identity, kernel_id)
            )
        except NotFound:
            return self._dismiss(identity, kernel_id)
        await self.kernel_manager.shutdown_kernel(kernel_id)
        model = _ended(model, state, reason)
        if state == "culled":
            self.ended.append(model)
        return model

    def _dismiss(self, identity: Identity | None, kernel_id: str) -> Kernel:
        """Take an ended kernel off the list, answering it as it ended: stopping what has
        stopped already is not an error (a start may fail while it is being stopped)."""
        for kernel in _visible(identity, self.ended):
            if kernel["id"] == kernel_id:
                self.ended.remove(kernel)
                self.changed()
                return kernel
        raise NotFound(f"no mlinfra kernel {kernel_id!r}", "kernel_id")

    async def adopt(self) -> None:
        """At server start: take over the kernels a previous server left running (pods)."""
        await self.backend.adopt(self)

    async def leave(self) -> None:
        """At server stop: leave the kernels the backend holds to the next server."""
        await self.backend.leave(self)

    async def shutdown_all(self) -> None:
        """Shut down every kernel holding a lease, releasing the leases (server shutdown)."""
        await self.starts.cancel_all()
        self.forget_failed_starts()
        ids = [kernel_id for kernel_id, _, _ in self.running()]
        if not ids:
            return
        results = await asyncio.gather(
            *(self.kernel_manager.shutdown_kernel(i) for i in ids), return_exceptions=True
        )
        for kernel_id, result in zip(ids, results, strict=True):
            if isinstance(result, BaseException):
                self.log.warning("mlinfra kernel %s: shutdown failed: %s", kernel_id, result)


def _may_see(identity: Identity | None, owner: str) -> bool:
    """Whether ``identity`` may see what ``owner`` holds (None: anybody may)."""
    return identity is None or identity.may_see(owner)


def _visible(identity: Identity | None, kernels: Iterable[Kernel]) -> Iterator[Kernel]:
    """Those of ``kernels`` that ``identity`` may see."""
    return (k for k in kernels if _may_see(identity, k["owner"]))


def _ended(kernel: Kernel, state: Literal["stopped", "culled"], reason: str) -> Kernel:
    """``kernel`` as it ended now."""
    return {
        **kernel,
        "state": state,
        "reason": reason,
        "ended": time.time(),
        "execution_state": "dead",
    }
