"""A running container's probes, as a kubelet runs them: ``startupProbe`` first (the others
wait for it), then ``readinessProbe`` (the container's and the pod's Ready) and
``livenessProbe`` (a failure kills the container, which restarts per ``restartPolicy``), with
``Unhealthy`` events."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from typing import TYPE_CHECKING

from .context import Running
from .probes import probe_once
from .status import Obj

if TYPE_CHECKING:
    from .pods import PodWorker


async def run_probes(worker: PodWorker, container: Obj, running: Running) -> None:
    """startupProbe first (the others wait for it), then readiness and liveness."""
    if "startupProbe" in container:
        if not await _probe(worker, container, running, "startupProbe"):
            return
        worker.state.containers[container["name"]]["started"] = True
        worker.write()
    await asyncio.gather(
        *(
            _probe(worker, container, running, kind)
            for kind in ("readinessProbe", "livenessProbe")
            if kind in container
        )
    )


async def _probe(worker: PodWorker, container: Obj, running: Running, kind: str) -> bool:
    """One probe, until the container exits (readiness), fails it (liveness, startup:
    the container is killed and False returned) or, for startup, succeeds (True)."""
    probe = container[kind]
    name = container["name"]
    label = {
        "readinessProbe": "Readiness",
        "livenessProbe": "Liveness",
        "startupProbe": "Startup",
    }[kind]
    needed = int(probe.get("successThreshold", 1))
    limit = int(probe.get("failureThreshold", 3))
    successes = failures = 0
    assert worker.state.ip is not None
    await asyncio.sleep(float(probe.get("initialDelaySeconds", 0)))
    while running.process.returncode is None:
        why = await probe_once(
            probe,
            worker.state.ip,
            container,
            lambda command, timeout: _exec_probe(worker, running, command, timeout),
        )
        successes, failures = (successes + 1, 0) if why is None else (0, failures + 1)
        if why is not None:
            worker.record("Unhealthy", f"{label} probe failed: {why}", warning=True, container=name)
        if kind == "startupProbe" and successes >= needed:
            return True
        if kind == "readinessProbe":
            ready = worker.state.ready.get(name, False)
            if (successes >= needed and not ready) or (failures >= limit and ready):
                worker.state.ready[name] = not ready
                worker.write()
        elif failures >= limit:
            worker.record(
                "Killing",
                f"Container {name} failed {label.lower()} probe, will be restarted",
                container=name,
            )
            running.cgroup.kill()
            return False
        await asyncio.sleep(float(probe.get("periodSeconds", 10)))
    return False


async def _exec_probe(
    worker: PodWorker, running: Running, command: list[str], timeout: float
) -> int:
    process = await worker.exec(
        running,
        command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    if isinstance(process, str):
        return -1
    try:
        return await asyncio.wait_for(process.wait(), timeout)
    except asyncio.TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        return -1
