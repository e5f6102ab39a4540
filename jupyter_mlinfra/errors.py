"""Domain errors, raised by the core and services and mapped to HTTP statuses in one place.

The core knows nothing about HTTP; `handlers.py` turns each class into its status code, and the
CLI and magics print `str(error)`. Every error names the offending field when there is one, so a
client can point at it.
"""

from __future__ import annotations


def shown(text: str, limit: int = 40) -> str:
    """``text`` quoted for a message, cut short: messages echo what was sent, not all of it."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


class MLInfraError(Exception):
    """Base of every error a user can cause; its message is safe to show them."""

    status = 400

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def to_json(self) -> dict[str, str | None]:
        return {"message": self.message, "field": self.field}


class InvalidInput(MLInfraError):
    """A request or a setting is malformed (HTTP 400)."""

    status = 400


class NotAuthenticated(MLInfraError):
    """The request carries no credentials this service accepts (HTTP 401)."""

    status = 401


class NotAllowed(MLInfraError):
    """The caller may not use what they asked for (HTTP 403)."""

    status = 403


class NotFound(MLInfraError):
    """What was named does not exist, or is hidden from the caller (HTTP 404)."""

    status = 404


class Conflict(MLInfraError):
    """The request contradicts the current state (HTTP 409)."""

    status = 409


class TooLarge(MLInfraError):
    """A request, or one of its fields, is larger than the configured limit (HTTP 413)."""

    status = 413


class CannotFit(MLInfraError):
    """The request can never be satisfied on this capacity or quota (HTTP 422)."""

    status = 422


class CatalogError(InvalidInput):
    """Every problem found in a catalog at once, one precise line each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid catalog:\n" + "\n".join(f"  - {p}" for p in problems))
