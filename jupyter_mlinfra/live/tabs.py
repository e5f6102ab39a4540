"""The open browser tabs of one server, and the one place that tells them what changed.

Messages (JSON, one per websocket frame):

- ``{"type": "hello", "user": ..., "live": bool}`` when a tab connects;
- ``{"type": "job", "job": {...}}``: a job as the REST API shows it, after a change;
- ``{"type": "kernels"}``: the user's kernels may have changed (read ``GET kernels`` again);
- ``{"type": "capacity"}``: flavors' availability may have changed (``GET flavors``);
- ``{"type": "live", "live": bool}``: whether changes are being pushed; ``true`` after
  ``false`` means some may have been missed: read everything once again (resync). While it is
  ``false`` a tab falls back to a slow poll.

A tab sees a job only if its user may (``Identity.may_see``): their own, everybody's for admins.
Whoever tells the tabs may do so from any thread (kernel provisioners run on jupyter_client's
threads): messages are sent from the loop the tabs' websockets belong to.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..identity import Identity

Send = Callable[[str], bool]
"""Sends one message to a tab; False when its connection is gone."""


@dataclass(eq=False)
class Tab:
    identity: Identity
    send: Send


class Tabs:
    def __init__(self) -> None:
        self._tabs: set[Tab] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        """The server's, where the websockets are: known once a tab opens."""
        self.live = False
        """Whether changes reach this server now (its feed is connected)."""

    def __len__(self) -> int:
        return len(self._tabs)

    def open(self, identity: Identity, send: Send) -> Tab:
        self._loop = asyncio.get_running_loop()
        tab = Tab(identity, send)
        self._tabs.add(tab)
        self._send(tab, json.dumps({"type": "hello", "user": identity.user, "live": self.live}))
        return tab

    def close(self, tab: Tab) -> None:
        self._tabs.discard(tab)

    def job(self, job: dict[str, Any]) -> None:
        """``job`` changed: tell the tabs whose user may see it (serialized once for all)."""
        owner = str(job.get("owner", ""))
        text = json.dumps({"type": "job", "job": job})
        for tab in list(self._tabs):
            if tab.identity.may_see(owner):
                self._send(tab, text)

    def kernels(self) -> None:
        """The kernels changed (from any thread)."""
        loop = self._loop
        if loop is None:
            return  # no tab has opened: nobody to tell
        try:
            here = asyncio.get_running_loop() is loop
        except RuntimeError:
            here = False
        if here:
            self._broadcast({"type": "kernels"})
        else:
            loop.call_soon_threadsafe(self._broadcast, {"type": "kernels"})

    def capacity(self) -> None:
        self._broadcast({"type": "capacity"})

    def set_live(self, live: bool) -> None:
        """Changes stop (False) or start again (True) reaching this server; ``True`` always
        tells the tabs, which then read everything again: whatever happened while nothing
        was pushed is then shown."""
        if live or self.live:
            self.live = live
            self._broadcast({"type": "live", "live": live})

    def _broadcast(self, message: dict[str, Any]) -> None:
        text = json.dumps(message)
        for tab in list(self._tabs):
            self._send(tab, text)

    def _send(self, tab: Tab, text: str) -> None:
        if not tab.send(text):
            self._tabs.discard(tab)
