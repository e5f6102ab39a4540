"""Where kernel provisioners and the kernel spec manager find this server's kernel services.

jupyter_client creates provisioners, and jupyter_server its kernel spec manager, with no
reference to extension apps; the server extension registers the parts they need here when it
initializes (``ServerParts``: settings and services, not the ExtensionApp), and removes them
when it stops.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..backends.local.link import AgentLink
    from ..catalog import Environment
    from ..identities import Identities
    from ..inventory import Inventory
    from ..live.tabs import Tabs
    from ..settings import Settings
    from .interpreters import KernelSupport
    from .service import KernelService


@dataclass(frozen=True)
class ServerParts:
    """What this server's kernels need of it."""

    settings: Settings
    identities: Identities
    inventory: Inventory
    agent: AgentLink
    """The local agent, which leases a local kernel its devices and CPUs."""
    kernels: KernelService
    """The kernel service, with the backend that holds the kernels (``kernels.backend``)."""
    tabs: Tabs
    kernel_support: Callable[[Environment], KernelSupport]
    """What an environment's kernels support (the generated kernelspecs declare it)."""


_parts: ServerParts | None = None


def register(parts: ServerParts) -> None:
    global _parts
    _parts = parts


def unregister(parts: ServerParts) -> None:
    global _parts
    if _parts is parts:
        _parts = None


def current() -> ServerParts | None:
    """The running server's parts, or None outside a server with jupyter_mlinfra."""
    return _parts
