"""The words after ``%mlinfra`` and ``%%mlinfra``, parsed: pure, no IPython, no network.

``parse(line, cell=...)`` returns a :class:`Command` or raises :class:`ArgsError` (one line a
person reads: what was wrong) or :class:`HelpRequested` (the usage text to print). argparse
never exits the kernel: its ``error`` and ``exit`` are turned into these exceptions.

``submission(...)`` builds the JSON body of ``POST /jobs`` for a cell, and
``idempotency_key(...)`` the key that makes a retried request find its job again while a
re-run of the cell makes a new one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

from .submit_args import add_submit_options, did_you_mean, subcommands, whole

if TYPE_CHECKING:
    from .models.jobs import JobSubmission

PROG = "%mlinfra"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ArgsError(Exception):
    """Bad words after the magic; ``message`` is the one line to show (as ClientError's)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class HelpRequested(Exception):
    """``--help`` (or nothing at all) was asked for; ``text`` is the usage to print."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing to stderr and exiting."""

    def error(self, message: str) -> NoReturn:
        raise _error(self.prog, message)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise ArgsError(message.strip() if message else f"{self.prog}: exit {status}")

    def print_help(self, file: Any = None) -> None:
        raise HelpRequested(self.format_help())


def _error(prog: str, message: str) -> ArgsError:
    """``submit: what is wrong (see %%mlinfra submit --help)``, from a parser's ``prog``."""
    words = prog.split()  # "%mlinfra", "%%mlinfra submit"
    prefix = f"{' '.join(words[1:])}: " if words[1:] else ""
    return ArgsError(f"{prefix}{message} (see {' '.join([*words, '--help'])})")


@dataclass(frozen=True)
class SubmitOptions:
    """``%%mlinfra submit`` options; defaults mean "the server decides"."""

    flavor: str = ""
    environment: str = ""
    nodes: int = 1
    procs: int | None = None
    """None: the server's default (one per accelerator of the flavor, else 1)."""
    priority: str = ""
    name: str = ""
    push: tuple[str, ...] = ()
    pull: tuple[str, ...] = ()
    retries: int = 0
    retry_on: tuple[int, ...] = ()
    timeout: float | None = None
    key: str = ""
    wait: bool = False


@dataclass(frozen=True)
class Command:
    """One parsed magic line. ``submit`` is set only for ``name == "submit"``."""

    name: str
    job_id: str = ""
    state: str = ""
    rank: int | None = None
    tail: int | None = None
    follow: bool = False
    submit: SubmitOptions | None = field(default=None)


# --- value types: argparse turns their ValueError/ArgumentTypeError into error() ------------


def _names(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise argparse.ArgumentTypeError("expected comma-separated variable names")
    for name in names:
        if not _IDENTIFIER.match(name):
            raise argparse.ArgumentTypeError(f"{name!r} is not a Python variable name")
    return names


# --- the parser -----------------------------------------------------------------------------

LINE_COMMANDS = ("jobs", "status", "logs", "cancel", "retry", "pull", "queue", "flavors")


def parser() -> argparse.ArgumentParser:
    root = _Parser(
        prog=PROG,
        description="Queued distributed jobs from notebook cells.",
        allow_abbrev=False,
    )
    commands = root.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=_Parser, required=True
    )

    submit = commands.add_parser(
        "submit",
        prog="%%mlinfra submit",
        help="queue the cell as a job (a cell magic: %%%%mlinfra submit)",
        allow_abbrev=False,
    )
    add_submit_options(submit, wait=False)
    submit.add_argument(
        "--push", type=_names, default=(), metavar="NAMES", help="variables to send: a,b"
    )
    submit.add_argument(
        "--pull",
        type=_names,
        default=(),
        metavar="NAMES",
        help="variables rank 0 sends back when it succeeds: c,d (--wait puts them here; "
        "else %%mlinfra pull ID)",
    )

    listing = commands.add_parser("jobs", help="your jobs, newest first", allow_abbrev=False)
    listing.add_argument("--state", default="", help="comma-separated states")

    for name, help_text in (
        ("status", "one job and its history"),
        ("cancel", "cancel a job"),
        ("retry", "queue a finished job again"),
        ("pull", "put a succeeded job's pulled variables into the namespace"),
    ):
        command = commands.add_parser(name, help=help_text, allow_abbrev=False)
        command.add_argument("id", help="the job id")

    logs = commands.add_parser("logs", help="a job's rank logs", allow_abbrev=False)
    logs.add_argument("id", help="the job id")
    logs.add_argument("--rank", type=whole(0), default=None, metavar="R", help="only this rank")
    logs.add_argument(
        "--tail", type=whole(0), default=None, metavar="N", help="only the last N lines"
    )
    logs.add_argument("-f", "--follow", action="store_true", help="stream until the job ends")

    commands.add_parser("queue", help="queued jobs with position, reason and ETA")
    commands.add_parser("flavors", help="accelerator flavors you may use")
    return root


def split(line: str) -> list[str]:
    try:
        return shlex.split(line)
    except ValueError as error:  # "No closing quotation"
        raise ArgsError(f"cannot read the options: {error}") from None


def parse(line: str, *, cell: bool) -> Command:
    """The command in ``line``: ``cell`` says whether it came with a cell (``%%mlinfra``)."""
    words = split(line)
    root = parser()
    if not words:
        raise HelpRequested(root.format_help())
    args, extra = root.parse_known_args(words)  # extras named with their command, below
    name: str = args.command
    if extra:
        command = subcommands(root)[name]
        hint = did_you_mean(command, extra)
        raise _error(command.prog, f"unrecognized arguments: {' '.join(extra)}{hint}")
    if cell and name != "submit":
        raise ArgsError(f"{name}: a line magic; use %mlinfra {name} (one %)")
    if not cell and name == "submit":
        raise ArgsError("submit: a cell magic; put %%mlinfra submit ... on a cell's first line")
    if name == "submit":
        options = SubmitOptions(
            flavor=args.flavor,
            environment=args.environment,
            nodes=args.nodes,
            procs=args.procs,
            priority=args.priority,
            name=args.name,
            push=tuple(args.push),
            pull=tuple(args.pull),
            retries=args.retries,
            retry_on=tuple(args.retry_on),
            timeout=args.timeout,
            key=args.key,
            wait=args.wait,
        )
        return Command(name, submit=options)
    return Command(
        name,
        job_id=getattr(args, "id", ""),
        state=getattr(args, "state", ""),
        rank=getattr(args, "rank", None),
        tail=getattr(args, "tail", None),
        follow=getattr(args, "follow", False),
    )


# --- what gets sent -------------------------------------------------------------------------


def idempotency_key(cell: str, line: str, salt: str, execution_count: int) -> str:
    """Same cell, options, kernel session and execution: same key (a retried request finds
    its job); running the cell again (a new execution count) or in a new session: a new one."""
    material = json.dumps([cell, line, salt, execution_count])
    return "cell-" + hashlib.sha256(material.encode()).hexdigest()[:40]


def submission(
    options: SubmitOptions,
    code: str,
    *,
    idempotency_key: str,
    working_dir: str = "",
    push: Mapping[str, str] | None = None,
) -> JobSubmission:
    """The ``POST /jobs`` body for a cell; ``push`` is already encoded (``encode_push``)."""
    body: JobSubmission = {
        "code": code,
        "flavor": options.flavor,
        "environment": options.environment,
        "nodes": options.nodes,
        "priority": options.priority,
        "name": options.name,
        "push": dict(push or {}),
        "pull": list(options.pull),
        "retry": {"max_restarts": options.retries, "on_exit_codes": list(options.retry_on)},
        "working_dir": working_dir,
        "idempotency_key": options.key or idempotency_key,
    }
    if options.procs is not None:
        body["procs_per_node"] = options.procs
    if options.timeout is not None:
        body["max_runtime_seconds"] = options.timeout
    return body
