"""Kubeconfig files: how every client (a component, the admin, a ServiceAccount) finds and
authenticates to the test cluster's API server. Credentials are embedded, so each file stands
alone (``kubernetes_asyncio``, ``kubectl`` and the Go components all read it)."""

from __future__ import annotations

import base64
from pathlib import Path

import yaml

from .pki import KeyPair


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def write(
    path: Path,
    server: str,
    ca_pem: bytes,
    *,
    client: KeyPair | None = None,
    token: str | None = None,
    namespace: str | None = None,
) -> Path:
    """A kubeconfig with one cluster, one user (a client certificate or a bearer token) and one
    current context (in ``namespace`` if given); written private (0600)."""
    user: dict[str, str] = {}
    if client is not None:
        user["client-certificate-data"] = _b64(client.cert.read_bytes())
        user["client-key-data"] = _b64(client.key.read_bytes())
    if token is not None:
        user["token"] = token
    context: dict[str, str] = {"cluster": "test", "user": "user"}
    if namespace:
        context["namespace"] = namespace
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "test",
                "cluster": {"server": server, "certificate-authority-data": _b64(ca_pem)},
            }
        ],
        "users": [{"name": "user", "user": user}],
        "contexts": [{"name": "test", "context": context}],
        "current-context": "test",
    }
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(config))
    return path
