"""Wire models of the jobs API: a submission, a job, its events, listings and reports."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, with_config
from typing_extensions import TypedDict

from ..arguments import MAX_TEXT
from ..jobs.queries import MAX_LOG_LINES, MAX_PAGE
from ..jobs.spec import (
    MAX_CODE_CHARACTERS,
    MAX_NODES,
    MAX_PROCS_PER_NODE,
    MAX_RUNTIME_SECONDS,
    ConditionName,
    JobStateName,
)
from . import WIRE
from .catalog import Flag, Quota, Usage
from .operations import Answer, Operation
from .patterns import BASE64, ENV_NAME, IDENTIFIER, LABEL, NO_NUL

Label = Annotated[str, Field(max_length=63, pattern=LABEL)]
"""A name such as a flavor's or a priority class's; empty: not given."""
Identifier = Annotated[str, Field(pattern=IDENTIFIER)]
Path = Annotated[str, Field(max_length=4096, pattern=NO_NUL)]


@with_config(WIRE)
class RetryPolicy(TypedDict, total=False):
    """When a failed attempt is queued again."""

    max_restarts: Annotated[int | None, Field(ge=0, le=100)]
    on_exit_codes: Annotated[
        list[Annotated[int, Field(ge=0, le=255)]] | None,
        Field(description="Exit codes that are retried; empty: any non-zero exit."),
    ]


@with_config(
    {
        **WIRE,
        "json_schema_extra": {
            "anyOf": [
                {
                    "required": ["code"],
                    "properties": {
                        "code": {"type": "string", "minLength": 1},
                        "script": {"anyOf": [{"type": "string", "maxLength": 0}, {"type": "null"}]},
                    },
                },
                {
                    "required": ["script"],
                    "properties": {
                        "script": {"type": "string", "minLength": 1},
                        "code": {"anyOf": [{"type": "string", "maxLength": 0}, {"type": "null"}]},
                    },
                },
            ]
        },
    }
)
class JobSubmission(TypedDict, total=False):
    """Give exactly one of code or script. Any field may be absent or null (for code and
    script, also empty), meaning its default."""

    name: Label | None
    code: Annotated[
        str | None,
        Field(max_length=MAX_CODE_CHARACTERS, description="Python source (a notebook cell)."),
    ]
    script: Annotated[Path | None, Field(description="Path of a Python script.")]
    source: Annotated[
        str | None,
        Field(
            max_length=MAX_CODE_CHARACTERS,
            description="The script's text, for backends whose nodes cannot read its path (a "
            "cluster's pods): the job runs a copy of it, named as it. The CLI sends it.",
        ),
    ]
    args: Annotated[
        list[Annotated[str, Field(pattern=NO_NUL)]] | None,
        Field(description="A script's arguments; at most max_args_bytes."),
    ]
    flavor: Annotated[Label | None, Field(description="Default: the caller's default flavor.")]
    environment: Label | None
    nodes: Annotated[int | None, Field(ge=1, le=MAX_NODES, json_schema_extra={"default": 1})]
    procs_per_node: Annotated[
        int | None,
        Field(
            ge=1,
            le=MAX_PROCS_PER_NODE,
            description="Processes per node. Left out or null: one per accelerator of the "
            "flavor, else 1. More than that hold a CPU each beyond the flavor's CPUs (local "
            "backend).",
        ),
    ]
    env: Annotated[
        dict[
            Annotated[str, Field(pattern=ENV_NAME)],
            Annotated[str, Field(pattern=NO_NUL)],
        ]
        | None,
        Field(description="At most max_env_bytes."),
    ]
    priority: Annotated[
        Label | None,
        Field(
            description="A priority class the caller may use (whoami's priorities); 403 otherwise."
        ),
    ]
    queue: Annotated[Label | None, Field(json_schema_extra={"default": "default"})]
    max_runtime_seconds: Annotated[float | None, Field(gt=0, le=MAX_RUNTIME_SECONDS)]
    retry: RetryPolicy | None
    push: Annotated[
        dict[Identifier, Annotated[str, Field(pattern=BASE64)]] | None,
        Field(
            description="Variable name -> base64 of its cloudpickle, loaded before the code "
            "runs; at most max_push_bytes."
        ),
    ]
    pull: Annotated[list[Identifier] | None, Field(description="Variables rank 0 sends back.")]
    working_dir: Path | None
    idempotency_key: Annotated[str | None, Field(max_length=255)]


@with_config(WIRE)
class Reprioritisation(TypedDict):
    """The body of ``PATCH jobs/{job_id}`` (admins only)."""

    priority: Annotated[Label, Field(description="A class of MLInfraApp.priority_classes.")]


@with_config(WIRE)
class Job(TypedDict):
    """A job as every surface shows it."""

    id: str
    name: str
    owner: str
    state: JobStateName
    reason: Annotated[str, Field(description="Why it waits or how it ended, for people.")]
    position: Annotated[
        int | None, Field(description="1-based place in admission order while queued.")
    ]
    eta: Annotated[
        float | None,
        Field(
            description="Likely start (epoch seconds) while waiting: queued (on a cluster "
            "without Kueue, also starting with a pod not yet on a node); null when unknown."
        ),
    ]
    eta_basis: Annotated[
        str,
        Field(
            description='What the ETA waits for, in words ("max runtime of 1 running job", '
            '"free now", "unknown: ...").'
        ),
    ]
    flavor: str
    environment: str
    nodes: int
    procs_per_node: int
    priority: str
    queue: str
    created: Annotated[float, Field(description="Epoch seconds.")]
    started: float | None
    finished: float | None
    exit_code: int | None
    attempt: int
    devices: Annotated[
        list[list[int]], Field(description="Device indices held per node while admitted.")
    ]
    message: Annotated[str, Field(description="The failing rank's traceback, if any.")]


@with_config(WIRE)
class JobList(TypedDict):
    """A page of jobs, newest first."""

    jobs: list[Job]
    next: Annotated[str | None, Field(description="Cursor for the next page.")]


@with_config(WIRE)
class Event(TypedDict):
    """One transition in a job's history, in Kueue's condition vocabulary."""

    time: float
    condition: ConditionName
    reason: str
    message: str


@with_config(WIRE)
class EventList(TypedDict):
    events: Annotated[list[Event], Field(description="Oldest first.")]


@with_config(WIRE)
class JobResult(TypedDict):
    variables: Annotated[
        str,
        Field(
            description='Base64 of a cloudpickled dict of name -> value ("" when nothing was '
            "pulled)."
        ),
    ]


@with_config(WIRE)
class Queue(TypedDict):
    """Queued jobs in admission order, and how many wait in all."""

    jobs: list[Job]
    pending: int


@with_config(WIRE)
class UserUsage(TypedDict):
    user: str
    groups: list[str]
    admin: bool
    quota: Quota
    usage: Usage


@with_config(WIRE)
class GroupUsage(TypedDict):
    group: str
    members: list[str]
    member_quota: Annotated[
        Quota | None,
        Field(description="What each member gets from this group; null when it has no quota."),
    ]
    usage: Annotated[Usage, Field(description="The members' usage, summed.")]


@with_config(WIRE)
class UsageReport(TypedDict):
    """Every user's usage against their quota, and each group's members' usage."""

    users: list[UserUsage]
    groups: list[GroupUsage]


