"""Addresses for one test cluster: a /24 of its own, added to the loopback device.

The API server cannot advertise a loopback address: the ``kubernetes`` Service's Endpoints and
the EndpointSlices of webhook Services are validated, and 127.0.0.0/8 is refused there. So each
cluster claims a subnet ``10.244.N.0/24`` whose addresses are put on ``lo`` as /32s (local to this
machine, never routed off it): ``.1`` is the control plane's address (the API server binds it and
advertises it), and the test kubelet gives pods the others. Several test sessions on one machine
(parallel worktrees, CI) each claim another N; ``ip addr add`` of an address that is taken fails,
which makes the claim atomic."""

from __future__ import annotations

import ipaddress
import random
import subprocess
from dataclasses import dataclass

POD_NETWORK = ipaddress.IPv4Network("10.244.0.0/16")
DEVICE = "lo"


class NetworkUnavailable(RuntimeError):
    """No address could be added to ``lo`` (not root, or no ``ip`` command)."""


def add_address(address: str) -> bool:
    """Put ``address``/32 on ``lo``; False if it is there already (someone else's)."""
    done = subprocess.run(
        ["ip", "addr", "add", f"{address}/32", "dev", DEVICE],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode == 0:
        return True
    if "File exists" in done.stderr or "already assigned" in done.stderr:
        return False  # iproute2 words it either way (seen: "ipv4: Address already assigned.")
    raise NetworkUnavailable(f"ip addr add {address}/32 dev {DEVICE}: {done.stderr.strip()}")


def remove_address(address: str) -> None:
    subprocess.run(
        ["ip", "addr", "del", f"{address}/32", "dev", DEVICE], capture_output=True, check=False
    )


@dataclass(frozen=True)
class Subnet:
    """A claimed ``10.244.N.0/24``: ``host`` (``.1``) is on ``lo``; the rest are for pods."""

    network: ipaddress.IPv4Network

    @property
    def host(self) -> str:
        return str(self.network.network_address + 1)

    @classmethod
    def claim(cls) -> Subnet:
        subnets = list(POD_NETWORK.subnets(new_prefix=24))[1:]
        random.shuffle(subnets)
        for network in subnets:
            subnet = cls(network)
            if add_address(subnet.host):
                return subnet
        raise NetworkUnavailable(f"every /24 of {POD_NETWORK} is in use on {DEVICE}")

    def release(self) -> None:
        """Take every address of this subnet off ``lo`` (the host's and any pod's left over)."""
        listed = subprocess.run(
            ["ip", "-o", "-4", "addr", "show", "dev", DEVICE],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        for line in listed.splitlines():
            address = line.split()[3].split("/")[0]
            if ipaddress.ip_address(address) in self.network:
                remove_address(address)
