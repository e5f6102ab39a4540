"""Objects checked against the official Kubernetes schemas (``kubernetes-validate``) of the
newest version it knows, strictly: a field the schema lacks is an error, as a real API
server's strict field validation makes it."""

from __future__ import annotations

from typing import Any

import kubernetes_validate

SCHEMA_VERSION = kubernetes_validate.latest_version()


def validate(obj: dict[str, Any]) -> None:
    """Raise ``kubernetes_validate.ValidationError`` unless ``obj`` is a valid object."""
    kubernetes_validate.validate(obj, SCHEMA_VERSION, strict=True)
