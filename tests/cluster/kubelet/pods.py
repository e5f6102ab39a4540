"""One pod's life on a node: its sandbox (network namespace, address, hosts and DNS files), its
volumes, the image "pulls", init containers one after another and then the containers together,
each a process started by ``enter.py`` in its own cgroup and mount namespace; probes, restarts
per ``restartPolicy``, the memory limit, ``activeDeadlineSeconds``, graceful deletion (SIGTERM to
the container's first process, SIGKILL to all that is left after the grace period) and the
status written back through the API at every step."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import shutil
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from jupyter_mlinfra.quantities import parse_memory

from . import status as pod_status
from .api import ApiError
from .cgroups import ContainerCgroup
from .containers import CannotRun, ProcessSpec, command_line, process_spec
from .context import NodeContext, Running
from .launcher import launch, launch_file
from .logs import capture
from .mounting import claim_paths, request_token
from .pod_network import NetworkError, PodSandboxNetwork
from .probing import run_probes
from .pulls import pull
from .sources import Key
from .status import Obj, PodState, initial_container_status, now
from .volumes import MissingSource, Volumes, mounts, sources_of, token_projections

log = logging.getLogger("tests.cluster.kubelet")

TERMINATION_MESSAGE_LIMIT = 4096
#: retrying a volume whose API request was refused: first delay and cap
MOUNT_RETRY = (0.2, 5.0)
#: how long a stopped container's bookkeeping may take before the pod's run is cancelled
SETTLE_SECONDS = 5.0


def _path(pod: Obj) -> str:
    metadata = pod["metadata"]
    return f"/api/v1/namespaces/{metadata['namespace']}/pods/{metadata['name']}"


class PodWorker:
    """Runs one pod; ``update`` feeds it the pod as the watch sees it."""

    def __init__(self, node: NodeContext, pod: Obj) -> None:
        self.node = node
        self.settings = node.settings
        self.pod = pod
        metadata = pod["metadata"]
        self.uid: str = metadata["uid"]
        self.namespace: str = metadata["namespace"]
        self.name: str = metadata["name"]
        self.root = self.settings.root / f"{self.namespace}_{self.name}_{self.uid[:8]}"
        self.state = PodState(host_ip=self.settings.host_ip)
        for container in pod["spec"].get("initContainers") or []:
            self.state.containers[container["name"]] = initial_container_status(container, True)
        for container in pod["spec"]["containers"]:
            self.state.containers[container["name"]] = initial_container_status(container, False)
        self.state.initialized = not pod["spec"].get("initContainers")
        self.sandbox: PodSandboxNetwork | None = None
        self.volumes: dict[str, Path] = {}
        self.running: dict[str, Running] = {}
        self.execs: set[asyncio.subprocess.Process] = set()
        self.oom_killed: set[str] = set()
        self.tokens: dict[tuple[str, int], str] = {}
        self._claim_paths: dict[str, str] = {}
        self.stopping = False  # no more container (re)starts
        self.removing = False  # the pod is being deleted
        self.task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()  # a source, a token or the pod changed
        self._dirty = False
        self._writer: asyncio.Task[None] | None = None
        self._timers: list[asyncio.TimerHandle] = []
        self._helpers: set[asyncio.Task[Any]] = set()

    # -- driving ---------------------------------------------------------------------------

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())
        self.task.add_done_callback(self._crashed)

    def _crashed(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "pod %s/%s: kubelet error", self.namespace, self.name, exc_info=task.exception()
            )

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._helpers.add(task)
        task.add_done_callback(self._helpers.discard)

    def update(self, pod: Obj) -> None:
        """A newer version of the pod (labels and annotations feed downward-API volumes)."""
        self.pod = pod
        if pod["metadata"].get("deletionTimestamp") and not self.removing:
            self.removing = self.stopping = True
            grace = int(pod["metadata"].get("deletionGracePeriodSeconds") or 0)
            self._spawn(self._terminate(grace))
        elif self.volumes and not self.removing:
            self._refresh_volumes()

    def source_changed(self, key: Key) -> None:
        if key[1] == self.namespace and (key[0], key[2]) in sources_of(self.pod):
            if self.volumes:
                self._refresh_volumes()
            self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # -- status ----------------------------------------------------------------------------

    def write(self) -> None:
        """Publish the state (coalesced: one patch at a time, always the newest state)."""
        self._dirty = True
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    async def _write_loop(self) -> None:
        while self._dirty:
            self._dirty = False
            body = {
                "metadata": {"uid": self.uid},
                "status": pod_status.pod_status(self.pod, self.state),
            }
            written = await self._persist(
                "status", functools.partial(self.node.api.patch, _path(self.pod) + "/status", body)
            )
            if written is None:
                return
            self.pod = written

    async def _persist(self, what: str, call: Callable[[], Awaitable[Obj | None]]) -> Obj | None:
        """A request the kubelet must get through: what the API server refuses a kubelet in
        passing (its Node authorizer's graph lags behind a binding, as after a restart) is
        retried with a back-off; 404 and 409 (the pod is gone, or replaced) end it (None)."""
        delay, cap = MOUNT_RETRY
        while True:
            try:
                return await call()
            except ApiError as error:
                if error.status in (404, 409):
                    return None
                log.warning("%s of %s/%s: %s; retrying", what, self.namespace, self.name, error)
            await asyncio.sleep(delay)
            delay = min(cap, delay * 2)

    async def flush(self) -> None:
        """Wait until the newest state is written."""
        while self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)

    def record(
        self, reason: str, message: str, *, warning: bool = False, container: str | None = None
    ) -> None:
        self.node.recorder.record(self.pod, reason, message, warning=warning, container=container)

    # -- the pod's life --------------------------------------------------------------------

    async def _run(self) -> None:
        deadline = self.pod["spec"].get("activeDeadlineSeconds")
        if deadline is not None:
            self._timers.append(
                asyncio.get_running_loop().call_later(float(deadline), self._deadline_exceeded)
            )
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            self.sandbox = await asyncio.to_thread(self.settings.network.add_pod)
        except NetworkError as error:  # the pod stays Pending, as on a node whose CNI fails
            self.record(
                "FailedCreatePodSandBox", f"Failed to create pod sandbox: {error}", warning=True
            )
            return
        self.state.ip = self.sandbox.ip
        self._write_etc()
        self.state.sandbox_ready = True
        self.write()
        await self._mount()
        spec = self.pod["spec"]
        for container in spec.get("initContainers") or []:
            await pull(self, container)
            code = await self._keep_running(container, init=True)
            if code != 0:
                self.state.phase = "Failed"
                self.write()
                return
        self.state.initialized = True
        for container in spec["containers"]:
            await pull(self, container)
        self.state.phase = "Running"
        codes = await asyncio.gather(
            *(self._keep_running(container, init=False) for container in spec["containers"])
        )
        succeeded = all(code == 0 for code in codes) and self.state.reason is None
        self.state.phase = "Succeeded" if succeeded else "Failed"
        self.write()

    def _write_etc(self) -> None:
        """The pod's ``/etc/hosts``, ``/etc/resolv.conf`` and ``/etc/hostname`` as a kubelet
        writes them (ClusterFirst DNS: the cluster's search path, ndots 5)."""
        spec = self.pod["spec"]
        etc = self.root / "etc"
        etc.mkdir(exist_ok=True)
        hostname = spec.get("hostname") or self.name
        names = [hostname]
        if spec.get("subdomain"):
            domain = self.settings.cluster_domain
            names.insert(0, f"{hostname}.{spec['subdomain']}.{self.namespace}.svc.{domain}")
        hosts = [
            "# Kubernetes-managed hosts file.",
            "127.0.0.1\tlocalhost",
            "::1\tlocalhost ip6-localhost ip6-loopback",
            f"{self.state.ip}\t{' '.join(names)}",
            *(
                f"{alias['ip']}\t{' '.join(alias.get('hostnames') or [])}"
                for alias in spec.get("hostAliases") or []
            ),
        ]
        (etc / "hosts").write_text("\n".join(hosts) + "\n")
        (etc / "hostname").write_text(hostname + "\n")
        domain = self.settings.cluster_domain
        search = [f"{self.namespace}.svc.{domain}", f"svc.{domain}", domain]
        resolv = [f"search {' '.join(search)}", "options ndots:5"]
        if self.settings.nameserver:
            resolv.insert(0, f"nameserver {self.settings.nameserver}")
        (etc / "resolv.conf").write_text("\n".join(resolv) + "\n")
        for name in ("hosts", "hostname", "resolv.conf"):
            (etc / name).chmod(0o644)

    def view(self) -> Obj:
        """The pod with the addresses the kubelet knows, which the API's copy may not show
        yet: the downward API (env, volumes) reads ``status.podIP`` from here, as from a real
        kubelet's own state."""
        status = dict(self.pod.get("status") or {})
        status.update(hostIP=self.state.host_ip, hostIPs=[{"ip": self.state.host_ip}])
        if self.state.ip:
            status.update(podIP=self.state.ip, podIPs=[{"ip": self.state.ip}])
        return {**self.pod, "status": status}

    # -- volumes ---------------------------------------------------------------------------

    def _volumes(self) -> Volumes:
        return Volumes(
            self.view(),
            self.root,
            lambda kind, name: self.node.sources.data((kind, self.namespace, name)),
            lambda volume, index: self.tokens[(volume, index)],
            self.node.allocatable,
        )

    async def _mount(self) -> None:
        """Set the volumes up. A missing Secret or ConfigMap waits for it; a refused request
        (the API server's authorizer may not know yet that the pod is bound here, as after a
        restart) is retried with a back-off, as a kubelet's volume manager does: both are
        FailedMount events."""
        keys = {(kind, self.namespace, name) for kind, name in sources_of(self.pod)}
        await self.node.sources.use(keys, self.uid)
        reported = ""
        delay, cap = MOUNT_RETRY
        while True:
            changed = self._changed
            try:
                for volume, index, projection in token_projections(self.pod):
                    if (volume, index) not in self.tokens:
                        await self._request_token(volume, index, projection)
                self._claim_paths = await claim_paths(self.node.api, self.pod)
                self.volumes = self._volumes().set_up(self.view(), self._claim_paths)
                return
            except (MissingSource, ApiError) as why:
                if str(why) != reported:
                    reported = str(why)
                    self.record("FailedMount", f"MountVolume.SetUp failed: {why}", warning=True)
                if isinstance(why, ApiError):
                    await asyncio.sleep(delay)
                    delay = min(cap, delay * 2)
                    continue
            await changed.wait()

    def _refresh_volumes(self) -> None:
        """Rewrite content volumes after a change (a Secret, a label, a token); a source that
        went away leaves the files as they were, as upstream."""
        with contextlib.suppress(MissingSource):
            self._volumes().set_up(self.view(), self._claim_paths)

    async def _request_token(self, volume: str, index: int, projection: Obj) -> None:
        """A token for the projection, renewed at 80 % of its life."""
        self.tokens[(volume, index)], seconds = await request_token(
            self.node.api, self.pod, projection
        )

        def renew() -> None:
            if not self.removing:
                self._spawn(self._renew_token(volume, index, projection))

        self._timers.append(asyncio.get_running_loop().call_later(0.8 * seconds, renew))

    async def _renew_token(self, volume: str, index: int, projection: Obj) -> None:
        async def renew() -> Obj:
            await self._request_token(volume, index, projection)
            return {}

        await self._persist("token renewal", renew)
        self._refresh_volumes()

    def waiting(self, container: Obj, reason: str, message: str) -> None:
        self.state.containers[container["name"]]["state"] = {
            "waiting": {"reason": reason, "message": message}
        }
        self.write()

    # -- containers ------------------------------------------------------------------------

    async def _keep_running(self, container: Obj, *, init: bool) -> int:
        """Run a container until it is done for good under the pod's restartPolicy."""
        policy = self.pod["spec"].get("restartPolicy", "Always")
        delay, cap = self.settings.restart_backoff
        code = 137  # stopped before it ran
        while not self.stopping:
            code = await self._execute(container)
            done = code == 0 and (init or policy != "Always")
            if done or policy == "Never" or self.stopping:
                return code
            entry = self.state.containers[container["name"]]
            entry["restartCount"] += 1
            entry["lastState"] = entry["state"]
            if code != 0:
                self.waiting(
                    container,
                    "CrashLoopBackOff",
                    f"back-off {delay:g}s restarting failed container={container['name']} "
                    f"pod={self.name}_{self.namespace}({self.uid})",
                )
            await asyncio.sleep(delay)
            delay = min(cap, delay * 2)
        return code

    def base_env(self) -> dict[str, str]:
        """What a kubelet puts in every container's environment (before the image's and the
        pod's own): where the API server is, and the hostname."""
        host, port = self.settings.host_ip, str(self.settings.apiserver_port)
        venv_bin = os.path.dirname(sys.executable)
        return {
            "PATH": f"{venv_bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOSTNAME": self.pod["spec"].get("hostname") or self.name,
            "LANG": "C.UTF-8",
            "KUBERNETES_SERVICE_HOST": host,
            "KUBERNETES_SERVICE_PORT": port,
            "KUBERNETES_SERVICE_PORT_HTTPS": port,
            "KUBERNETES_PORT": f"tcp://{host}:{port}",
            f"KUBERNETES_PORT_{port}_TCP": f"tcp://{host}:{port}",
            f"KUBERNETES_PORT_{port}_TCP_PROTO": "tcp",
            f"KUBERNETES_PORT_{port}_TCP_PORT": port,
            f"KUBERNETES_PORT_{port}_TCP_ADDR": host,
        }

    def process_spec(self, container: Obj) -> ProcessSpec:
        """How ``container`` becomes a process (also for exec); raises CannotRun."""
        image = container.get("image", "")
        content = self.settings.image_contents.get(image)
        return process_spec(
            self.view(),
            container,
            base_env={**self.base_env(), **(content.env if content else {})},
            lookup=lambda kind, name, _optional: self.node.sources.data(
                (kind, self.namespace, name)
            ),
            images=self.settings.images,
            image_user=self.settings.image_users.get(image),
            allocatable=self.node.allocatable,
        )

    async def _configured(self, container: Obj) -> ProcessSpec | CannotRun:
        """The process spec once the env's sources exist: while a Secret or ConfigMap key it
        needs is missing, the container waits in CreateContainerConfigError, as upstream."""
        reported = ""
        while True:
            changed = self._changed
            try:
                return self.process_spec(container)
            except CannotRun as error:
                if error.reason != "CreateContainerConfigError":
                    return error
                if error.message != reported:
                    reported = error.message
                    self.record(
                        "Failed",
                        f"Error: {error.message}",
                        warning=True,
                        container=container["name"],
                    )
                    self.waiting(container, error.reason, error.message)
            await changed.wait()

    def _container_mounts(self, container: Obj, message_file: Path) -> list[Obj]:
        found = mounts(container, self.volumes)
        content = self.settings.image_contents.get(container.get("image", ""))
        for target, source in (content.files if content else {}).items():
            found.append(
                {"source": source, "target": target, "file": os.path.isfile(source),
                 "readOnly": True}
            )  # fmt: skip
        etc = self.root / "etc"
        for name in ("hosts", "hostname", "resolv.conf"):
            found.append(
                {
                    "source": os.fspath(etc / name),
                    "target": f"/etc/{name}",
                    "file": True,
                    "readOnly": False,
                }
            )
        found.append(
            {
                "source": os.fspath(message_file),
                "target": container.get("terminationMessagePath", "/dev/termination-log"),
                "file": True,
                "readOnly": False,
            }
        )
        return sorted(found, key=lambda m: m["target"].count("/"))

    async def _execute(self, container: Obj) -> int:
        name = container["name"]
        entry = self.state.containers[name]
        folder = self.root / "containers" / f"{name}-{entry['restartCount']}"
        for part in ("upper", "work", "rootfs"):
            (folder / part).mkdir(parents=True, exist_ok=True)
        message_file = folder / "termination-log"
        message_file.write_bytes(b"")
        message_file.chmod(0o666)
        configured = await self._configured(container)
        log_ = self.settings.logs.start(self.uid, name)
        started = now()
        cgroup: ContainerCgroup | None = None
        try:
            if isinstance(configured, CannotRun):
                raise configured
            spec = configured
            limit = ((container.get("resources") or {}).get("limits") or {}).get("memory")
            cgroup = self.settings.cgroups.container(
                f"{self.uid}-{name}-{entry['restartCount']}",
                None if limit is None else parse_memory(limit),
            )
            assert self.sandbox is not None
            path = launch_file(
                folder,
                spec,
                {
                    "cgroup": cgroup.procs,
                    "netns": self.sandbox.path,
                    "hostname": self.pod["spec"].get("hostname") or self.name,
                    "rootfs": {
                        "target": os.fspath(folder / "rootfs"),
                        "upper": os.fspath(folder / "upper"),
                        "work": os.fspath(folder / "work"),
                        "submounts": self.settings.submounts,
                    },
                    "mounts": self._container_mounts(container, message_file),
                    "readOnlyRoot": bool(
                        (container.get("securityContext") or {}).get("readOnlyRootFilesystem")
                    ),
                },
            )
            started_process = await launch(
                path,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            if isinstance(started_process, str):
                raise CannotRun("StartError", started_process)
        except CannotRun as error:
            log_.finish()
            if cgroup is not None:
                await cgroup.remove()
            self.record("Failed", f"Error: {error.message}", warning=True, container=name)
            entry["state"] = {
                "terminated": {
                    "exitCode": 128,
                    "reason": error.reason,
                    "message": error.message,
                    "startedAt": None,
                    "finishedAt": now(),
                }
            }
            self.write()
            return 128
        process = started_process
        running = Running(process, cgroup, spec)
        self.running[name] = running
        cgroup.on_oom(lambda: self._oom(name, running))
        container_id = f"mlinfra://{self.uid[:8]}-{name}-{process.pid}"
        self.record("Created", f"Created container: {name}", container=name)
        self.record("Started", f"Started container {name}", container=name)
        entry["state"] = {"running": {"startedAt": started}}
        entry["containerID"] = container_id
        entry["started"] = "startupProbe" not in container
        if "readinessProbe" in container:
            self.state.ready[name] = False
        self.write()
        probes = [asyncio.get_running_loop().create_task(run_probes(self, container, running))]
        assert process.stdout is not None
        try:
            await capture(process.stdout, log_)
            code = await process.wait()
        finally:  # also when the pod's run is cancelled (deletion, teardown)
            for probe in probes:
                probe.cancel()
            cgroup.kill()  # the container ends with its first process
        oom = cgroup.oom_kills() > 0 or name in self.oom_killed
        self.oom_killed.discard(name)
        await cgroup.remove()
        self.state.ready.pop(name, None)
        log_.finish()
        self.running.pop(name, None)
        exit_code = code if code >= 0 else 128 - code
        reason = "OOMKilled" if oom else "Completed" if exit_code == 0 else "Error"
        terminated: Obj = {
            "exitCode": exit_code,
            "reason": reason,
            "startedAt": started,
            "finishedAt": now(),
            "containerID": container_id,
        }
        message = message_file.read_bytes()[:TERMINATION_MESSAGE_LIMIT].decode(errors="replace")
        if (
            not message
            and exit_code
            and (container.get("terminationMessagePolicy") == "FallbackToLogsOnError")
        ):
            message = log_.tail(80).decode(errors="replace")[-TERMINATION_MESSAGE_LIMIT:]
        if message:
            terminated["message"] = message
        entry["state"] = {"terminated": terminated}
        entry["started"] = False
        self.write()
        return exit_code

    def _oom(self, name: str, running: Running) -> None:
        """The OOM killer ended a process of the container: the whole container goes, as with
        ``memory.oom.group``."""
        self.oom_killed.add(name)
        running.cgroup.kill()

    async def exec(
        self, running: Running, command: list[str], *, stdin: int, stdout: int, stderr: int
    ) -> asyncio.subprocess.Process | str:
        """A command inside a running container (its namespaces, root, cgroup, user and
        environment): the process, or why it could not start."""
        spec = running.spec
        argv = command_line(command, spec.env)
        path = launch_file(
            self.root,
            ProcessSpec(argv, spec.env, spec.cwd, spec.user),
            {"cgroup": running.cgroup.procs, "enter": running.process.pid},
        )
        process = await launch(path, stdin=stdin, stdout=stdout, stderr=stderr)
        if not isinstance(process, str):
            self.execs.add(process)
            process_done = asyncio.ensure_future(process.wait())
            process_done.add_done_callback(lambda _: self.execs.discard(process))
        return process

    # -- ending ----------------------------------------------------------------------------

    def _deadline_exceeded(self) -> None:
        """``activeDeadlineSeconds``: the kubelet stops the containers and fails the pod."""
        self.fail(
            "DeadlineExceeded", "Pod was active on the node longer than the specified deadline"
        )

    def fail(
        self, reason: str, message: str, *, disrupted: bool = False
    ) -> asyncio.Task[None] | None:
        """Stop the containers (with the pod's grace period) and fail the pod."""
        if self.stopping or self.state.phase in ("Succeeded", "Failed"):
            return None
        self.stopping = True
        self.state.reason, self.state.message = reason, message
        self.state.disrupted = disrupted
        self.record(reason, message, warning=True)
        grace = int(self.pod["spec"].get("terminationGracePeriodSeconds", 30))
        task = asyncio.get_running_loop().create_task(self._fail_after_stop(grace))
        self._helpers.add(task)
        task.add_done_callback(self._helpers.discard)
        return task

    async def _fail_after_stop(self, grace: int) -> None:
        await self._stop_processes(grace)
        self.state.phase = "Failed"
        self.write()
        await self.flush()

    async def _stop_processes(self, grace: int) -> None:
        """SIGTERM each container's first process, SIGKILL what is left of every container
        after ``grace`` seconds, then end the pod's run (a pod still pulling images or waiting
        for a volume has no processes) and mark what never ran as a kubelet does."""
        running = list(self.running.items())
        for name, _ in running:
            self.record("Killing", f"Stopping container {name}", container=name)
        for _, container in running:
            with contextlib.suppress(ProcessLookupError):
                container.process.send_signal(signal.SIGTERM)
        if running:
            waits = asyncio.gather(*(c.process.wait() for _, c in running))
            try:
                await asyncio.wait_for(asyncio.shield(waits), grace)
            except asyncio.TimeoutError:
                for _, container in running:
                    container.cgroup.kill()
                await waits
        if self.task is not None and not self.task.done():
            if running:  # the containers' own bookkeeping records how they ended
                await asyncio.wait({self.task}, timeout=SETTLE_SECONDS)
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        for entry in self.state.containers.values():
            if "terminated" not in entry["state"]:
                entry["state"] = {
                    "terminated": {
                        "exitCode": 137,
                        "reason": "ContainerStatusUnknown",
                        "message": "The container could not be located when the pod was terminated",
                        "startedAt": None,
                        "finishedAt": now(),
                    }
                }
                entry["started"] = entry["ready"] = False
        if self.state.phase not in ("Succeeded", "Failed"):
            ok = all(
                self.state.containers[c["name"]]["state"]["terminated"]["exitCode"] == 0
                for c in self.pod["spec"]["containers"]
            )
            self.state.phase = "Succeeded" if ok and self.state.reason is None else "Failed"

    async def _terminate(self, grace: int) -> None:
        """The pod is being deleted: stop it, report its final status, then remove it (as the
        node, with grace 0 and the pod's uid as precondition)."""
        await self._stop_processes(grace)
        self.write()
        await self.flush()
        body = {"gracePeriodSeconds": 0, "preconditions": {"uid": self.uid}}
        await self._persist("deletion", lambda: self.node.api.delete(_path(self.pod), body))

    async def close(self) -> None:
        """Kill everything, free the sandbox, forget the pod (it is gone, or the kubelet
        stops)."""
        self.stopping = True
        for timer in self._timers:
            timer.cancel()
        running = list(self.running.values())
        processes = [r.process for r in running] + list(self.execs)
        for container in running:
            container.cgroup.kill()
        for process in self.execs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        tasks = [t for t in [self.task, *self._helpers] if t not in (None, asyncio.current_task())]
        for task in tasks:
            task.cancel()
        interrupted = False
        for task in tasks:
            try:
                await task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    interrupted = True  # the caller is stopped meanwhile: it ends after this
                    current.uncancel()
            except Exception:  # how the task failed does not matter: it is over
                pass
        # reaped, so no process or transport outlives the pod (killed above: at once)
        await asyncio.wait_for(asyncio.gather(*(p.wait() for p in processes)), SETTLE_SECONDS)
        for container in running:
            await container.cgroup.remove()
        self.running.clear()
        if self._writer is not None:  # a last write answers 404 at once when the pod is gone
            await asyncio.wait({self._writer}, timeout=SETTLE_SECONDS)
            self._writer.cancel()
        self.settings.logs.forget(self.uid)
        await self.node.sources.release(self.uid)
        if self.sandbox is not None:
            await asyncio.to_thread(self.settings.network.release, self.sandbox)
            self.sandbox = None
        await asyncio.to_thread(shutil.rmtree, self.root, True)
        if interrupted:  # not swallowed: a pod watch stopped while it closed this pod must end
            raise asyncio.CancelledError
