"""The query parameters of the jobs API, read the same way by every server that serves it
(the local agent, and the Jupyter server in Kubernetes mode)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidInput, NotAllowed
from ..identity import Identity
from .spec import Job, JobState

Argument = Callable[[str, str], str]
"""``get_query_argument(name, default)`` of a request."""


def list_filters(argument: Argument) -> dict[str, Any]:
    """Keyword arguments of a service's ``list``: owner, states, flavor, queue, limit, before."""
    limit = argument("limit", "100")
    if not limit.isdigit():
        raise InvalidInput(f"limit: must be a whole number, got {limit!r}", "limit")
    return {
        "owner": argument("owner", ""),
        "states": [s for s in argument("state", "").split(",") if s],
        "flavor": argument("flavor", ""),
        "queue": argument("queue", ""),
        "limit": int(limit),
        "before": argument("before", ""),
    }


MAX_PAGE = 1000
"""The most jobs one page of a listing holds."""

Cursor = tuple[float, str]
"""Where a page of a listing ends: (created, id) of its last job, newest first."""


def listing_owner(identity: Identity, owner: str, states: Collection[str], limit: int) -> str:
    """Check a listing's filters for ``identity``; the owner to list ('' for everybody's,
    which only admins get): users see their own jobs, admins everybody's."""
    if owner and not identity.may_see(owner):
        raise NotAllowed(f"only admins may list the jobs of {owner!r}", "owner")
    known = {s.value for s in JobState}
    unknown = [s for s in states if s not in known]
    if unknown:
        raise InvalidInput(
            f"state: unknown {unknown[0]!r} (known: {', '.join(sorted(known))})", "state"
        )
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit: must be between 1 and {MAX_PAGE}, got {limit}", "limit")
    return owner if identity.admin else identity.user


def cursor(before: str) -> Cursor | None:
    """The ``before`` parameter: a cursor a previous page gave (its ``next``), or None."""
    if not before:
        return None
    created, _, job_id = before.partition(":")
    try:
        return float(created), job_id
    except ValueError:
        raise InvalidInput(
            f"before: not a cursor from a previous page: {before!r}", "before"
        ) from None


def next_cursor(jobs: Sequence[Job], limit: int) -> str | None:
    """The ``next`` of a page cut from ``jobs`` (up to limit + 1 of them, newest first)."""
    if len(jobs) <= limit:
        return None
    last = jobs[limit - 1]
    return f"{last.created!r}:{last.id}"


@dataclass(frozen=True)
class LogOptions:
    rank: int | None
    """One rank's log; None: all ranks', ``[rank N]``-prefixed."""
    tail: int | None
    """Only the last N lines."""
    follow: bool
    """Stream new lines until the job ends."""


def log_options(argument: Argument) -> LogOptions:
    rank, tail = argument("rank", ""), argument("tail", "")
    for name, text in (("rank", rank), ("tail", tail)):
        if text and not text.isdigit():
            raise InvalidInput(f"{name}: must be a whole number, got {text!r}", name)
    return LogOptions(
        rank=int(rank) if rank else None,
        tail=int(tail) if tail else None,
        follow=argument("follow", "false").lower() in ("1", "true"),
    )
