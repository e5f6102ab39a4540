"""Who is calling the local agent, in each of the two ways it runs.

- **Per user** (the default): on a Unix socket only its owner can open. The owner's Jupyter
  server (or CLI) authenticated the caller and states the identity in the
  ``X-MLInfra-Identity`` header; the socket's 0600 permissions make the owner the only one who
  can set it.
- **Shared, as a JupyterHub service** (``jupyter mlinfra agent --hub``): on TCP, reachable by
  every user of the machine, so a header proves nothing and is ignored. Each caller presents
  a hub token, checked by JupyterHub's own service auth (``HubAuth``: the token must hold
  ``access:services!service=<this service>``); name, groups and admin status then come from
  the hub's API, asked with the service's own token.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from tornado import web

from ...errors import InvalidInput, NotAllowed, NotAuthenticated
from ...hub import HubUser, fetch_user
from ...identity import Identity
from ...transport import IDENTITY_HEADER

if TYPE_CHECKING:
    from ...jobs.policy import Policy

HUB_USER_CACHE_SECONDS = 60.0
"""How long a hub user's groups and admin status are reused before the hub is asked again."""


class Callers(Protocol):
    shared: bool
    """Several users call this agent: settings come from its own config, never a caller."""

    async def identify(self, handler: web.RequestHandler) -> Identity | None:
        """The caller, or None when the request names none (status checks of the owner)."""
        ...


class HeaderCallers:
    """Per-user agent: the identity its owner's server states."""

    shared = False

    async def identify(self, handler: web.RequestHandler) -> Identity | None:
        raw = handler.request.headers.get(IDENTITY_HEADER)
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            return Identity(
                user=str(data["user"]),
                groups=frozenset(str(g) for g in data.get("groups", [])),
                admin=bool(data.get("admin", False)),
            )
        except (ValueError, KeyError, TypeError):
            raise NotAuthenticated("malformed caller identity", None) from None


class HubCallers:
    """Shared agent: every request authenticated with the caller's JupyterHub token."""

    shared = True

    def __init__(self, policy: Callable[[], Policy]) -> None:
        try:  # only a shared agent needs JupyterHub, installed where the hub runs
            from jupyterhub.services.auth import HubAuth
        except ImportError:
            raise InvalidInput("--hub: JupyterHub is not installed here", "hub") from None
        self.policy = policy
        # from the service's environment (hub API URL, token, name); a token the hub revoked is
        # refused within a minute, like a changed group (HubAuth's own default: 5 minutes)
        self.auth = HubAuth(cache_max_age=int(HUB_USER_CACHE_SECONDS))
        self._users: dict[str, tuple[float, HubUser]] = {}

    async def identify(self, handler: web.RequestHandler) -> Identity:
        token = self.auth.get_token(handler, in_cookie=False)
        if not token:
            raise NotAuthenticated(
                "this agent is shared through JupyterHub: send a hub token "
                "(Authorization: token ...)",
                None,
            )
        model = await self.auth.user_for_token(token, sync=False)
        if not model or model.get("kind", "user") != "user":
            raise NotAuthenticated("JupyterHub does not know this token as a user's", None)
        if not self.auth.check_scopes(self.auth.access_scopes, model):
            needed = ", ".join(sorted(self.auth.access_scopes))
            raise NotAllowed(f"this token lacks the scope {needed}", None)
        user = await self._hub_user(str(model["name"]))
        return self.policy().identity(user.name, user.groups, user.admin)

    async def _hub_user(self, name: str) -> HubUser:
        now = time.monotonic()
        cached = self._users.get(name)
        if cached is not None and now - cached[0] < HUB_USER_CACHE_SECONDS:
            return cached[1]
        user = await fetch_user(self.auth.api_url, self.auth.api_token, name)
        self._users[name] = (now, user)
        return user
