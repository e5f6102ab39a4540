"""``jupyter mlinfra kernels``: the flavor kernels that hold CPUs and accelerators (a terminal's
view of the sidebar's Kernels section), and ``--stop ID`` to give them back. Kernels live in
the Jupyter server, so this always asks one.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..client import KernelsClient, discover
from ..text import format_table, kernel_rows

HELP = "your flavor kernels (admins: everybody's), with what they hold; --stop ID ends one"


def register(commands: Any) -> None:
    command = commands.add_parser("kernels", help=HELP, description=HELP)
    command.set_defaults(run=run)
    command.add_argument("--stop", metavar="ID", help="shut this kernel down")
    command.add_argument("--json", action="store_true", help="print the API's JSON")
    command.add_argument("--url", help="the Jupyter server's URL (default: discovered)")
    command.add_argument("--token", help="the server's token (default: discovered)")


def run(args: argparse.Namespace) -> int:
    client = KernelsClient(discover(args.url, args.token))
    if args.stop:
        kernel = client.stop_kernel(args.stop)
        if args.json:
            print(json.dumps(kernel, indent=2))
        else:
            print(f"stopped kernel {kernel['id']} ({kernel['flavor']}, {kernel['environment']})")
        return 0
    listing = client.kernels()
    print(json.dumps(listing, indent=2) if args.json else format_table(kernel_rows(listing)))
    return 0
