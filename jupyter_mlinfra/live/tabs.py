"""The open browser tabs of one server, and the one place that tells them what changed.

Messages (``models.live.LiveMessage``, JSON, one per websocket frame): ``hello`` when a tab
connects; ``job``, a job as the REST API shows it, after a change; ``kernels`` and
``capacity``, read ``GET kernels`` or ``GET flavors`` again; ``live``, whether changes are
being pushed (``true`` after ``false`` means some may have been missed: read everything once
again; while it is ``false`` a tab falls back to a slow poll).

A tab sees a job only if its user may (``Identity.may_see``): their own, everybody's for admins.
Whoever tells the tabs may do so from any thread (kernel provisioners run on jupyter_client's
threads): messages are sent from the loop the tabs' websockets belong to.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass

from ..identity import Identity
from ..models.jobs import Job
from ..models.live import LiveMessage

Send = Callable[[str], bool]
"""Sends one message to a tab; False when its connection is gone."""


@dataclass(eq=False)
class Tab:
    identity: Identity
    send: Send


class Tabs:
    def __init__(self, on_watched: Callable[[], None] = lambda: None) -> None:
        """``on_watched``: called as each tab opens, to start following changes (a server
        nobody looks at follows nothing)."""
        self._on_watched = on_watched
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
        hello: LiveMessage = {"type": "hello", "user": identity.user, "live": self.live}
        self._send(tab, json.dumps(hello))
        self._on_watched()
        return tab

    def close(self, tab: Tab) -> None:
        self._tabs.discard(tab)

    def job(self, job: Job) -> None:
        """``job`` changed: tell the tabs whose user may see it (serialized once for all)."""
        message: LiveMessage = {"type": "job", "job": job}
        text = json.dumps(message)
        for tab in list(self._tabs):
            if tab.identity.may_see(job["owner"]):
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
        kernels: LiveMessage = {"type": "kernels"}
        if here:
            self._broadcast(kernels)
        else:
            loop.call_soon_threadsafe(self._broadcast, kernels)

    def capacity(self) -> None:
        self._broadcast({"type": "capacity"})

    def set_live(self, live: bool) -> None:
        """Changes stop (False) or start again (True) reaching this server; ``True`` always
        tells the tabs, which then read everything again: whatever happened while nothing
        was pushed is then shown."""
        if live or self.live:
            self.live = live
            self._broadcast({"type": "live", "live": live})

    def _broadcast(self, message: LiveMessage) -> None:
        text = json.dumps(message)
        for tab in list(self._tabs):
            self._send(tab, text)

    def _send(self, tab: Tab, text: str) -> None:
        if not tab.send(text):
            self._tabs.discard(tab)
