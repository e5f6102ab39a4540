"""This machine's Jupyter config, for commands that run without a Jupyter server."""

from __future__ import annotations

import getpass
from typing import Any

from ..app import MLInfraApp
from ..identity import Identity, resolve_identity


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
    """The extension's settings as a server started here would have them."""
    return MLInfraApp(config=jupyter_server_config())


def local_identity(app: MLInfraApp) -> Identity:
    """The OS user, with the groups and admin rights the config gives them."""
    return resolve_identity(
        getpass.getuser(),
        group_members=app.groups,
        admin_users=app.admin_users,
        admin_groups=app.admin_groups,
    )
