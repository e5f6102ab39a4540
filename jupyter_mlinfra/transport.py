"""HTTP over TCP or a Unix socket with the standard library, for the client and the agent.

One tiny module so that talking to a Jupyter server (TCP) and to the local agent (a Unix socket
only its owner can open) is the same code path everywhere.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
from collections.abc import Callable
from typing import NamedTuple
from urllib.parse import urlsplit

IDENTITY_HEADER = "X-MLInfra-Identity"
"""Who calls a per-user agent, as its owner's server (or CLI) states it on the agent's socket,
which only the owner can open (``backends/local/callers.py``)."""


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def open_connection(url: str, socket_path: str, timeout: float) -> http.client.HTTPConnection:
    if socket_path:
        return UnixHTTPConnection(socket_path, timeout)
    parts = urlsplit(url)
    if parts.scheme == "https":
        return http.client.HTTPSConnection(parts.netloc, timeout=timeout)
    return http.client.HTTPConnection(parts.netloc, timeout=timeout)


KEEPALIVE = (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3))
"""A followed answer's peer counts as gone after about a minute of unanswered TCP probes."""


def wait_without_timeout(sock: socket.socket) -> None:
    """Let reads of an answer that has begun wait as long as it takes: a followed log is quiet
    for as long as the job prints nothing (a training step may take minutes), which is no
    reason to give up on it. Over TCP, keepalive probes still tell a peer that is gone."""
    sock.settimeout(None)
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in KEEPALIVE:
            if hasattr(socket, name):  # Linux names; others keep the system's defaults
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


class Answer(NamedTuple):
    """An answer under way: the caller closes the response and the connection."""

    conn: http.client.HTTPConnection
    response: http.client.HTTPResponse
    sock: socket.socket | None
    """The connection's socket, which the response holds on to once the connection lets go."""


class StreamedLines:
    """The lines of a streamed (chunked) answer as they arrive: an iterator that asks on its
    first line, and that ``close()`` ends at once from any thread. A follower that goes away
    (a widget closed while a quiet job runs) need not wait for a next line that may be hours
    in coming, nor leave the server following the log for nobody."""

    def __init__(self, ask: Callable[[], Answer]) -> None:
        self._ask = ask
        self._answer: Answer | None = None
        self._closed = False

    def __iter__(self) -> StreamedLines:
        return self

    def __next__(self) -> str:
        if self._answer is None and not self._closed:
            self._answer = self._ask()
        line = b""
        if self._answer is not None and not self._closed:  # (closed meanwhile: see close)
            try:
                line = self._answer.response.readline()
            except OSError:
                if not self._closed:
                    self._release()
                    raise
        if not line:
            self._release()
            raise StopIteration
        return line.decode(errors="replace")

    def close(self) -> None:
        """End the stream: a read under way returns at once, as at the answer's end; the
        reading thread lets go of the connection."""
        self._closed = True
        answer = self._answer
        if answer is not None and answer.sock is not None:
            with contextlib.suppress(OSError):
                answer.sock.shutdown(socket.SHUT_RDWR)

    def _release(self) -> None:
        answer, self._answer = self._answer, None
        self._closed = True
        if answer is not None:
            answer.response.close()
            answer.conn.close()

    def __del__(self) -> None:
        self._release()