class JobsQuery(TypedDict, total=False):
    """``GET jobs``'s query parameters, which ``jobs/queries.list_filters`` reads (ASCII digits
    only, as ``arguments.py`` reads every query) within these same bounds."""

    state: Annotated[
        str,
        Field(max_length=MAX_TEXT, pattern=r"^[a-z,]*$", description="Comma-separated states."),
    ]
    owner: Annotated[str, Field(max_length=MAX_TEXT, description="Admins only, for another user.")]
    flavor: Annotated[str, Field(max_length=MAX_TEXT)]
    queue: Annotated[str, Field(max_length=MAX_TEXT)]
    limit: Annotated[int, Field(ge=1, le=MAX_PAGE, json_schema_extra={"default": 100})]
    before: Annotated[
        str,
        Field(
            pattern=r"^([0-9][0-9.e+-]{0,31}:[0-9a-f]{12})?$",
            description="The `next` cursor of the previous page.",
        ),
    ]


class LogsQuery(TypedDict, total=False):
    """``GET jobs/{job_id}/logs``'s query parameters (``jobs/queries.log_options``)."""

    rank: Annotated[int, Field(ge=0, le=MAX_NODES * MAX_PROCS_PER_NODE - 1)]
    tail: Annotated[int, Field(ge=0, le=MAX_LOG_LINES, description="Only the last N lines.")]
    follow: Annotated[
        Flag,
        Field(
            description="Stream new lines until the job ends.",
            json_schema_extra={"default": "false"},
        ),
    ]


