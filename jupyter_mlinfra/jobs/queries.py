"""The query parameters of the jobs API, read the same way by every server that serves it
(the local agent, and the Jupyter server in Kubernetes mode)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidInput

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
