"""A gate that a job's code waits at until the test opens it: a TCP port on the test cluster's
address (which every pod reaches) that refuses connections until ``open()``.

A file would not do: each container's root is an overlay over the host's, and a file the test
writes into a folder a pod has already looked into may never appear there (overlayfs does not
see later changes of its lower layer)."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest


class Gate:
    """A port bound on ``host`` but not listening (a connection is refused) until ``open``."""

    def __init__(self, host: str) -> None:
        self.host = host
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind((host, 0))
        self.port: int = self._socket.getsockname()[1]

    def code(self, then: str = "") -> str:
        """Python that returns once the gate is open, then runs ``then``."""
        return (
            "import socket, time\n"
            "while True:\n"
            "    try:\n"
            f"        socket.create_connection(({self.host!r}, {self.port}), timeout=5).close()\n"
            "        break\n"
            "    except OSError:\n"
            "        time.sleep(0.05)\n"
        ) + then

    def open(self) -> None:
        """From now on connections are accepted (by the kernel: nobody needs to answer)."""
        self._socket.listen(64)

    def close(self) -> None:
        self._socket.close()


@pytest.fixture
def gates(kube_cluster: Any) -> Iterator[Callable[[], Gate]]:
    """New gates on the test cluster's address; all closed at the test's end. Import it into a
    test module to have it there."""
    made: list[Gate] = []

    def new() -> Gate:
        made.append(Gate(kube_cluster.plane.host))
        return made[-1]

    yield new
    for one in made:
        one.close()
