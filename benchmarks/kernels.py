"""Kernel start: a flavor kernel through MLInfraProvisioner against a plain KernelManager.

    python benchmarks/kernels.py [--starts 20] [--warmup 2]

Times each start from the start request to the first ``kernel_info_reply``, for

- a flavor kernel: ``AsyncKernelManager`` on the generated kernelspec ``mlinfra-python`` with
  ``mlinfra_flavor="cpu"``, through ``MLInfraProvisioner``: catalog checks, a lease from a
  private local agent (``POST`` over its Unix socket), the pinning wrapper ``launch/pin.py``,
  and the lease bound to the kernel's pid (``PUT``);
- the anchor: a plain ``AsyncKernelManager`` on ``python3``, the same interpreter
  (``sys.executable -m ipykernel_launcher``), no provisioner of ours.

Starts alternate between the two (the order flips every round), in one process and one run,
so load on the machine moves both alike. Target: median ratio ≤ 1.10. The server extension is
set up in this process as a Jupyter server would (``MLInfraApp.initialize_settings``), without
an HTTP server: the REST layer is not what is timed. Every kernel is shut down after its start;
the agent is stopped by pid at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from traitlets.config import Config

from benchmarks.jobs import Row, p50, p95, print_table
from jupyter_mlinfra.app import MLInfraApp
from jupyter_mlinfra.kernels import lease as leases
from jupyter_mlinfra.kernels import registry
from jupyter_mlinfra.kernels.specs import MLInfraKernelSpecManager
from tests.agents import AgentHome

CATALOG = {
    "flavors": [{"name": "cpu", "cpu": 1, "memory": "1Gi"}],
    "environments": [{"name": "python"}],
}


async def start_to_info_reply(manager: AsyncKernelManager, **start: Any) -> float:
    """Seconds from ``start_kernel`` to the first ``kernel_info_reply``; then shut it down."""
    began = time.perf_counter()
    await manager.start_kernel(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **start)
    client = manager.client()
    client.start_channels()
    try:
        msg_id = client.kernel_info()
        while True:
            reply = await client.get_shell_msg(timeout=60)
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        elapsed = time.perf_counter() - began
    finally:
        client.stop_channels()
        await manager.shutdown_kernel(now=True)
    return elapsed


async def measure(args: argparse.Namespace, app: MLInfraApp) -> dict[str, list[float]]:
    plain_specs = KernelSpecManager()
    flavor_specs = MLInfraKernelSpecManager()

    async def plain() -> float:
        manager = AsyncKernelManager(kernel_name="python3", kernel_spec_manager=plain_specs)
        return await start_to_info_reply(manager)

    async def flavor() -> float:
        manager = AsyncKernelManager(kernel_name="mlinfra-python", kernel_spec_manager=flavor_specs)
        return await start_to_info_reply(manager, mlinfra_flavor="cpu")

    runs: dict[str, Callable[[], Awaitable[float]]] = {"plain": plain, "flavor": flavor}
    samples: dict[str, list[float]] = {"plain": [], "flavor": [], "lease": []}
    for round_ in range(args.warmup + args.starts):
        order = ["plain", "flavor"] if round_ % 2 == 0 else ["flavor", "plain"]
        for name in order:
            elapsed = await runs[name]()
            if round_ >= args.warmup:
                samples[name].append(elapsed)
        print(".", end="", flush=True)
    print()
    identity = app.identities.owner()
    for number in range(args.starts):  # the lease alone: POST then DELETE over the socket
        began = time.perf_counter()
        kernel_id = f"bench-{number}"
        await leases.acquire(app.agent, identity, kernel_id, "cpu", "python")
        await leases.release(app.agent, identity, kernel_id)
        samples["lease"].append(time.perf_counter() - began)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=20, help="timed starts of each kind")
    parser.add_argument("--warmup", type=int, default=2, help="untimed starts of each kind")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} CPUs, load average {load:.2f}, {sys.executable}")
    if load > 0.5:
        print("  (the machine is busy: other processes share the CPUs)")

    home = AgentHome(Path(tempfile.mkdtemp(prefix="mli-", dir="/tmp")))
    app = MLInfraApp(config=Config({"MLInfraApp": {**home.settings, **CATALOG}}))
    try:
        app.initialize_settings()  # registers the app for provisioners, as in a server
        samples = asyncio.run(measure(args, app))
    finally:
        app.agent.client.close()
        registry.unregister(app.parts)
        home.stop()
        shutil.rmtree(home.root, ignore_errors=True)

    ms = 1e3
    plain, flavor, lease = samples["plain"], samples["flavor"], samples["lease"]
    print(
        f"\n{args.starts} starts each: plain p50 {p50(plain) * ms:.1f} ms "
        f"(p95 {p95(plain) * ms:.1f}), flavor p50 {p50(flavor) * ms:.1f} ms "
        f"(p95 {p95(flavor) * ms:.1f}); lease POST+DELETE alone p50 {p50(lease) * ms:.2f} ms\n"
    )
    ratio = p50(flavor) / p50(plain)
    print_table(
        [
            Row(
                "start→kernel_info_reply p50, flavor kernel (cpu)",
                p50(flavor) * ms,
                "ms",
                "ratio ≤ 1.10",
                ratio <= 1.10,
                "plain KernelManager p50",
                p50(plain) * ms,
            ),
            Row(
                "start→kernel_info_reply p95, flavor kernel (cpu)",
                p95(flavor) * ms,
                "ms",
                anchor="plain KernelManager p95",
                anchor_value=p95(plain) * ms,
            ),
        ]
    )
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
