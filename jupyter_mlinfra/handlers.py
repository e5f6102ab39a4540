"""REST handlers under ``/mlinfra/api/v1``: they only translate HTTP to the services and back.

Every handler is authenticated and authorized through jupyter_server's authorizer with the
resource name ``mlinfra``; domain errors become JSON ``{"message", "field"}`` with their status
in one place (``MLInfraHandler.send_error``).
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

from .errors import InvalidInput
from .identity import Identity
from .inventory import Inventory
from .json_errors import JSONErrors

API = "/mlinfra/api/v1"
AUTH_RESOURCE = "mlinfra"


class MLInfraHandler(JSONErrors, APIHandler):
    auth_resource = AUTH_RESOURCE

    @property
    def inventory(self) -> Inventory:
        inventory: Inventory = self.settings["mlinfra.inventory"]
        return inventory

    @property
    def identity(self) -> Identity:
        """The caller, from the authenticated request only (see ``MLInfraApp.identity``)."""
        identity: Identity = self.settings["mlinfra.app"].identity(self.current_user)
        return identity

    def flag(self, name: str) -> bool:
        """A boolean query argument; anything but true/false/1/0 is a 400 naming it."""
        value = self.get_query_argument(name, "false").lower()
        if value not in ("true", "false", "1", "0"):
            raise InvalidInput(
                f"query parameter {name!r} must be true or false, got {value!r}", name
            )
        return value in ("true", "1")

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


NAME = r"(?P<name>[A-Za-z0-9._-]+)"

catalog_handlers = [
    (rf"{API}/flavors", FlavorsHandler),
    (rf"{API}/flavors/{NAME}", FlavorHandler),
    (rf"{API}/environments", EnvironmentsHandler),
    (rf"{API}/capacity", CapacityHandler),
    (rf"{API}/whoami", WhoamiHandler),
    (rf"{API}/openapi.json", OpenAPIHandler),
]
