"""The websocket a browser tab follows for live updates (``tabs.py`` says what it carries).

Authenticated and authorized like every handler of the extension (jupyter_server's
authorizer, resource ``mlinfra``, action ``read``), as jupyter_server's own websockets are: a
connection without a user, or one the authorizer refuses, is answered 403 before it opens.
What a tab says is not read: following is all it does.
"""

from __future__ import annotations

from typing import Any

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import ws_authenticated
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from tornado import web
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from ..handlers import API, AUTH_RESOURCE
from .tabs import Tab, Tabs


class LiveHandler(WebSocketMixin, WebSocketHandler, JupyterHandler):
    auth_resource = AUTH_RESOURCE
    tab: Tab | None = None

    def set_default_headers(self) -> None:
        """None of JupyterHandler's headers: they mean nothing to a websocket."""

    @property
    def tabs(self) -> Tabs:
        tabs: Tabs = self.settings["mlinfra.tabs"]
        return tabs

    async def pre_get(self) -> None:
        authorized = await ensure_async(
            self.authorizer.is_authorized(self, self.current_user, "read", AUTH_RESOURCE)
        )
        if not authorized:
            raise web.HTTPError(403)

    @ws_authenticated
    async def get(self, *args: Any, **kwargs: Any) -> None:
        await self.pre_get()
        await super().get(*args, **kwargs)

    def open(self, *args: Any, **kwargs: Any) -> None:
        super().open(*args, **kwargs)
        identity = self.settings["mlinfra.identities"].of(self.current_user)
        self.tab = self.tabs.open(identity, self._send)

    def _send(self, text: str) -> bool:
        if self.ws_connection is None or self.ws_connection.is_closing():
            return False
        try:
            self.write_message(text)
        except WebSocketClosedError:
            return False
        return True

    def on_message(self, message: str | bytes) -> None:
        """Tabs only listen."""

    def on_close(self) -> None:
        if self.tab is not None:
            self.tabs.close(self.tab)
            self.tab = None


live_handlers = [(rf"{API}/live", LiveHandler)]
