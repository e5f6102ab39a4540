"""jupyter-mlinfra: accelerator flavors, flavor-sized kernels and queued distributed jobs."""

from __future__ import annotations

from typing import Any

from .version import __version__


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .app import MLInfraApp

    return [{"module": "jupyter_mlinfra", "app": MLInfraApp}]


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext jupyter_mlinfra``: the ``%mlinfra`` and ``%%mlinfra`` magics."""
    from .magics import MLInfraMagics

    ipython.register_magics(MLInfraMagics(ipython))


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "jupyter-mlinfra"}]


__all__ = ["__version__"]
