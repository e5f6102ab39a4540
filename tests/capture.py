"""What really crosses a TCP connection on this machine: a packet capture on every interface
of the test's network namespace (an AF_PACKET socket, as tcpdump opens one; root or
CAP_NET_RAW), kept to the TCP payloads to and from chosen ports.

Kernels run on this machine in every test: local kernels on 127.0.0.1, pods of the cluster
fixture on their own 127.0.0.N addresses (``lo``), pods of a cluster whose kubelet gives them
network namespaces behind a bridge (its veths and bridge are seen too).
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
from collections.abc import Collection, Iterator

from .optional import need

ETH_P_ALL = 0x0003
ETHERNET_HEADER = 14
ETHERNET_LIKE = {1, 772}
"""ARPHRD_ETHER (ethernet, veth, bridge) and ARPHRD_LOOPBACK: frames with an ethernet header."""
IPV4 = 0x0800
TCP = 6


def tcp_payload(frame: bytes) -> tuple[int, int, bytes] | None:
    """(source port, destination port, payload) of an IPv4 TCP frame; None for others."""
    if len(frame) < ETHERNET_HEADER + 20:
        return None
    if struct.unpack("!H", frame[12:14])[0] != IPV4:
        return None
    ip = frame[ETHERNET_HEADER:]
    if ip[9] != TCP:
        return None
    ip_header = (ip[0] & 0x0F) * 4
    total = struct.unpack("!H", ip[2:4])[0]
    segment = ip[ip_header:total]
    if len(segment) < 20:
        return None
    source, destination = struct.unpack("!HH", segment[:4])
    return source, destination, segment[(segment[12] >> 4) * 4 :]


class Capture:
    """The payload bytes of TCP segments to or from ``ports`` seen while running."""

    def __init__(self, ports: Collection[int]) -> None:
        self.ports = set(ports)
        self.payload = bytearray()
        self._stop = threading.Event()
        try:
            self._socket = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(ETH_P_ALL))
        except PermissionError:
            need(False, "capturing packets needs root or CAP_NET_RAW")
            raise
        self._thread = threading.Thread(target=self._read, daemon=True)

    def _read(self) -> None:
        """Keep what comes until stopped, then what is still queued on the socket."""
        while True:
            stopping = self._stop.is_set()
            ready, _, _ = select.select([self._socket], [], [], 0 if stopping else 0.1)
            if not ready:
                if stopping:
                    return
                continue
            frame, (_, _, _, hardware, _) = self._socket.recvfrom(65535)
            found = tcp_payload(frame) if hardware in ETHERNET_LIKE else None
            if found and self.ports & {found[0], found[1]}:
                self.payload += found[2]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._socket.close()

    def __contains__(self, data: bytes) -> bool:
        return data in self.payload


@contextlib.contextmanager
def captured(ports: Collection[int]) -> Iterator[Capture]:
    capture = Capture(ports)
    capture.start()
    try:
        yield capture
    finally:
        capture.stop()
