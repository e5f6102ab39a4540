"""The server's live websocket (``live``, ``models.live``) from a Python client: the changes
of the caller's jobs as the server pushes them to a browser tab, for the CLI, magics and
widgets, which then need not ask again and again.

Read with ``websocket-client`` (synchronous, so it works from the CLI and from a kernel's
threads without an event loop of its own; jupyter_server depends on it already), imported
only when a job is watched. The token goes in the ``Authorization`` header, as for REST: the
same Jupyter server, or a single-user server behind JupyterHub. The local agent's socket has
no websocket: a connection that talks to it gets none (``open_live`` answers None).
"""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urljoin, urlsplit, urlunsplit

from .client import API_PATH, Connection

if TYPE_CHECKING:
    import websocket

    from .models.live import LiveMessage


class LiveClosed(Exception):
    """The websocket ended (the server stopped, the network failed, or ``close``)."""


class LiveSocket:
    """One open connection to ``live``: ``hello`` is read, the rest comes from ``receive``."""

    def __init__(self, ws: websocket.WebSocket, live: bool) -> None:
        self._ws = ws
        self.live = live
        """Whether the server pushes changes now (``hello``, then each ``live`` message)."""
        self._closed = threading.Event()

    def receive(self, timeout: float | None) -> LiveMessage | None:
        """The next message, or None after ``timeout`` seconds (None: no limit). Raises
        ``LiveClosed`` once the connection is gone, or closed from another thread."""
        import websocket

        if self._closed.is_set():
            raise LiveClosed
        try:
            self._ws.settimeout(timeout)
            text = self._ws.recv()
        except websocket.WebSocketTimeoutException:
            return None
        except (websocket.WebSocketException, OSError, ValueError) as error:
            raise LiveClosed from error
        if not text:  # a close frame
            raise LiveClosed
        message = cast("LiveMessage", json.loads(text))
        if message["type"] == "live":
            self.live = message["live"]
        return message

    def close(self) -> None:
        """From any thread: a ``receive`` waiting in another one ends with ``LiveClosed``."""
        self._closed.set()
        _drop(self._ws)


def live_url(base_url: str) -> str:
    """The websocket's URL below a Jupyter server's (or a hub's single-user server's) URL."""
    url = urlsplit(urljoin(base_url, f"{API_PATH}/live"))
    scheme = "wss" if url.scheme == "https" else "ws"
    return urlunsplit((scheme, url.netloc, url.path, "", ""))


def open_live(connection: Connection, timeout: float) -> LiveSocket | None:
    """The live websocket of the server ``connection`` talks to, with its ``hello`` read;
    None where there is none to have (the local agent's socket, a server without the route,
    one that cannot be reached or refuses): the caller then asks, slowly."""
    if connection.socket:
        return None
    import websocket

    header = [f"Authorization: token {connection.token}"] if connection.token else []
    ws: websocket.WebSocket | None = None
    try:
        ws = websocket.create_connection(
            live_url(connection.url),
            timeout=timeout,
            header=header,
            enable_multithread=True,
            suppress_origin=True,  # no browser: the token is what authenticates, as for REST
        )
        hello: Any = json.loads(ws.recv())
    except (websocket.WebSocketException, OSError, ValueError):
        if ws is not None:
            _drop(ws)
        return None
    if not isinstance(hello, dict) or hello.get("type") != "hello":
        _drop(ws)
        return None
    return LiveSocket(ws, bool(hello.get("live")))


def _drop(ws: websocket.WebSocket) -> None:
    """Close at once, without the closing handshake (which waits for the server)."""
    # websocket-client leaves these two untyped
    ws.abort()  # type: ignore[no-untyped-call]  # wakes a thread waiting in recv
    ws.shutdown()  # type: ignore[no-untyped-call]
