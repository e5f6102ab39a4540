"""Pod networking: each pod gets its own network namespace, as under a real container runtime,
joined to the host by a veth pair on one bridge per test cluster.

Why namespaces and not addresses on ``lo``: Kueue's and JobSet's managers, installed from their
release manifests, both listen on ``:9443``, ``:8081`` and ``:8443`` on every address, and
``localhost`` in a pod must be the pod's own (a real kubelet's port-forward connects there). In
a namespace every pod has its own ports and its own loopback, and its address is a real one.

The cluster's subnet ``10.244.N.0/24`` (``tests/cluster/network.py``) has ``.1`` on the host's
``lo``: the API server's address and every node's. The bridge ``mlk<N>`` carries the subnet's
route, pods get ``.2`` upwards with that ``.1`` as their gateway (the host answers ARP for its
own address on any interface), so the host reaches pods and pods reach the API server, each
other and the kubelet without forwarding or NAT. Pods have no way out of the machine."""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

#: the kubelet's marker per bridge (who owns it), so a later kubelet can reap a dead one's
MARKERS = Path("/run/mlinfra-kubelet")
NETNS = Path("/run/netns")


class NetworkError(RuntimeError):
    """An ``ip`` command failed: its command and message."""


def _ip(*args: str, batch: list[str] | None = None) -> str:
    done = subprocess.run(
        ["ip", *args, *(["-batch", "-"] if batch is not None else [])],
        input="".join(f"{line}\n" for line in batch) if batch is not None else None,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise NetworkError(f"ip {' '.join(args)} {batch or ''}: {done.stderr.strip()}")
    return done.stdout


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_orphans() -> None:
    """Remove the bridges and pod namespaces of test kubelets that died without cleaning up
    (a test session that was killed)."""
    if not MARKERS.is_dir():
        return
    for marker in MARKERS.glob("*.pid"):
        try:
            pid = int(marker.read_text())
        except (OSError, ValueError):
            continue
        if not _alive(pid):
            _remove(marker.stem)
            marker.unlink(missing_ok=True)


def _remove(bridge: str) -> None:
    for name in os.listdir(NETNS) if NETNS.is_dir() else []:
        if name.startswith(f"{bridge}-"):
            subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)
    subprocess.run(["ip", "link", "delete", bridge], capture_output=True, check=False)


class PodNetwork:
    """The bridge of one cluster's subnet and the pods' namespaces on it."""

    def __init__(self, subnet: ipaddress.IPv4Network, gateway: str) -> None:
        self.subnet = subnet
        self.gateway = gateway
        self.bridge = f"mlk{subnet.network_address.packed[2]}"
        self._used: set[str] = {gateway}
        self._next = 0
        self._counter = 0

    def start(self) -> None:
        reap_orphans()
        marker = MARKERS / f"{self.bridge}.pid"
        with contextlib.suppress(OSError, ValueError):
            owner = int(marker.read_text())
            if _alive(owner):
                raise NetworkError(
                    f"a test kubelet (pid {owner}) runs the pod network of {self.subnet} already:"
                    " one kubelet per control plane"
                )
        _remove(self.bridge)  # the subnet is ours now: anything of that name is a dead one's
        MARKERS.mkdir(parents=True, exist_ok=True)
        (MARKERS / f"{self.bridge}.pid").write_text(str(os.getpid()))
        _ip(
            batch=[
                f"link add {self.bridge} type bridge",
                f"link set {self.bridge} up",
                f"route add {self.subnet} dev {self.bridge} src {self.gateway}",
            ]
        )

    def stop(self) -> None:
        _remove(self.bridge)
        (MARKERS / f"{self.bridge}.pid").unlink(missing_ok=True)

    def _allocate(self) -> str:
        """The next free address, round robin (a freed address is taken last, so a late
        packet or a stale endpoint of a gone pod never reaches its successor at once)."""
        hosts = list(self.subnet.hosts())
        for _ in hosts:
            candidate = str(hosts[self._next % len(hosts)])
            self._next += 1
            if candidate not in self._used:
                self._used.add(candidate)
                return candidate
        raise NetworkError(f"no address left in {self.subnet}")

    def add_pod(self) -> PodSandboxNetwork:
        """A new namespace with its address, up and routed."""
        self._counter += 1
        ip = self._allocate()
        name = f"{self.bridge}-{self._counter}"
        veth = f"{self.bridge}v{self._counter}"
        try:
            _ip(
                batch=[
                    f"netns add {name}",
                    f"link add {veth} type veth peer name eth0 netns {name}",
                    f"link set {veth} master {self.bridge} up",
                ]
            )
            _ip(
                "-n",
                name,
                batch=[
                    "link set lo up",
                    f"addr add {ip}/{self.subnet.prefixlen} dev eth0",
                    "link set eth0 up",
                    f"route add default via {self.gateway}",
                ],
            )
        except NetworkError:
            subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)
            self._used.discard(ip)
            raise
        return PodSandboxNetwork(self, name, ip)

    def release(self, sandbox: PodSandboxNetwork) -> None:
        """Delete the pod's namespace (its veth goes with it) and free its address."""
        subprocess.run(["ip", "netns", "delete", sandbox.name], capture_output=True, check=False)
        self._used.discard(sandbox.ip)


class PodSandboxNetwork:
    """One pod's network namespace: ``/run/netns/<name>``, its address ``ip``."""

    def __init__(self, network: PodNetwork, name: str, ip: str) -> None:
        self.network = network
        self.name = name
        self.ip = ip

    @property
    def path(self) -> str:
        return os.fspath(NETNS / self.name)

    def socket(self) -> socket.socket:
        """A TCP socket created inside the pod's namespace (call from a worker thread: the
        thread enters the namespace for the creation and comes back), so that connecting it to
        ``127.0.0.1`` reaches the pod's own loopback, as a kubelet's port-forward does."""
        with namespace(self.path):
            return socket.socket(socket.AF_INET, socket.SOCK_STREAM)


CLONE_NEWNET = 0x40000000


_libc = ctypes.CDLL(None, use_errno=True)


@contextlib.contextmanager
def namespace(path: str) -> Iterator[None]:
    """The calling thread inside the network namespace at ``path`` for the block."""
    libc = _libc
    with open("/proc/thread-self/ns/net") as home, open(path) as target:
        if libc.setns(target.fileno(), CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {path}")
        try:
            yield
        finally:
            if libc.setns(home.fileno(), CLONE_NEWNET) != 0:  # never leave a pool thread there
                os.kill(os.getpid(), signal.SIGABRT)