def _links(*names: str) -> dict[str, Any]:
    """Links from an answer that is a job to the operations on it (schemathesis follows
    them: submit, then act on the job submitted)."""
    return {
        name[0].upper() + name[1:]: {
            "operationId": name,
            "parameters": {"job_id": "$response.body#/id"},
        }
        for name in names
    }


OPERATIONS = (
    Operation(
        "get", "/jobs", "listJobs",
        "The caller's jobs, newest first (admins may see everybody's).",
        {200: Answer("A page of jobs.", JobList)}, errors=(400, 503), query=JobsQuery,
    ),
    Operation(
        "post", "/jobs", "submitJob",
        "Queue a job. Repeating an idempotency key returns the job it created.",
        {
            200: Answer(
                "The job an earlier submission with the same idempotency key created.", Job
            ),
            201: Answer(
                "The new job.", Job,
                links=_links(
                    "getJob", "cancelJob", "retryJob", "reprioritiseJob", "getJobLogs",
                    "getJobEvents", "getJobResult",
                ),
            ),
        },
        errors=(400, 404, 409, 413, 422, 503), body=JobSubmission,
    ),
    Operation(
        "get", "/jobs/{job_id}", "getJob",
        "One job, with its queue position, reason and ETA while it waits.",
        {200: Answer("The job.", Job)}, errors=(404, 503),
    ),
    Operation(
        "delete", "/jobs/{job_id}", "cancelJob",
        "Cancel a job; running ranks get SIGTERM, then SIGKILL after the grace period.",
        {200: Answer("The cancelled job.", Job, links=_links("retryJob", "getJobEvents"))},
        errors=(404, 409, 503),
    ),
    Operation(
        "patch", "/jobs/{job_id}", "reprioritiseJob",
        "Admins only. Move an unfinished job to another priority class (admission order, and "
        "preemption when enabled), under the same checks as a submission.",
        {200: Answer("The job with its new priority.", Job)},
        errors=(400, 404, 409, 413, 422, 503), body=Reprioritisation,
    ),
    Operation(
        "post", "/jobs/{job_id}/retry", "retryJob",
        "Queue a finished job again, as its next attempt, if it could be submitted now (the "
        "same entitlements, fit and quotas as a submission, as of now).",
        {200: Answer("The queued job.", Job)}, errors=(400, 404, 409, 422, 503),
    ),
    Operation(
        "get", "/jobs/{job_id}/logs", "getJobLogs",
        "Rank logs of the current attempt; all ranks merged with `[rank N]` prefixes.",
        {200: Answer("The log text.", schema={"type": "string"}, content_type="text/plain")},
        errors=(400, 404, 503), query=LogsQuery,
    ),
    Operation(
        "get", "/jobs/{job_id}/events", "getJobEvents",
        "The job's history, in Kueue's condition vocabulary.",
        {200: Answer("Events, oldest first.", EventList)}, errors=(404, 503),
    ),
    Operation(
        "get", "/jobs/{job_id}/result", "getJobResult",
        "The variables rank 0 pulled back, once the job succeeded.",
        {200: Answer("The variables.", JobResult)}, errors=(404, 409, 503),
    ),
    Operation(
        "get", "/queue", "getQueue",
        "Queued jobs in admission order, each with position, reason and ETA.",
        {
            200: Answer(
                "The caller's queued jobs (admins, everybody's) and how many wait in all.", Queue
            )
        },
        errors=(503,),
    ),
    Operation(
        "get", "/usage", "getUsage",
        "Admins only. Every user's usage against their quota, and each group's members' usage.",
        {200: Answer("Usage per user and per group.", UsageReport)}, errors=(503,),
        description="Users are those who hold or queue something now, or are named in "
        "user_quotas or groups. Group quotas apply to each member (not to the group as a "
        "whole): `member_quota` is what each member gets from the group, `usage` the members' "
        "usage summed.",
    ),
)  # fmt: skip
