"""The fixture's kubelet: runs each pod bound to a node as local processes.

For a bound pod it simulates the image pull (events Pulling/Pulled, or ErrImagePull and
ImagePullBackOff for images told to fail), materialises volumes, runs init containers one by
one and then the containers together as process groups, captures their output for the log
subresource, and keeps the pod's status as a real kubelet does: podIP (its own 127.0.0.N),
container states waiting/running/terminated with exit codes, reasons and termination
messages, restarts per restartPolicy, phase and conditions. Deleting a pod sends SIGTERM to
each container's process group, waits the grace period, then SIGKILL."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

from . import processes
from .amounts import amount
from .containers import CannotRun, ProcessSpec, command_line, process_spec
from .dns import ClusterDns
from .events import Recorder
from .logs import ContainerLog, LogBook
from .probes import probe_once
from .resources import Registry
from .store import Change, Obj, Store, meta, now
from .volumes import MissingSource, Volumes, mount_table

TERMINATION_MESSAGE_LIMIT = 4096
#: longer lines are split, as the container runtime splits log lines (it uses 16 KiB)
LOG_LINE_LIMIT = 16384


async def capture(output: asyncio.StreamReader, log: ContainerLog) -> None:
    """Read a container's output into its log line by line, whatever it writes: a very long
    line (a progress bar redrawn with ``\r``) is kept in parts instead of stalling the reader;
    the parts join up again in the log text."""
    pending = b""
    while chunk := await output.read(65536):
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            log.append(line + b"\n")
        while len(pending) > LOG_LINE_LIMIT:
            log.append(pending[:LOG_LINE_LIMIT])
            pending = pending[LOG_LINE_LIMIT:]
    if pending:
        log.append(pending)


class PodRun:
    """What the kubelet knows about one pod it runs."""

    def __init__(self, pod: Obj, root: Path, ip: str) -> None:
        self.uid: str = meta(pod)["uid"]
        self.namespace: str = meta(pod)["namespace"]
        self.name: str = meta(pod)["name"]
        self.root = root
        self.ip = ip
        self.started_at = now()
        self.phase = "Pending"
        self.initialized = not pod["spec"].get("initContainers")
        self.processes: dict[str, asyncio.subprocess.Process] = {}
        #: exec'd commands, killed with the pod
        self.extra_processes: set[asyncio.subprocess.Process] = set()
        self.statuses: dict[str, dict[str, Any]] = {}
        self.stopping = False  # no more container (re)starts
        self.removing = False  # the pod is being deleted
        self.task: asyncio.Task[None] | None = None
        #: readiness by container name, for containers with a readinessProbe
        self.ready: dict[str, bool] = {}
        self.disrupted = False  # its node went away
        self.oom_killed: set[str] = set()  # containers killed over their memory limit
        self.volumes: dict[str, Path] = {}  # volume name -> host directory, once mounted
        #: pod-level failure reason and message (DeadlineExceeded, Terminated)
        self.reason: str | None = None
        self.message: str | None = None
        spec = pod["spec"]
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            self.statuses[container["name"]] = {
                "name": container["name"],
                "image": container.get("image", ""),
                "imageID": "",
                "ready": False,
                "started": False,
                "restartCount": 0,
                "state": {
                    "waiting": {
                        "reason": "PodInitializing"
                        if container in spec.get("initContainers", [])
                        else "ContainerCreating"
                    }
                },
                "lastState": {},
            }


def _tree_resident(pid: int) -> int | None:
    """Resident bytes of ``pid`` and its descendants (what a container's memory cgroup
    counts); None once ``pid`` is gone."""
    page = os.sysconf("SC_PAGE_SIZE")
    total, pending, first = 0, [pid], True
    while pending:
        current = pending.pop()
        try:
            with open(f"/proc/{current}/statm") as statm:
                total += int(statm.read().split()[1]) * page
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as children:
                    pending.extend(int(child) for child in children.read().split())
        except (OSError, IndexError, ValueError):
            if first:
                return None
        first = False
    return total


class Kubelet:
    """Runs bound pods; one per fixture, serving every node (they share this machine)."""

    def __init__(
        self,
        store: Store,
        registry: Registry,
        recorder: Recorder,
        dns: ClusterDns,
        volumes: Volumes,
        logs: LogBook,
        root: Path,
    ) -> None:
        self.store = store
        self.pods = registry.lookup("", "v1", "pods")
        self.secrets = registry.lookup("", "v1", "secrets")
        self.configmaps = registry.lookup("", "v1", "configmaps")
        self.nodes = registry.lookup("", "v1", "nodes")
        self.recorder = recorder
        self.dns = dns
        self.volumes = volumes
        self.logs = logs
        self.root = root
        self.image_pull_seconds = 0.0
        self.failing_images: set[str] = set()
        self.pulled: dict[str, set[str]] = {}
        self.runs: dict[str, PodRun] = {}
        self.restart_backoff = (0.1, 2.0)  # first delay and cap, doubled per restart
        self.memory_check_seconds = 0.2
        self._next_ip = 2
        self._sources_changed = asyncio.Event()
        store.subscribe(self._on_change)

    # -- reacting to the store ---------------------------------------------------------------

    def _on_change(self, change: Change) -> None:
        if change.rtype in (self.secrets, self.configmaps):
            self._sources_changed.set()
            self._sources_changed = asyncio.Event()
        if change.rtype is self.nodes and change.type == "DELETED":
            self._node_gone(meta(change.obj)["name"])
        if change.rtype is not self.pods:
            return
        pod = change.obj
        uid = meta(pod)["uid"]
        run = self.runs.get(uid)
        if change.type == "DELETED":
            if run is not None:
                self._forget(run)
        elif meta(pod).get("deletionTimestamp"):
            if run is None:
                self._remove(pod)
            elif not run.removing:
                run.removing = run.stopping = True
                grace = int(meta(pod).get("deletionGracePeriodSeconds") or 0)
                asyncio.get_running_loop().create_task(self._terminate(run, pod, grace))
        elif (
            pod["spec"].get("nodeName")
            and run is None
            and pod.get("status", {}).get("phase") not in ("Succeeded", "Failed")
        ):
            self._start(pod)

    def _allocate_ip(self) -> str:
        n = self._next_ip
        self._next_ip += 1
        return f"127.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"

    def _start(self, pod: Obj) -> None:
        root = self.root / f"{meta(pod)['namespace']}_{meta(pod)['name']}_{meta(pod)['uid'][:8]}"
        root.mkdir(parents=True, exist_ok=True)
        run = PodRun(pod, root, self._allocate_ip())
        self.runs[run.uid] = run
        run.task = asyncio.get_running_loop().create_task(self._run(run, pod))
        run.task.add_done_callback(self._report_crash)

    def _report_crash(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            error = task.exception()
            assert isinstance(error, Exception)
            self.store.errors.append(error)

    def _forget(self, run: PodRun) -> None:
        self.runs.pop(run.uid, None)
        self._kill(run, signal.SIGKILL)
        if run.task is not None:
            run.task.cancel()
        self.logs.forget(run.uid)
        shutil.rmtree(run.root, ignore_errors=True)

    def _remove(self, pod: Obj) -> None:
        assert self.pods is not None
        if self.store.find(self.pods, meta(pod)["namespace"], meta(pod)["name"]) is not None:
            self.store.remove(self.pods, meta(pod)["namespace"], meta(pod)["name"])

    # -- status ----------------------------------------------------------------------------

    def _write(self, run: PodRun) -> None:
        """Publish the run's state as the pod's status (no-op once the pod is gone)."""
        assert self.pods is not None
        pod = self.store.find(self.pods, run.namespace, run.name)
        if pod is None or meta(pod)["uid"] != run.uid:
            return
        spec = pod["spec"]
        init_names = [c["name"] for c in spec.get("initContainers", [])]
        names = [c["name"] for c in spec["containers"]]
        for name in names:
            running = "running" in run.statuses[name]["state"]
            run.statuses[name]["ready"] = running and run.ready.get(name, True)
        ready = run.phase == "Running" and all(run.statuses[n]["ready"] for n in names)
        stamp = now()
        old: dict[str, dict[str, Any]] = {
            c["type"]: c for c in pod.get("status", {}).get("conditions", [])
        }

        def condition(kind: str, value: bool, reason: str | None = None) -> dict[str, Any]:
            text = "True" if value else "False"
            kept = old.get(kind)
            if kept is not None and kept["status"] == text:
                return kept
            entry = {
                "type": kind,
                "status": text,
                "lastProbeTime": None,
                "lastTransitionTime": stamp,
            }
            return {**entry, "reason": reason} if reason else entry

        terminal = run.phase in ("Succeeded", "Failed")
        not_ready = "PodCompleted" if terminal else "ContainersNotReady"
        status = dict(pod.get("status", {}))
        status.update(
            {
                "phase": run.phase,
                "hostIP": "127.0.0.1",
                "hostIPs": [{"ip": "127.0.0.1"}],
                "podIP": run.ip,
                "podIPs": [{"ip": run.ip}],
                "startTime": run.started_at,
                "conditions": [
                    condition("PodReadyToStartContainers", not terminal),
                    condition("Initialized", run.initialized),
                    condition("Ready", ready, None if ready else not_ready),
                    condition("ContainersReady", ready, None if ready else not_ready),
                    *([old["PodScheduled"]] if "PodScheduled" in old else []),
                    *(
                        [
                            old.get("DisruptionTarget")
                            or {
                                "type": "DisruptionTarget",
                                "status": "True",
                                "reason": "TerminationByKubelet",
                                "message": run.message,
                                "lastProbeTime": None,
                                "lastTransitionTime": stamp,
                            }
                        ]
                        if run.disrupted
                        else []
                    ),
                ],
                "containerStatuses": [run.statuses[n] for n in names],
            }
        )
        if init_names:
            status["initContainerStatuses"] = [run.statuses[n] for n in init_names]
        if run.reason:
            status.update(reason=run.reason, message=run.message)
        pod["status"] = status
        self.store.update(self.pods, pod)

    # -- the pod's life ----------------------------------------------------------------------

    async def _run(self, run: PodRun, pod: Obj) -> None:
        deadline = pod["spec"].get("activeDeadlineSeconds")
        timer = (
            None
            if deadline is None
            else asyncio.get_running_loop().call_later(
                float(deadline), self._deadline_exceeded, run, pod
            )
        )
        try:
            await self._run_containers(run, pod)
        finally:
            if timer is not None:
                timer.cancel()

    async def _run_containers(self, run: PodRun, pod: Obj) -> None:
        self._write(run)
        run.volumes = await self._mount(run, pod)
        for container in pod["spec"].get("initContainers", []):
            code = await self._keep_running(run, pod, container, init=True)
            if code != 0:
                run.phase = "Failed"
                self._write(run)
                return
        run.initialized = True
        for container in pod["spec"]["containers"]:
            await self._pull(run, pod, container)
        run.phase = "Running"
        codes = await asyncio.gather(
            *(
                self._keep_running(run, pod, container, init=False)
                for container in pod["spec"]["containers"]
            )
        )
        succeeded = all(code == 0 for code in codes) and run.reason is None
        run.phase = "Succeeded" if succeeded else "Failed"
        self._write(run)

    def _deadline_exceeded(self, run: PodRun, pod: Obj) -> None:
        """``activeDeadlineSeconds``: the kubelet stops the containers and fails the pod."""
        self._fail_pod(
            run,
            pod,
            "DeadlineExceeded",
            "Pod was active on the node longer than the specified deadline",
        )

    def _node_gone(self, node: str) -> None:
        """A deleted node (a reclaimed spot VM) takes its pods down: they fail with the
        DisruptionTarget condition, as after a graceful node shutdown."""
        assert self.pods is not None
        for run in list(self.runs.values()):
            pod = self.store.find(self.pods, run.namespace, run.name)
            if pod is not None and pod["spec"].get("nodeName") == node:
                run.disrupted = True
                self._fail_pod(
                    run,
                    pod,
                    "Terminated",
                    "Pod was terminated in response to imminent node shutdown.",
                )

    def _fail_pod(self, run: PodRun, pod: Obj, reason: str, message: str) -> None:
        if run.stopping or run.phase in ("Succeeded", "Failed"):
            return
        run.stopping = True
        run.reason, run.message = reason, message
        self._record(pod, reason, message, warning=True)
        grace = int(pod["spec"].get("terminationGracePeriodSeconds", 30))
        asyncio.get_running_loop().create_task(self._fail_after_stop(run, pod, grace))

    async def _fail_after_stop(self, run: PodRun, pod: Obj, grace: int) -> None:
        await self._stop_processes(run, pod, grace)
        run.phase = "Failed"
        self._write(run)

    async def _mount(self, run: PodRun, pod: Obj) -> dict[str, Path]:
        reported = ""
        while True:
            changed = self._sources_changed
            try:
                return self.volumes.materialise(pod, run.root)
            except MissingSource as missing:
                if str(missing) != reported:
                    reported = str(missing)
                    self._record(
                        pod, "FailedMount", f"MountVolume.SetUp failed: {missing}", warning=True
                    )
            await changed.wait()

    async def _pull(self, run: PodRun, pod: Obj, container: dict[str, Any]) -> None:
        image = container.get("image", "")
        node = pod["spec"]["nodeName"]
        cached = self.pulled.setdefault(node, set())
        if image in self.failing_images:
            self._record(pod, "Pulling", f'Pulling image "{image}"')
            message = (
                f'Failed to pull image "{image}": rpc error: code = NotFound desc = '
                f'failed to pull and unpack image "{image}": not found'
            )
            self._record(pod, "Failed", message, warning=True)
            self._waiting(run, container, "ErrImagePull", message)
            self._record(pod, "BackOff", f'Back-off pulling image "{image}"', warning=True)
            self._waiting(run, container, "ImagePullBackOff", f'Back-off pulling image "{image}"')
            await asyncio.Event().wait()  # like a kubelet retrying forever, until deleted
        if container.get("imagePullPolicy") != "Always" and image in cached:
            self._record(pod, "Pulled", f'Container image "{image}" already present on machine')
            return
        self._record(pod, "Pulling", f'Pulling image "{image}"')
        await asyncio.sleep(self.image_pull_seconds)
        cached.add(image)
        seconds = f"{self.image_pull_seconds:.3f}s"
        self._record(
            pod,
            "Pulled",
            f'Successfully pulled image "{image}" in {seconds} ({seconds} '
            "including waiting). Image size: 0 bytes.",
        )

    def _record(self, pod: Obj, reason: str, message: str, *, warning: bool = False) -> None:
        """An event about ``pod`` from the kubelet of its node."""
        self.recorder.record(
            pod,
            reason,
            message,
            component="kubelet",
            warning=warning,
            host=pod["spec"].get("nodeName"),  # a pod being stopped may never have been placed
        )

    def _waiting(self, run: PodRun, container: dict[str, Any], reason: str, message: str) -> None:
        run.statuses[container["name"]]["state"] = {
            "waiting": {"reason": reason, "message": message}
        }
        self._write(run)

    async def _keep_running(
        self,
        run: PodRun,
        pod: Obj,
        container: dict[str, Any],
        *,
        init: bool,
    ) -> int:
        """Run a container until it is done for good under the pod's restartPolicy."""
        policy = pod["spec"].get("restartPolicy", "Always")
        if init:
            await self._pull(run, pod, container)
        delay, cap = self.restart_backoff
        while True:
            code = await self._execute(run, pod, container)
            done = code == 0 and (init or policy != "Always")
            if done or policy == "Never" or run.stopping:
                return code
            status = run.statuses[container["name"]]
            status["restartCount"] += 1
            status["lastState"] = status["state"]
            if code != 0:
                self._waiting(
                    run,
                    container,
                    "CrashLoopBackOff",
                    f"back-off restarting failed container {container['name']}",
                )
            await asyncio.sleep(delay)
            delay = min(cap, delay * 2)

    async def _execute(self, run: PodRun, pod: Obj, container: dict[str, Any]) -> int:
        name = container["name"]
        status = run.statuses[name]
        message_file = run.root / "termination" / f"{name}-{status['restartCount']}"
        message_file.parent.mkdir(parents=True, exist_ok=True)
        message_file.write_bytes(b"")
        spec = await self._configured(run, pod, container, message_file)
        log = self.logs.start(run.uid, name)
        started = now()
        try:
            if spec is None:
                spec = self.process_spec(run, pod, container, message_file)
            process = await processes.start(
                spec.argv,
                spec,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
        except (CannotRun, OSError) as error:
            reason = error.reason if isinstance(error, CannotRun) else "StartError"
            text = (
                error.message
                if isinstance(error, CannotRun)
                else (f"failed to start container {name!r}: {error}")
            )
            log.finish()
            self._record(pod, "Failed", f"Error: {text}", warning=True)
            status["state"] = {
                "terminated": {
                    "exitCode": 128,
                    "reason": reason,
                    "message": text,
                    "startedAt": None,
                    "finishedAt": now(),
                }
            }
            self._write(run)
            return 128
        run.processes[name] = process
        self._record(pod, "Created", f"Created container: {name}")
        self._record(pod, "Started", f"Started container {name}")
        status["state"] = {"running": {"startedAt": started}}
        status["started"] = True
        status["containerID"] = f"fixture://{process.pid}"
        if "readinessProbe" in container:
            run.ready[name] = False
        self._write(run)
        probes = [
            asyncio.get_running_loop().create_task(
                self._probe(run, pod, container, spec, process, kind)
            )
            for kind in ("readinessProbe", "livenessProbe")
            if kind in container
        ]
        limit = ((container.get("resources") or {}).get("limits") or {}).get("memory")
        if limit is not None:
            probes.append(
                asyncio.get_running_loop().create_task(
                    self._enforce_memory(run, name, process, int(amount("memory", limit)))
                )
            )
        assert process.stdout is not None
        try:
            await capture(process.stdout, log)
            code = await process.wait()
        finally:  # also when the pod's run is cancelled (deletion, teardown)
            for probe in probes:
                probe.cancel()
        run.ready.pop(name, None)
        processes.signal_group(process)  # the container ends with its first process
        log.finish()
        run.processes.pop(name, None)
        exit_code = code if code >= 0 else 128 - code
        reason = "Completed" if exit_code == 0 else "Error"
        if name in run.oom_killed:
            run.oom_killed.discard(name)
            reason = "OOMKilled"
        terminated: dict[str, Any] = {
            "exitCode": exit_code,
            "reason": reason,
            "startedAt": started,
            "finishedAt": now(),
            "containerID": status["containerID"],
        }
        message = message_file.read_bytes()[:TERMINATION_MESSAGE_LIMIT].decode(errors="replace")
        if (
            not message
            and exit_code
            and (container.get("terminationMessagePolicy") == "FallbackToLogsOnError")
        ):
            message = b"".join(line for _, line in log.lines[-80:]).decode(errors="replace")
        if message:
            terminated["message"] = message
        status["state"] = {"terminated": terminated}
        status["started"] = False
        self._write(run)
        return exit_code

    async def _probe(
        self,
        run: PodRun,
        pod: Obj,
        container: dict[str, Any],
        spec: ProcessSpec,
        process: asyncio.subprocess.Process,
        kind: str,
    ) -> None:
        """One probe of one running container, until the container exits."""
        probe = container[kind]
        name = container["name"]
        label = "Readiness" if kind == "readinessProbe" else "Liveness"
        needed = int(probe.get("successThreshold", 1))
        limit = int(probe.get("failureThreshold", 3))
        successes = failures = 0

        async def run_exec(command: list[str], timeout: float) -> int:
            checker = await processes.start(
                command_line(command, spec.env, spec.mounts),
                spec,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            try:
                return await asyncio.wait_for(checker.wait(), timeout)
            except asyncio.TimeoutError:
                processes.signal_group(checker)
                await checker.wait()
                return -1

        await asyncio.sleep(float(probe.get("initialDelaySeconds", 0)))
        while process.returncode is None:
            why = await probe_once(probe, run.ip, container, run_exec)
            successes, failures = (successes + 1, 0) if why is None else (0, failures + 1)
            if why is not None:
                self._record(pod, "Unhealthy", f"{label} probe failed: {why}", warning=True)
            if kind == "readinessProbe":
                ready = run.ready.get(name, False)
                if (successes >= needed and not ready) or (failures >= limit and ready):
                    run.ready[name] = not ready
                    self._write(run)
            elif failures >= limit:
                self._record(
                    pod, "Killing", f"Container {name} failed liveness probe, will be restarted"
                )
                processes.signal_group(process)
                return
            await asyncio.sleep(float(probe.get("periodSeconds", 10)))

    async def _configured(
        self, run: PodRun, pod: Obj, container: dict[str, Any], message_file: Path
    ) -> ProcessSpec | None:
        """The container's process spec once its env sources exist: while a Secret or
        ConfigMap key it needs is missing, it waits in CreateContainerConfigError as upstream
        (None: another problem, for the caller to report)."""
        reported = ""
        while True:
            changed = self._sources_changed
            try:
                return self.process_spec(run, pod, container, message_file)
            except CannotRun as error:
                if error.reason != "CreateContainerConfigError":
                    return None
                if error.message != reported:
                    reported = error.message
                    self._record(pod, "Failed", f"Error: {error.message}", warning=True)
                    self._waiting(run, container, error.reason, error.message)
            await changed.wait()

    async def _enforce_memory(
        self, run: PodRun, name: str, process: asyncio.subprocess.Process, limit: int
    ) -> None:
        """A memory limit, enforced the way the kernel's OOM killer ends a cgroup that
        exceeds it (with ``memory.oom.group``, as the kubelet sets since Kubernetes 1.28): the
        resident memory of the container's processes (its first one and their descendants)
        is sampled every ``memory_check_seconds``; over the limit they are all SIGKILLed and
        the container ends ``OOMKilled``."""
        while process.returncode is None:
            resident = _tree_resident(process.pid)
            if resident is None:
                return
            if resident > limit:
                run.oom_killed.add(name)
                processes.signal_group(process)
                return
            await asyncio.sleep(self.memory_check_seconds)

    def process_spec(
        self, run: PodRun, pod: Obj, container: dict[str, Any], message_file: Path | None = None
    ) -> ProcessSpec:
        """How ``container`` of a running pod becomes a process (also for exec and probes);
        raises CannotRun."""
        table = mount_table(container, run.volumes)
        if message_file is not None:
            path = container.get("terminationMessagePath", "/dev/termination-log")
            table[path] = os.fspath(message_file)
        current = self._current(run, pod)
        return process_spec(
            current,
            container,
            base_env=self._base_env(run, current),
            mounts=table,
            default_cwd=run.root,
            lookup=lambda kind, source, optional: self.volumes.source_data(
                kind, run.namespace, source, optional
            ),
        )

    def running(self, namespace: str, name: str) -> PodRun | None:
        """The run of a pod whose containers have started, for exec and port-forward."""
        return next(
            (
                run
                for run in self.runs.values()
                if (run.namespace, run.name) == (namespace, name) and run.phase == "Running"
            ),
            None,
        )

    def _current(self, run: PodRun, pod: Obj) -> Obj:
        assert self.pods is not None
        found = self.store.find(self.pods, run.namespace, run.name)
        return pod if found is None else found

    def _base_env(self, run: PodRun, pod: Obj) -> dict[str, str]:
        home = run.root / "home"
        home.mkdir(exist_ok=True)
        venv_bin = os.path.dirname(sys.executable)
        return {
            "PATH": f"{venv_bin}:/usr/local/bin:/usr/bin:/bin",
            "HOME": os.fspath(home),
            "HOSTNAME": pod["spec"].get("hostname") or run.name,
            "LANG": "C.UTF-8",
            **self.dns.env(run.namespace, pod),
        }

    # -- stopping --------------------------------------------------------------------------

    def _kill(self, run: PodRun, signum: int) -> None:
        for process in [*run.processes.values(), *run.extra_processes]:
            processes.signal_group(process, signum)

    async def _stop_processes(self, run: PodRun, pod: Obj, grace: int) -> None:
        """SIGTERM every container's process group, SIGKILL what is left after ``grace``
        seconds, then end the pod's run (a pod still pulling images has no processes)."""
        for name in list(run.processes):
            self._record(pod, "Killing", f"Stopping container {name}")
        self._kill(run, signal.SIGTERM)
        processes = list(run.processes.values())
        if processes:
            try:
                await asyncio.wait_for(asyncio.gather(*(p.wait() for p in processes)), grace)
            except asyncio.TimeoutError:
                self._kill(run, signal.SIGKILL)
                await asyncio.gather(*(p.wait() for p in processes))  # reaped before it's gone
        if run.task is not None and asyncio.current_task() is not run.task:
            run.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await run.task

    async def _terminate(self, run: PodRun, pod: Obj, grace: int) -> None:
        await self._stop_processes(run, pod, grace)
        self._remove(pod)

    def processes(self) -> dict[str, int]:
        """Pod name -> pid of its running container processes (the first when several)."""
        return {
            run.name: next(iter(run.processes.values())).pid
            for run in self.runs.values()
            if run.processes
        }

    async def stop(self) -> None:
        """Kill every process group the fixture started and reap them (teardown)."""
        processes = [p for run in self.runs.values() for p in run.processes.values()]
        for run in list(self.runs.values()):
            self._kill(run, signal.SIGKILL)
            if run.task is not None:
                run.task.cancel()
            self.logs.forget(run.uid)  # ends log streams that follow it
        if processes:
            await asyncio.wait_for(asyncio.gather(*(p.wait() for p in processes)), 10)
