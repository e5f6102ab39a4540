"""``python -m tests.cluster up``: the tests' cluster, by hand, until Ctrl-C.

The control plane, the test kubelet with worker nodes, and Kueue and JobSet from their release
manifests (their pods on a node of their own), as the test session has them: for a developer
who points the extension or kubectl at real Kubernetes. It also sets up the server's side as an
admin would (``lab_config.py``) and writes a configuration that ``jupyter lab --config=...``
starts with. Ctrl-C (or SIGTERM) stops everything it started."""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType

from jupyter_mlinfra.quantities import parse_cpu

from . import addons, lab_config
from .control_plane import ControlPlane
from .kubelet import Kubelet


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.cluster", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start the cluster and wait for Ctrl-C")
    up.add_argument("--root", type=Path, help="folder for certificates, data, logs (default: new)")
    up.add_argument("--nodes", type=int, default=1, help="worker nodes node-0... (default: 1)")
    up.add_argument("--cpu", default="8", help="each worker node's CPUs (default: 8)")
    up.add_argument("--memory", default="16Gi", help="each worker node's memory (default: 16Gi)")
    up.add_argument(
        "--gpus", default="0", help="each worker node's nvidia.com/gpu (default: 0, none)"
    )
    up.add_argument("--no-addons", action="store_true", help="without Kueue and JobSet")
    args = parser.parse_args(argv)

    root = args.root or Path(tempfile.mkdtemp(prefix="mlinfra-cluster-"))
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # both set the event, also where SIGINT came ignored (started in the background)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    plane = ControlPlane(root)
    kubelet: Kubelet | None = None
    try:
        plane.start()
        kubelet = Kubelet(plane, root / "kubelet").start()
        if not args.no_addons:
            addons.install_all(plane, kubelet)
        extended = {"nvidia.com/gpu": args.gpus} if args.gpus != "0" else {}
        for i in range(args.nodes):
            kubelet.add_node(f"node-{i}", cpu=args.cpu, memory=args.memory, allocatable=extended)
        cpus = f"{parse_cpu(args.cpu) * args.nodes:g}"
        config = lab_config.write(plane, root, kueue=not args.no_addons, cpus=cpus)
        print(f"cluster up: API server {plane.server}, logs in {plane.logs_dir}")
        print(f"export KUBECONFIG={plane.admin_kubeconfig}")
        print(
            f"export PATH={plane.built.bin}:$PATH   # kubectl {plane.built.versions['kubernetes']}"
        )
        print(
            f"jupyter lab --config={config}   # as the example's ServiceAccount, "
            f"namespace {lab_config.NAMESPACE}"
        )
        print("Ctrl-C stops it.", flush=True)
        stop.wait()
    finally:
        print("stopping...", file=sys.stderr, flush=True)
        try:
            if kubelet is not None:
                kubelet.stop()
        finally:
            plane.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
