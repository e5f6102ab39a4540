"""``jupyter mlinfra agent|submit|jobs|status|logs|cancel|retry|queue``: jobs from a terminal.

Through a running Jupyter server when there is one, else straight to this machine's local
agent (started on demand), so jobs work with no Jupyter server at all.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..client import ClientError, Connection, JobsClient, discover
from ..follow import follow
from ..submit_args import add_submit_options
from ..text import (
    format_table,
    group_usage_rows,
    job_history,
    job_rows,
    queue_rows,
    status_line,
    usage_rows,
)
from .config import local_identity, local_settings

if TYPE_CHECKING:
    from ..models.jobs import Job, JobSubmission


def register(commands: Any) -> None:
    agent = commands.add_parser("agent", help="run the local agent (normally started for you)")
    agent.set_defaults(run=run_agent)
    agent.add_argument("--socket", help="Unix socket to serve on (default: agent_socket)")
    agent.add_argument("--data-dir", help="state directory (default: data_dir)")
    agent.add_argument("--idle-timeout", type=float, help="seconds idle before exiting")
    agent.add_argument(
        "--hub",
        action="store_true",
        help="run as the JupyterHub service shared by every user of this machine, on the "
        "service's URL ($JUPYTERHUB_SERVICE_URL), authenticating callers by their hub tokens",
    )
    agent.add_argument(
        "--stop",
        action="store_true",
        help="stop the agent running on the socket now, rather than at its idle timeout "
        "(ranks still running keep running; the next agent takes them back)",
    )

    submit = commands.add_parser(
        "submit",
        help="queue a Python script as a job",
        usage="jupyter mlinfra submit SCRIPT [options] [-- ARGS...]",
        allow_abbrev=False,  # as the magic: --det is no option
    )
    _target(submit)
    submit.set_defaults(run=run_submit)
    submit.add_argument("script", help="the Python script to run on every rank")
    add_submit_options(submit, wait=True)

    listing = commands.add_parser("jobs", help="your jobs, newest first")
    _target(listing)
    listing.set_defaults(run=run_jobs)
    listing.add_argument("--state", default="", help="comma-separated states")
    listing.add_argument("--limit", type=int, default=50)

    for name, help_text, action in (
        ("status", "one job and its history", run_status),
        ("cancel", "cancel a job", run_cancel),
        ("retry", "queue a finished job again", run_retry),
    ):
        command = commands.add_parser(name, help=help_text)
        _target(command)
        command.set_defaults(run=action)
        command.add_argument("id", help="the job id")

    logs = commands.add_parser("logs", help="a job's rank logs")
    _target(logs)
    logs.set_defaults(run=run_logs)
    logs.add_argument("id")
    logs.add_argument("-f", "--follow", action="store_true", help="stream until the job ends")
    logs.add_argument("--rank", type=int, default=None)
    logs.add_argument("--tail", type=int, default=None)

    queue = commands.add_parser("queue", help="queued jobs with position, reason and ETA")
    _target(queue)
    queue.set_defaults(run=run_queue)
    queue.add_argument(
        "--all",
        action="store_true",
        help="admins: every user's unfinished jobs, and usage against quotas per user and group",
    )

    priority = commands.add_parser("priority", help="admins: move a job to a priority class")
    _target(priority)
    priority.set_defaults(run=run_priority)
    priority.add_argument("id", help="the job id")
    priority.add_argument("priority", help="a priority class, e.g. high")


def _target(command: argparse.ArgumentParser) -> None:
    command.add_argument("--json", action="store_true", help="print the API's JSON")
    command.add_argument("--url", help="the Jupyter server's URL (default: discovered)")
    command.add_argument("--token", help="the server's token (default: discovered)")


def client_for(args: argparse.Namespace) -> JobsClient:
    """A server's client if one is found, else the local agent's (started if needed)."""
    try:
        return JobsClient(discover(args.url, args.token))
    except ClientError:
        if args.url:
            raise
    from ..backends.local.agent_client import ensure_agent

    settings = local_settings()
    ensure_agent(settings.agent_socket, settings.data_dir, settings.agent_idle_timeout)
    identity = json.dumps(local_identity(settings).to_json())
    connection = Connection(
        "http://localhost/", source="local agent", socket=settings.agent_socket, identity=identity
    )
    return JobsClient(connection)


# --- commands -------------------------------------------------------------------------------


def run_agent(args: argparse.Namespace) -> int:
    from ..backends.local.accounts import choose_rank_accounts
    from ..backends.local.agent_server import serve, serve_hub
    from ..jobs.policy import Policy

    if args.stop:
        return _stop_agent(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("tornado.access").setLevel(logging.WARNING)  # errors only: not per request
    settings = local_settings()
    data_dir = Path(args.data_dir or settings.data_dir)
    policy = Policy.from_settings(settings)
    address = _hub_service_address(os.environ) if args.hub else None
    accounts = choose_rank_accounts(
        settings.run_ranks_as,
        dict(settings.owner_accounts),
        shared=args.hub,
        unsafe_ranks_as_root=settings.unsafe_ranks_as_root,
        data_dir=data_dir,
    )
    if address is not None:
        logging.getLogger("alembic").setLevel(logging.WARNING)  # imported with JupyterHub's auth
        return asyncio.run(serve_hub(*address, data_dir, policy, accounts))
    socket_path = Path(args.socket or settings.agent_socket)
    idle = settings.agent_idle_timeout if args.idle_timeout is None else args.idle_timeout
    return asyncio.run(serve(socket_path, data_dir, idle, policy, accounts))


def _stop_agent(args: argparse.Namespace) -> int:
    from ..backends.local.agent_client import stop_agent

    socket_path = args.socket or local_settings().agent_socket
    status = stop_agent(socket_path)
    if status is None:
        print(f"no local agent answers on {socket_path}")
        return 0
    left = f"; {status['running']} running job(s) keep running" if status["running"] else ""
    waiting = f"; {status['queued']} queued job(s) wait" if status["queued"] else ""
    later = " until an agent starts again (on demand)" if left or waiting else ""
    print(f"stopped the local agent (pid {status['pid']}){left}{waiting}{later}")
    return 0


def _hub_service_address(environ: Mapping[str, str]) -> tuple[str, int, str]:
    """Where JupyterHub expects its service: host and port of ``JUPYTERHUB_SERVICE_URL``
    and the proxy's path prefix, which the agent serves too."""
    url = urllib.parse.urlsplit(environ.get("JUPYTERHUB_SERVICE_URL", ""))
    if not (url.hostname and url.port):
        raise ClientError(
            "--hub: JUPYTERHUB_SERVICE_URL must name a host and port (run the agent as a "
            "JupyterHub service with a 'url', e.g. http://127.0.0.1:10101)",
            field="hub",
        )
    return url.hostname, url.port, environ.get("JUPYTERHUB_SERVICE_PREFIX", "/")


