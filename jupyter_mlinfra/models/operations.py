"""What one operation of the REST API takes and answers, as its area module declares it: the
OpenAPI document's paths are written from these (``openapi.py``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

API = "/mlinfra/api/v1"
"""Where the API lives, below the server's base URL (and the agent's socket)."""

PATH_PARAMETERS = {
    "name": r"[A-Za-z0-9._-]+",
    "job_id": r"[0-9a-f]{12}",
    "kernel_id": r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
}
"""What each id in a path may be: the routes match these, the document states them."""


def route(path: str) -> str:
    """The tornado pattern of an API path: ``/jobs/{job_id}`` to a named group."""
    for name, pattern in PATH_PARAMETERS.items():
        path = path.replace(f"{{{name}}}", f"(?P<{name}>{pattern})")
    return API + path


@dataclass(frozen=True)
class Answer:
    """One successful answer of an operation."""

    description: str
    body: Any = None
    """A wire model (a TypedDict); None: ``schema`` says, or no body."""
    schema: Mapping[str, Any] | None = None
    """A schema written out, where no model fits (the document itself, log text)."""
    content_type: str = "application/json"
    links: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    """Below ``API``, with ``{name}`` for each path parameter."""
    operation_id: str
    summary: str
    answers: Mapping[int, Answer]
    errors: tuple[int, ...] = ()
    """The 4xx and 5xx it may answer besides 401 and 403, which every operation may."""
    error_descriptions: Mapping[int, str] = field(default_factory=dict)
    """Where an error means something particular to this operation."""
    description: str = ""
    query: Any = None
    """A TypedDict of the query parameters; each field is one."""
    body: Any = None
    """The request body's wire model."""
    body_required: bool = True
    body_description: str = ""
