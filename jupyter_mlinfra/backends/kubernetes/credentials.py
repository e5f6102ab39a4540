"""Bearer tokens that expire, kept fresh for as long as the server runs.

A server runs for days; the tokens it connects with often live minutes. kubernetes_asyncio's
kubeconfig loader runs an exec plugin (``aws eks get-token``, ``gke-gcloud-auth-plugin``)
once, and reads a ``tokenFile`` once, so an out-of-cluster server would start getting 401
after 15 minutes (EKS) to an hour (GKE); in a pod, the kubelet rotates the projected
service-account token in its file. As client-go does:

- an exec plugin is run again when its credential's ``expirationTimestamp`` is (nearly)
  reached, and whenever the API answers 401 (a credential without expiry, or revoked);
- a token file is read again every minute, and whenever the API answers 401.

Both are asked before every request (``refresh_api_key_hook``): a comparison of times, except
when a new token is due.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.config.config_exception import ConfigException
from kubernetes_asyncio.config.dateutil import parse_rfc3339
from kubernetes_asyncio.config.exec_provider import ExecProvider
from kubernetes_asyncio.config.kube_config import (
    KUBE_CONFIG_DEFAULT_LOCATION,
    KubeConfigLoader,
    KubeConfigMerger,
)

from ...errors import MLInfraError

EXPIRY_MARGIN_SECONDS = 10.0
"""An exec credential is renewed this long before it expires, so no request in flight
carries it past its expiry."""
TOKEN_FILE_SECONDS = 60.0
"""How often a token file is read again (client-go reads it once a minute too)."""


class CredentialsFailed(MLInfraError):
    """A new token could not be had (the exec plugin failed, the token file is unreadable)."""

    status = 503


class Credentials:
    """A source of bearer tokens for one API client's configuration."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()

    async def refresh(self, configuration: client.Configuration, force: bool = False) -> None:
        """Put a valid token into ``configuration`` (a new one when ``force``: the API just
        refused the one it had)."""
        async with self._lock:
            if force or self._due():
                configuration.api_key["BearerToken"] = f"Bearer {await self._fetch()}"

    def hook(self, configuration: client.Configuration) -> Any:
        """``refresh_api_key_hook``: the client awaits what it returns before each request."""
        return self.refresh(configuration)

    def _due(self) -> bool:
        raise NotImplementedError

    async def _fetch(self) -> str:
        raise NotImplementedError


class ExecPluginToken(Credentials):
    """The token of a kubeconfig user's exec plugin, run again when it expires or is refused."""

    def __init__(self, provider: ExecProvider, expires: datetime.datetime | None) -> None:
        super().__init__()
        self._provider = provider
        self._expires = expires.timestamp() if expires is not None else None

    def _due(self) -> bool:
        return self._expires is not None and time.time() >= self._expires - EXPIRY_MARGIN_SECONDS

    async def _fetch(self) -> str:
        try:
            status = await self._provider.run()
        except (ConfigException, OSError) as error:
            raise CredentialsFailed(f"the kubeconfig's exec plugin failed: {error}") from None
        token = status.get("token") if isinstance(status, dict) else None
        if not token:  # client certificates from a plugin need a new TLS context: unsupported
            raise CredentialsFailed("the kubeconfig's exec plugin returned no token")
        stamp = status.get("expirationTimestamp")
        self._expires = parse_rfc3339(stamp).timestamp() if stamp else None
        return str(token)


class TokenFile(Credentials):
    """A token read from a file that something else rotates (the kubelet's projected
    service-account token, a kubeconfig's ``tokenFile``)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self._read_at = time.monotonic()  # the loader has just read it

    def _due(self) -> bool:
        return time.monotonic() - self._read_at >= TOKEN_FILE_SECONDS

    async def _fetch(self) -> str:
        try:
            token = self.path.read_text().strip()
        except OSError as error:
            raise CredentialsFailed(f"cannot read the token file {self.path}: {error}") from None
        self._read_at = time.monotonic()
        return token


def kubeconfig_credentials(
    path: str | None, context: str | None, loader: KubeConfigLoader
) -> Credentials | None:
    """The renewable credentials of the kubeconfig context's user (``loader`` has just loaded
    it), or None when its token (or client certificate) does not expire."""
    merged = KubeConfigMerger(path or KUBE_CONFIG_DEFAULT_LOCATION).config
    if merged is None:
        return None
    name = context or merged.safe_get("current-context")
    chosen = merged["contexts"].get_with_name(name, safe=True) if name else None
    if chosen is None or "user" not in chosen["context"]:
        return None
    found = merged["users"].get_with_name(chosen["context"]["user"], safe=True)
    if found is None or "user" not in found:
        return None
    user = found["user"]  # a ConfigNode, whose path is the kubeconfig file it came from
    if "exec" in user:
        expires = getattr(loader, "exec_plugin_expiry", None)  # set when the plugin gave one
        return ExecPluginToken(ExecProvider(user["exec"]), expires)
    if "tokenFile" in user and not user.safe_get("token"):
        where = Path(user.path).parent if user.path else Path.cwd()
        return TokenFile(where / str(user["tokenFile"]))
    return None
