"""``jupyter mlinfra``: flavors, capacity, and queued jobs from a terminal.

Errors print one line (``jupyter mlinfra COMMAND: what went wrong``) and exit 1, never a
traceback; a job's own failure is its exit code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..client import ClientError
from ..errors import MLInfraError
from ..submit_args import did_you_mean, subcommands
from . import catalog, jobs, kernels, profiles


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="jupyter mlinfra", description="Accelerator flavors, kernels and jobs for Jupyter."
    )
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    catalog.register(commands)
    jobs.register(commands)
    kernels.register(commands)
    profiles.register(commands)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    script_args: list[str] = []
    if "--" in words:  # what follows belongs to the job's script, options included
        split = words.index("--")
        words, script_args = words[:split], words[split + 1 :]
    root = parser()
    args, extra = root.parse_known_args(words)
    if extra:  # told with the subcommand's usage, which lists its options, not the top level's
        command = subcommands(root)[args.command]
        command.error(f"unrecognized arguments: {' '.join(extra)}{did_you_mean(command, extra)}")
    args.script_args = script_args
    try:
        code: int = args.run(args)
    except (ClientError, MLInfraError) as error:
        print(f"jupyter mlinfra {args.command}: {error.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"jupyter mlinfra {args.command}: interrupted", file=sys.stderr)
        return 130
    return code
