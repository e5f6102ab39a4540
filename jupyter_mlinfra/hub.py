"""What JupyterHub says about a user: their name, groups and admin status.

Under a hub these come from the hub's REST API, asked with a token of one's own, never from
what a caller says about itself: the single-user server asks about its owner with its server
token (``JUPYTERHUB_API_TOKEN``), the shared agent asks about each caller with its service
token. Standard library and tornado only, so both ends share it.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from .errors import MLInfraError


class HubUnavailable(MLInfraError):
    """The hub did not answer, or answered something unexpected (HTTP 502)."""

    status = 502


@dataclass(frozen=True)
class HubUser:
    name: str
    groups: frozenset[str]
    admin: bool

    @classmethod
    def from_model(cls, model: Mapping[str, Any]) -> HubUser:
        """From a hub user model; fields the asking token may not read count as absent."""
        return cls(
            name=str(model["name"]),
            groups=frozenset(str(g) for g in model.get("groups") or ()),
            admin=bool(model.get("admin", False)),
        )


def hub_api_url(environ: Mapping[str, str] | None = None) -> str:
    """The hub's API URL as JupyterHub gives it to servers and services, or ''."""
    return (os.environ if environ is None else environ).get("JUPYTERHUB_API_URL", "")


async def fetch_user(api_url: str, token: str, name: str | None = None) -> HubUser:
    """The user ``name`` (or the token's owner, when None) as the hub describes them."""
    path = "user" if name is None else f"users/{urllib.parse.quote(name, safe='')}"
    url = f"{api_url.rstrip('/')}/{path}"
    try:
        response = await AsyncHTTPClient().fetch(
            url, headers={"Authorization": f"token {token}"}, request_timeout=20
        )
    except HTTPClientError as error:
        raise HubUnavailable(f"JupyterHub answered HTTP {error.code} for {path}") from None
    except OSError as error:
        raise HubUnavailable(f"cannot reach JupyterHub at {api_url}: {error}") from None
    try:
        return HubUser.from_model(json.loads(response.body))
    except (ValueError, KeyError, TypeError):
        raise HubUnavailable(f"JupyterHub's answer for {path} is not a user model") from None
