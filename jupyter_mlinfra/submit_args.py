"""The options of a job submission that ``%%mlinfra submit`` and ``jupyter mlinfra submit``
share, defined once so that both read the same words the same way; and the suggestion both
make for a mistyped option. Pure: argparse only.

A notebook and a terminal differ in one default: a cell returns at once (``--detach``), a
terminal command follows its job to the end (``--wait``); each accepts both flags.
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Sequence
from typing import Any


def whole(minimum: int) -> Any:
    """An argparse type: a whole number of at least ``minimum``."""

    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return convert


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text}")
    return value


def exit_codes(text: str) -> tuple[int, ...]:
    codes: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part.isdigit() or not 0 <= int(part) <= 255:
            raise argparse.ArgumentTypeError(f"exit codes are 0 to 255, got {part!r}")
        codes.append(int(part))
    return tuple(codes)


def add_submit_options(parser: argparse.ArgumentParser, *, wait: bool) -> None:
    """The shared options, into ``parser``; ``wait`` is whether it waits by default."""
    parser.add_argument("--flavor", default="", help="accelerator flavor (default: yours)")
    parser.add_argument("--env", dest="environment", default="", metavar="ENV", help="environment")
    parser.add_argument("--nodes", type=whole(1), default=1, metavar="N", help="nodes (default 1)")
    parser.add_argument(
        "--procs",
        type=whole(1),
        default=None,
        metavar="N",
        help="processes per node (default: one per accelerator of the flavor, else 1)",
    )
    parser.add_argument(
        "--priority", default="", help="priority class, one you may use (whoami lists them)"
    )
    parser.add_argument("--name", default="", help="the job's name")
    parser.add_argument(
        "--retries", type=whole(0), default=0, metavar="N", help="restarts on failure"
    )
    parser.add_argument(
        "--retry-on",
        type=exit_codes,
        default=(),
        metavar="CODES",
        help="exit codes to retry on: 1,2 (default: any failure)",
    )
    parser.add_argument(
        "--timeout", type=seconds, default=None, metavar="SECONDS", help="max runtime, seconds"
    )
    parser.add_argument(
        "--key", default="", help="idempotency key: submitting again with it finds the same job"
    )
    waiting = parser.add_mutually_exclusive_group()
    waiting.add_argument(
        "--wait",
        dest="wait",
        action="store_true",
        help="follow the job here until it ends: its status while it waits, its logs while it "
        "runs" + (" (the default)" if wait else ""),
    )
    waiting.add_argument(
        "--detach",
        dest="wait",
        action="store_false",
        help="return as soon as the job is queued" + ("" if wait else " (the default)"),
    )
    parser.set_defaults(wait=wait)


def did_you_mean(parser: argparse.ArgumentParser, words: Sequence[str]) -> str:
    """``"; did you mean --procs?"`` for the first of ``words`` that is close to one of
    ``parser``'s options, else ``""``."""
    options = [name for action in parser._actions for name in action.option_strings]
    for word in words:
        if word.startswith("-"):
            close = difflib.get_close_matches(word.split("=")[0], options, n=1, cutoff=0.6)
            if close:
                return f"; did you mean {close[0]}?"
    return ""


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """``parser``'s subcommands by name, so that a mistake is told with the subcommand's own
    usage rather than the top-level one."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}
