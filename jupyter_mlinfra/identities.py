"""Who acts on this server: the authenticated user of a request, or outside a request the
server's owner, with the groups and admin rights the hub and the settings give them."""

from __future__ import annotations

import getpass
import logging
import os
from typing import Any

from .errors import MLInfraError
from .hub import HubUser, fetch_user, hub_api_url
from .identity import Identity
from .settings import Settings


class Identities:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.hub_owner: HubUser | None = None
        """The server's owner as JupyterHub describes them (groups, admin), asked at start."""

    def of(self, current_user: Any = None) -> Identity:
        """Who acts on this server: the authenticated ``current_user`` of a request, or,
        outside a request (kernel provisioners, the kernel spec manager), the server's owner.

        Outside JupyterHub the server belongs to the OS user who started it: jupyter_server's
        token login names an anonymous, per-browser user, which must not own jobs or kernels.
        Under JupyterHub, groups and admin status are the hub's: from the request's hub user
        model when its token may read them, and from ``hub_owner`` for the owner.
        """
        hub_user = os.environ.get("JUPYTERHUB_USER")
        if hub_user and current_user is not None:
            user = current_user.username
        else:
            user = hub_user or getpass.getuser()
        model = getattr(current_user, "hub_user", None) or {}
        groups = set(getattr(current_user, "groups", ())) | set(model.get("groups") or ())
        admin = bool(model.get("admin", False))
        owner = self.hub_owner
        if owner is not None and owner.name == user:
            groups |= owner.groups
            admin = admin or owner.admin
        return self.settings.identity(user, frozenset(groups), admin)

    def owner(self) -> Identity:
        """The server's owner (outside any request)."""
        return self.of()

    async def ask_hub_about_owner(self, log: logging.Logger) -> None:
        """Under JupyterHub, learn the owner's hub groups and admin status with the server's
        own token (it needs read:users:groups!user and read:users:name!user for them)."""
        api_url, token = hub_api_url(), os.environ.get("JUPYTERHUB_API_TOKEN", "")
        if not (api_url and token and os.environ.get("JUPYTERHUB_USER")):
            return
        try:
            self.hub_owner = await fetch_user(api_url, token)
        except MLInfraError as error:
            log.warning("jupyter_mlinfra: no groups from JupyterHub: %s", error.message)
