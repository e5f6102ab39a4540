"""API errors of the cluster fixture, rendered as the ``Status`` objects a real API server
returns, so clients see the same ``reason``/``code`` pairs (404 NotFound, 409 AlreadyExists or
Conflict, 422 Invalid, 410 Gone...) that their error handling must cope with on a cluster."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """One failed API call: HTTP ``code``, Kubernetes ``reason`` and a human message."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        """The ``Status`` object a real API server sends for this error."""
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def _resource(group: str, plural: str) -> str:
    """How the API server names a resource in messages: ``plural.group``, or ``plural`` in
    the core group."""
    return f"{plural}.{group}" if group else plural


def _details(group: str, plural: str, name: str) -> dict[str, Any]:
    return {"name": name, "group": group, "kind": plural}


def not_found(group: str, plural: str, name: str) -> ApiError:
    message = f'{_resource(group, plural)} "{name}" not found'
    return ApiError(404, "NotFound", message, details=_details(group, plural, name))


def already_exists(group: str, plural: str, name: str) -> ApiError:
    message = f'{_resource(group, plural)} "{name}" already exists'
    return ApiError(409, "AlreadyExists", message, details=_details(group, plural, name))


def conflict(group: str, plural: str, name: str) -> ApiError:
    message = (
        f'Operation cannot be fulfilled on {_resource(group, plural)} "{name}": the object '
        "has been modified; please apply your changes to the latest version and try again"
    )
    return ApiError(409, "Conflict", message, details=_details(group, plural, name))


def invalid(kind: str, name: str, causes: list[tuple[str, str]]) -> ApiError:
    """422 naming each offending field, as the API server's validation does."""
    text = "; ".join(f"{field}: {message}" for field, message in causes)
    return ApiError(
        422,
        "Invalid",
        f'{kind} "{name}" is invalid: {text}',
        details={
            "name": name,
            "kind": kind,
            "causes": [
                {"reason": "FieldValueInvalid", "message": message, "field": field}
                for field, message in causes
            ],
        },
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)
