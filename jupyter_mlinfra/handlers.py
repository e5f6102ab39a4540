"""REST handlers under ``/mlinfra/api/v1``: they only translate HTTP to the services and back.

Every handler is authenticated and authorized through jupyter_server's authorizer with the
resource name ``mlinfra``; domain errors become JSON ``{"message", "field"}`` with their status
in one place (``JSONErrors``). A request without credentials is a 401 (jupyter_server answers
403, which means "not allowed" to clients); a path under the API that no route matches is a JSON
404 (``UnknownPathHandler``), not the server's HTML page.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Any

import yaml
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from tornado import web

from . import arguments
from .errors import NotAuthenticated, NotFound, shown
from .identity import Identity
from .inventory import Inventory
from .json_errors import JSONErrors

API = "/mlinfra/api/v1"
AUTH_RESOURCE = "mlinfra"


class MLInfraHandler(JSONErrors, APIHandler):
    auth_resource = AUTH_RESOURCE

    async def prepare(self) -> None:  # type: ignore[override]  # as APIHandler's
        """Every method here but CORS preflight (``OPTIONS``) needs a user: a request without
        one is refused now, as 401.

        jupyter_server answers 403 (its XSRF check, or ``web.authenticated``), which tells a
        client "not allowed" rather than "log in"; a host it does not allow keeps its 403."""
        try:
            await super().prepare()
        except web.HTTPError as error:
            if error.status_code == 403 and self._anonymous() and self.check_host():
                raise NotAuthenticated(self.login_needed, None) from None
            raise
        method = getattr(self, (self.request.method or "").lower(), None)
        if self._anonymous() and not getattr(method, "__allow_unauthenticated", False):
            raise NotAuthenticated(self.login_needed, None)

    login_needed = "authentication required: send 'Authorization: token <token>'"

    def _anonymous(self) -> bool:
        return getattr(self, "_jupyter_current_user", None) is None

    def max_request_bytes(self) -> int:
        limit: int = self.settings["mlinfra.settings"].max_request_bytes
        return limit

    @property
    def inventory(self) -> Inventory:
        inventory: Inventory = self.settings["mlinfra.inventory"]
        return inventory

    @property
    def identity(self) -> Identity:
        """The caller, from the authenticated request only (see ``MLInfraApp.identity``)."""
        identity: Identity = self.settings["mlinfra.identities"].of(self.current_user)
        return identity

    def flag(self, name: str) -> bool:
        """A boolean query argument; anything but true/false/1/0 is a 400 naming it."""
        return arguments.flag(self.query_argument, name)

    def reply(self, body: Any) -> None:
        self.finish(json.dumps(body))


class FlavorsHandler(MLInfraHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.reply(await self.inventory.flavors(self.identity, include_all=self.flag("all")))


class FlavorHandler(MLInfraHandler):
    @web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        flavor = self.inventory.catalog.flavor(name, self.identity)
        listing = await self.inventory.flavors(self.identity)
        self.reply(next(f for f in listing["flavors"] if f["name"] == flavor.name))


class EnvironmentsHandler(MLInfraHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.reply(await self.inventory.environments(self.identity))


class CapacityHandler(MLInfraHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.reply(await self.inventory.capacity())


class WhoamiHandler(MLInfraHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.reply(await self.inventory.whoami(self.identity))


@cache
def openapi_document() -> dict[str, Any]:
    """The OpenAPI document shipped in the package (``openapi.yaml``)."""
    document: dict[str, Any] = yaml.safe_load(
        files("jupyter_mlinfra").joinpath("openapi.yaml").read_text()
    )
    return document


class OpenAPIHandler(MLInfraHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.reply(openapi_document())


class UnknownPathHandler(MLInfraHandler):
    """Every path under the API that no route matches (listed last)."""

    def unknown(self) -> None:
        path = self.request.path
        raise NotFound(f"no such API path: {shown(path[path.index(API) :], 100)}", None)

    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.unknown()

    @web.authenticated
    @authorized
    async def post(self) -> None:
        self.unknown()

    @web.authenticated
    @authorized
    async def put(self) -> None:
        self.unknown()

    @web.authenticated
    @authorized
    async def patch(self) -> None:
        self.unknown()

    @web.authenticated
    @authorized
    async def delete(self) -> None:
        self.unknown()


unknown_path_handlers = [(rf"{API}/.*", UnknownPathHandler)]

NAME = r"(?P<name>[A-Za-z0-9._-]+)"

catalog_handlers = [
    (rf"{API}/flavors", FlavorsHandler),
    (rf"{API}/flavors/{NAME}", FlavorHandler),
    (rf"{API}/environments", EnvironmentsHandler),
    (rf"{API}/capacity", CapacityHandler),
    (rf"{API}/whoami", WhoamiHandler),
    (rf"{API}/openapi.json", OpenAPIHandler),
]
