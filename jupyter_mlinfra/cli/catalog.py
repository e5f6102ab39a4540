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

from ..client import MLInfraClient, discover
from ..text import Table, format_table
from .config import local_app, local_identity


def _flavor_rows(body: dict[str, Any]) -> Table:
    rows: Table = [("NAME", "ACCELERATOR", "CPU", "MEMORY", "TYPE", "$/HOUR", "AVAILABLE NOW")]
    for f in body["flavors"]:
        accelerator = f["accelerator"]
        rows.append(
            (
                f["name"] + (" *" if f["name"] == body["default_flavor"] else ""),
                f"{accelerator['count']} × {accelerator['model'] or accelerator['kind']}"
                if accelerator
                else "-",
                f"{f['cpu']:g}",
                f["memory"],
                f["capacity_type"],
                "-" if f["price_per_hour"] is None else f"{f['price_per_hour']:.2f}",
                ("yes: " if f["availability"]["available"] else "no: ")
                + f["availability"]["summary"],
            )
        )
    return rows


def _environment_rows(body: dict[str, Any]) -> Table:
    rows: Table = [("NAME", "FRAMEWORK", "LAUNCHER", "RUNS ON", "DESCRIPTION")]
    for e in body["environments"]:
        default = " *" if e["name"] == body["default_environment"] else ""
        runs_on = e["image"] or e["python"] or "this server's Python"
        rows.append((e["name"] + default, e["framework"], e["launcher"], runs_on, e["description"]))
    return rows


def _capacity_rows(body: dict[str, Any]) -> Table:
    rows: Table = [("RESOURCE", "FREE", "TOTAL", "DETAIL")]
    rows.append(("cpu", f"{body['cpu']['free']:g}", f"{body['cpu']['total']:g}", body["hostname"]))
    memory = body["memory"]
    rows.append(("memory", memory["free"], memory["total"], ""))
    for a in body["accelerators"]:
        free = ",".join(str(d["index"]) for d in a["devices"] if d["free"]) or "none"
        rows.append((f"{a['kind']} {a['model']}", str(a["free"]), str(a["total"]), f"free: {free}"))
    return rows


def _whoami_rows(body: dict[str, Any]) -> Table:
    def limit(value: int | None) -> str:
        return "unlimited" if value is None else str(value)

    quota, usage = body["quota"], body["usage"]
    return [
        ("FIELD", "VALUE"),
        ("user", body["user"] + (" (admin)" if body["admin"] else "")),
        ("groups", ", ".join(body["groups"]) or "-"),
        ("backend", body["backend"]),
        ("flavors", ", ".join(body["flavors"]) or "-"),
        ("gpus", f"{usage['gpus']} of {limit(quota['max_gpus'])}"),
        ("running jobs", f"{usage['running_jobs']} of {limit(quota['max_running_jobs'])}"),
        ("queued jobs", f"{usage['queued_jobs']} of {limit(quota['max_queued_jobs'])}"),
        ("kernels", str(usage["kernels"])),
    ]


COMMANDS: dict[str, tuple[str, Callable[[dict[str, Any]], Table]]] = {
    "flavors": ("accelerator flavors you may use, with what is free now", _flavor_rows),
    "environments": ("environments (software stacks) you may use", _environment_rows),
    "capacity": ("total and free CPUs, memory and accelerators", _capacity_rows),
    "whoami": ("your user, groups, quota and usage", _whoami_rows),
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


def _from_server(args: argparse.Namespace) -> dict[str, Any]:
    client = MLInfraClient(discover(args.url, args.token))
    if args.command == "flavors":
        return client.flavors(include_all=args.all)
    result: dict[str, Any] = getattr(client, args.command)()
    return result


def _from_local_config(args: argparse.Namespace) -> dict[str, Any]:
    app = local_app()
    inventory = app.make_inventory()
    identity = local_identity(app)
    if args.command == "environments":
        return inventory.environments(identity)
    if args.command == "flavors":
        return asyncio.run(inventory.flavors(identity, include_all=args.all))
    if args.command == "capacity":
        return asyncio.run(inventory.capacity())
    return asyncio.run(inventory.whoami(identity))