def run_submit(args: argparse.Namespace) -> int:
    script = Path(args.script)
    if not script.is_file():
        raise ClientError(f"no such script: {args.script}", field="script")
    extra = list(getattr(args, "script_args", []))
    submission: JobSubmission = {
        "script": str(script.resolve()),
        "source": script.read_text(encoding="utf-8"),  # a cluster's pods cannot read the path
        "args": extra,
        "flavor": args.flavor,
        "environment": args.environment,
        "nodes": args.nodes,
        "priority": args.priority,
        "name": args.name or script.stem,
        "working_dir": os.getcwd(),
        "retry": {"max_restarts": args.retries, "on_exit_codes": list(args.retry_on)},
    }
    if args.procs is not None:
        submission["procs_per_node"] = args.procs
    if args.timeout is not None:
        submission["max_runtime_seconds"] = args.timeout
    if args.key:
        submission["idempotency_key"] = args.key
    client = client_for(args)
    job = client.submit(submission)
    if args.json and not args.wait:
        print(json.dumps(job, indent=2))
        return 0
    print(f"submitted job {job['id']} ({client.connection.source})", file=sys.stderr)
    if not args.wait:
        print(job["id"])
        return 0
    final = follow(client, job["id"], on_status=_print_status, on_line=_print_line)
    return 0 if final["state"] == "succeeded" else int(final["exit_code"] or 1)


def _print_status(job: Job) -> None:
    print(f"-- {status_line(job)}", file=sys.stderr, flush=True)


def _print_line(line: str) -> None:
    sys.stdout.write(line)
    sys.stdout.flush()


def run_jobs(args: argparse.Namespace) -> int:
    page = client_for(args).jobs(state=args.state or None, limit=args.limit)
    print(json.dumps(page, indent=2) if args.json else format_table(job_rows(page)))
    return 0


def run_status(args: argparse.Namespace) -> int:
    client = client_for(args)
    job, events = client.job(args.id), client.events(args.id)
    print(
        json.dumps({**job, "events": events}, indent=2) if args.json else job_history(job, events)
    )
    return 0


def run_cancel(args: argparse.Namespace) -> int:
    job = client_for(args).cancel(args.id)
    print(json.dumps(job, indent=2) if args.json else status_line(job))
    return 0


def run_retry(args: argparse.Namespace) -> int:
    job = client_for(args).retry(args.id)
    print(json.dumps(job, indent=2) if args.json else status_line(job))
    return 0


def run_logs(args: argparse.Namespace) -> int:
    client = client_for(args)
    for line in client.logs(args.id, rank=args.rank, tail=args.tail, follow=args.follow):
        _print_line(line)
    return 0


def run_queue(args: argparse.Namespace) -> int:
    if args.all:
        return _queue_all(args)
    queue = client_for(args).queue()
    if args.json:
        print(json.dumps(queue, indent=2))
    else:
        print(format_table(queue_rows(queue)))
        print(f"{queue['pending']} job(s) waiting in all")
    return 0


UNFINISHED = "queued,admitted,starting,running"


def _queue_all(args: argparse.Namespace) -> int:
    client = client_for(args)
    report = client.usage()  # first: a user who is not an admin is told so here
    page = client.jobs(state=UNFINISHED, limit=1000)
    if args.json:
        print(json.dumps({"jobs": page["jobs"], **report}, indent=2))
        return 0
    print(format_table(job_rows(page, owners=True)) if page["jobs"] else "no unfinished jobs")
    print()
    print(format_table(usage_rows(report)))
    print()
    print(format_table(group_usage_rows(report)))
    return 0


def run_priority(args: argparse.Namespace) -> int:
    job = client_for(args).set_priority(args.id, args.priority)
    print(json.dumps(job, indent=2) if args.json else f"{job['id']}: priority {job['priority']}")
    return 0
