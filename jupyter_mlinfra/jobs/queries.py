"""The query parameters of the jobs API, read the same way by every server that serves it
(the local agent, and the Jupyter server in Kubernetes mode)."""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from ..arguments import Argument, flag, text, whole
from ..errors import InvalidInput, NotAllowed, shown
from ..identity import Identity
from .spec import MAX_NODES, MAX_PROCS_PER_NODE, Job, JobState

MAX_PAGE = 1000
"""The most jobs one page of a listing holds."""


def list_filters(argument: Argument) -> dict[str, Any]:
    """Keyword arguments of a service's ``list``: owner, states, flavor, queue, limit, before."""
    limit = whole(argument, "limit", minimum=1, maximum=MAX_PAGE)
    return {
        "owner": text(argument, "owner"),
        "states": [s for s in text(argument, "state").split(",") if s],
        "flavor": text(argument, "flavor"),
        "queue": text(argument, "queue"),
        "limit": 100 if limit is None else limit,
        "before": text(argument, "before"),
    }


Cursor = tuple[float, str]
"""Where a page of a listing ends: (created, id) of its last job, newest first."""


def listing_owner(identity: Identity, owner: str, states: Collection[str], limit: int) -> str:
    """Check a listing's filters for ``identity``; the owner to list ('' for everybody's,
    which only admins get): users see their own jobs, admins everybody's."""
    if owner and not identity.may_see(owner):
        raise NotAllowed(f"only admins may list the jobs of {shown(owner)}", "owner")
    known = {s.value for s in JobState}
    unknown = [s for s in states if s not in known]
    if unknown:
        raise InvalidInput(
            f"state: unknown {shown(unknown[0])} (known: {', '.join(sorted(known))})", "state"
        )
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit: must be between 1 and {MAX_PAGE}, got {limit}", "limit")
    return owner if identity.admin else identity.user


_CURSOR = re.compile(r"([0-9][0-9.e+-]{0,31}):([0-9a-f]{12})")
"""``created:id`` as ``next_cursor`` writes it: a float's repr (in ASCII digits: ``float``
also reads other scripts' digits, 'nan' and '1_0'), then a job id."""


def cursor(before: str) -> Cursor | None:
    """The ``before`` parameter: a cursor a previous page gave (its ``next``), or None."""
    if not before:
        return None
    match = _CURSOR.fullmatch(before)
    try:
        created = float(match.group(1)) if match else math.nan
    except ValueError:
        created = math.nan
    if not (match and math.isfinite(created)):
        raise InvalidInput(f"before: not a cursor from a previous page: {shown(before)}", "before")
    return created, match.group(2)


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


MAX_LOG_LINES = 10**8
"""The largest ``tail`` (a bound on the digits read, far above any real log)."""


def log_options(argument: Argument) -> LogOptions:
    return LogOptions(
        rank=whole(argument, "rank", maximum=MAX_NODES * MAX_PROCS_PER_NODE - 1),
        tail=whole(argument, "tail", maximum=MAX_LOG_LINES),
        follow=flag(argument, "follow"),
    )
