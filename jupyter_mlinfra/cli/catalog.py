"""``jupyter mlinfra flavors|environments|capacity|whoami``: what exists and who may use it.

Through a running server (the same REST API as every other surface), or with ``--local`` from
this machine's Jupyter config, for scripts and admins where no server runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable
from typing import Any

from ..client import ClientError, MLInfraClient, discover
from ..text import (
    Table,
    capacity_rows,
    environment_rows,
    flavor_rows,
    format_table,
    whoami_rows,
)
from .config import local_app, local_identity

COMMANDS: dict[str, tuple[str, Callable[[Any], Table]]] = {
    # each reads its own answer (text.py types them): flavor_rows a FlavorList...
    "flavors": ("accelerator flavors you may use, with what is free now", flavor_rows),
    "environments": ("environments (software stacks) you may use", environment_rows),
    "capacity": ("total and free CPUs, memory and accelerators", capacity_rows),
    "whoami": ("your user, groups, quota and usage", whoami_rows),
}


def register(commands: Any) -> None:
    for name, (help_text, _) in COMMANDS.items():
        command = commands.add_parser(name, help=help_text, description=help_text)
        command.set_defaults(run=run)
        command.add_argument("--json", action="store_true", help="print the API's JSON")
        target = command.add_mutually_exclusive_group()
        target.add_argument("--url", help="the Jupyter server's URL (default: discovered)")
        target.add_argument(
            "--local",
            action="store_true",
            help="read this machine's Jupyter config instead of asking a server",
        )
        command.add_argument("--token", help="the server's token (default: discovered)")
        if name == "flavors":
            command.add_argument(
                "--all", action="store_true", help="also list flavors you may not use"
            )


def run(args: argparse.Namespace) -> int:
    body = _from_local_config(args) if args.local else _from_server(args)
    if args.json:
        print(json.dumps(body, indent=2))
    else:
        print(format_table(COMMANDS[args.command][1](body)))
    return 0


def _from_server(args: argparse.Namespace) -> Any:
    try:
        connection = discover(args.url, args.token)
    except ClientError as error:
        raise ClientError(f"{error.message}; or use --local") from None
    client = MLInfraClient(connection)
    if args.command == "flavors":
        return client.flavors(include_all=args.all)
    return getattr(client, args.command)()


def _from_local_config(args: argparse.Namespace) -> Any:
    app = local_app()
    inventory = app.make_inventory()
    identity = local_identity(app.mlinfra_settings)
    if args.command == "environments":
        return asyncio.run(inventory.environments(identity))
    if args.command == "flavors":
        return asyncio.run(inventory.flavors(identity, include_all=args.all))
    if args.command == "capacity":
        return asyncio.run(inventory.capacity())
    return asyncio.run(inventory.whoami(identity))
