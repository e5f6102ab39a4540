"""Validation of every object a client writes: built-in kinds against the official Kubernetes
schemas (``kubernetes-validate``, offline), custom kinds against their CRD's openAPIV3Schema,
plus the few semantic rules tests trip over (names, Job restart policy). A refusal is a 422
``Invalid`` naming the field, as on a real cluster."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Any

import jsonschema
import kubernetes_validate

from .errors import invalid
from .resources import ResourceType
from .store import Obj, meta

#: the newest Kubernetes version whose schemas kubernetes-validate ships
KUBERNETES_VERSION = kubernetes_validate.latest_version()

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
#: kinds whose names must be DNS labels (63 characters, no dots), not just subdomains
_LABEL_NAMED = {("", "Namespace"), ("", "Service")}


def _field(path: Iterable[Any]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text or "<root>"


def _name_causes(rtype: ResourceType, obj: Obj) -> list[tuple[str, str]]:
    name = meta(obj).get("name", "")
    label = (rtype.group, rtype.kind) in _LABEL_NAMED
    pattern, limit = (_LABEL, 63) if label else (_SUBDOMAIN, 253)
    if len(name) > limit or not pattern.match(name):
        what = "RFC 1123 label" if label else "RFC 1123 subdomain"
        return [
            (
                "metadata.name",
                f'Invalid value: "{name}": a lowercase {what} must consist '
                "of lower case alphanumeric characters, '-' or '.', and must start and end "
                "with an alphanumeric character",
            )
        ]
    return []


def _job_causes(obj: Obj) -> list[tuple[str, str]]:
    policy = obj.get("spec", {}).get("template", {}).get("spec", {}).get("restartPolicy")
    if policy not in ("OnFailure", "Never"):
        return [
            (
                "spec.template.spec.restartPolicy",
                f'Unsupported value: "{policy}": supported values: "OnFailure", "Never"',
            )
        ]
    return []


def _pod_causes(spec: dict[str, Any], prefix: str) -> list[tuple[str, str]]:
    causes = []
    names = [c.get("name") for c in [*spec.get("initContainers", []), *spec.get("containers", [])]]
    if not spec.get("containers"):
        causes.append((f"{prefix}.containers", "Required value"))
    for index, name in enumerate(names):
        if name in names[:index]:
            causes.append((f"{prefix}.containers[{index}].name", f'Duplicate value: "{name}"'))
    return causes


def _openapi_to_jsonschema(schema: Any) -> Any:
    """CRD schemas say ``nullable: true`` where JSON Schema wants ``null`` among the types."""
    if isinstance(schema, list):
        return [_openapi_to_jsonschema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted = {key: _openapi_to_jsonschema(value) for key, value in schema.items()}
    if converted.get("nullable") and isinstance(converted.get("type"), str):
        converted["type"] = [converted["type"], "null"]
    return converted


@functools.lru_cache(maxsize=64)
def _crd_validator(rtype: ResourceType) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(_openapi_to_jsonschema(rtype.schema))


def validate(rtype: ResourceType, obj: Obj) -> None:
    """Raise 422 Invalid listing the offending fields, or return quietly."""
    causes = _name_causes(rtype, obj)
    if rtype.schema is not None:
        errors = sorted(_crd_validator(rtype).iter_errors(obj), key=lambda e: list(e.path))
        causes += [(_field(e.absolute_path), e.message) for e in errors[:10]]
    else:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            causes.append((_field(error.path), error.message))
    if (rtype.group, rtype.kind) == ("batch", "Job"):
        causes += _job_causes(obj)
        causes += _pod_causes(
            obj.get("spec", {}).get("template", {}).get("spec", {}), "spec.template.spec"
        )
    elif (rtype.group, rtype.kind) == ("", "Pod"):
        causes += _pod_causes(obj.get("spec", {}), "spec")
    if causes:
        raise invalid(rtype.kind, meta(obj).get("name", ""), causes)
