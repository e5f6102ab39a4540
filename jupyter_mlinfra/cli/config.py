"""This machine's Jupyter config, for commands that run without a Jupyter server."""

from __future__ import annotations

import getpass
from typing import Any

from ..app import MLInfraApp
from ..identity import Identity
from ..settings import Settings


def jupyter_server_config() -> Any:
    """The config a ``jupyter server`` started here would read (jupyter_server_config.*)."""
    from jupyter_core.application import JupyterApp

    class ServerConfig(JupyterApp):
        name = "jupyter-mlinfra"
        config_file_name = "jupyter_server_config"

    loader = ServerConfig()
    loader.load_config_file()
    return loader.config


def local_app() -> MLInfraApp:
    """The extension as a server started here would have it (for its wiring)."""
    return MLInfraApp(config=jupyter_server_config())


def local_settings() -> Settings:
    """The extension's settings as a server started here would read them."""
    return local_app().mlinfra_settings


def local_identity(settings: Settings) -> Identity:
    """The OS user, with the groups and admin rights the config gives them."""
    return settings.identity(getpass.getuser())
