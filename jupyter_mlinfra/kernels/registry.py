"""Where kernel provisioners and the kernel spec manager find the server's extension.

jupyter_client creates provisioners, and jupyter_server its kernel spec manager, with no
reference to extension apps; the ``MLInfraApp`` of this server process registers itself here
when it initializes, and leaves when it stops.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..app import MLInfraApp

_app: MLInfraApp | None = None


def register(app: MLInfraApp) -> None:
    global _app
    _app = app


def unregister(app: MLInfraApp) -> None:
    global _app
    if _app is app:
        _app = None


def current() -> MLInfraApp | None:
    """The running server's extension, or None outside a server with jupyter_mlinfra."""
    return _app
