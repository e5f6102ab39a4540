"""The OpenAPI document, written from the wire models and their operations (``models/``).

``python -m jupyter_mlinfra.openapi`` writes ``jupyter_mlinfra/openapi.yaml``, which the server
serves (``GET openapi.json``) and from which ``openapi-typescript`` writes the labextension's
types; a test fails when the committed file is not what this writes.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter

from .models import catalog, jobs, kernels, live
from .models.errors import Error
from .models.operations import API, PATH_PARAMETERS, Operation

OPERATIONS: tuple[Operation, ...] = (*catalog.OPERATIONS, *jobs.OPERATIONS, *kernels.OPERATIONS)
"""Every operation, in the document's order."""

DOCUMENT = Path(__file__).with_name("openapi.yaml")
REF = "#/components/schemas/{model}"

INFO = {
    "title": "jupyter-mlinfra",
    "version": "1",
    "description": (
        "Accelerator flavors, environments, capacity, queued jobs and flavor kernels of a "
        "Jupyter server with the jupyter-mlinfra extension. Paths are relative to the server's "
        "base URL. Every operation needs an authenticated user (a token in the Authorization "
        "header, or a login cookie with its XSRF token; without either: 401) authorized for the "
        "`mlinfra` resource (otherwise 403). Errors, an unknown path under the API's included "
        "(404), are JSON `Error` objects whose `field` names the offending field or query "
        "parameter. A request body larger than `MLInfraApp.max_request_bytes` is a 413; so are "
        "a job's `push`, `env` and `args` over their limits (`max_push_bytes`, "
        "`max_env_bytes`, `max_args_bytes`).\n\n"
        "Generated from the wire models in `jupyter_mlinfra/models/` by "
        "`python -m jupyter_mlinfra.openapi`: edit those, not this file."
    ),
}

ERRORS = {
    400: ("BadRequest", "Malformed request; `field` names the offending field."),
    401: ("Unauthorized", "No credentials, or none this server accepts."),
    403: ("Forbidden", "Authenticated, but not allowed."),
    404: ("NotFound", "No such object."),
    409: (
        "Conflict",
        "The request contradicts the job's state or an earlier idempotent submission.",
    ),
    413: ("TooLarge", "The request body, or the named field, is over its limit."),
    422: ("CannotFit", "The job can never fit this machine or the caller's quota."),
    503: (
        "Unavailable",
        "The local agent cannot be reached or started (its store damaged, say); `message` says "
        "why in one line.",
    ),
}
"""Each error status's shared response: name and meaning."""


def document() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document."""
    extra = (*live.MESSAGES, *kernels.SCHEMAS)
    models = sorted({*_models(OPERATIONS), *extra}, key=lambda m: m.__name__)
    refs, definitions = TypeAdapter.json_schemas(
        [(m, "validation", TypeAdapter(m)) for m in models], ref_template=REF
    )
    schemas = {name: _untitled(schema) for name, schema in definitions.get("$defs", {}).items()}
    ref = {model: refs[(model, "validation")] for model in models}
    schemas["LiveMessage"] = _union([model.__name__ for model in live.MESSAGES], schemas)
    paths: dict[str, dict[str, Any]] = {}
    for operation in OPERATIONS:
        paths.setdefault(operation.path, {})[operation.method] = _operation(operation, ref)
    return {
        "openapi": "3.1.0",
        "info": INFO,
        "servers": [{"url": API}],
        "security": [{"token": []}],
        "paths": paths,
        "x-websockets": {
            path: {
                "summary": spec["summary"],
                "description": spec["description"],
                "message": {"$ref": REF.format(model=spec["message"])},
            }
            for path, spec in live.WEBSOCKET.items()
        },
        "components": {
            "securitySchemes": {
                "token": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "`token <jupyter server or JupyterHub token>`",
                }
            },
            "responses": {name: _error(status) for status, (name, _) in ERRORS.items()},
            "schemas": dict(sorted(schemas.items())),
        },
    }


def _union(names: Iterable[str], schemas: dict[str, Any]) -> dict[str, Any]:
    """One of the schemas ``names``, told apart by their ``type`` field (a constant)."""
    refs = {name: REF.format(model=name) for name in names}
    return {
        "oneOf": [{"$ref": ref} for ref in refs.values()],
        "discriminator": {
            "propertyName": "type",
            "mapping": {
                schemas[name]["properties"]["type"]["const"]: ref for name, ref in refs.items()
            },
        },
    }


def _models(operations: Iterable[Operation]) -> Iterator[Any]:
    yield Error
    for operation in operations:
        if operation.body is not None:
            yield operation.body
        for answer in operation.answers.values():
            if answer.body is not None:
                yield answer.body


def _operation(operation: Operation, ref: dict[Any, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {"operationId": operation.operation_id, "summary": operation.summary}
    if operation.description:
        spec["description"] = operation.description
    parameters = [*_path_parameters(operation.path), *_query_parameters(operation.query)]
    if parameters:
        spec["parameters"] = parameters
    if operation.body is not None:
        spec["requestBody"] = {
            **({"description": operation.body_description} if operation.body_description else {}),
            "required": operation.body_required,
            "content": {"application/json": {"schema": ref[operation.body]}},
        }
    responses: dict[str, Any] = {}
    for status, answer in operation.answers.items():
        schema = ref[answer.body] if answer.body is not None else dict(answer.schema or {})
        responses[str(status)] = {
            "description": answer.description,
            "content": {answer.content_type: {"schema": schema}},
            **({"links": dict(answer.links)} if answer.links else {}),
        }
    for status in (*operation.errors, 401, 403):
        if status in operation.error_descriptions:
            responses[str(status)] = {
                "description": operation.error_descriptions[status],
                "content": {"application/json": {"schema": {"$ref": REF.format(model="Error")}}},
            }
        else:
            responses[str(status)] = {"$ref": f"#/components/responses/{ERRORS[status][0]}"}
    spec["responses"] = responses
    return spec


def _path_parameters(path: str) -> Iterator[dict[str, Any]]:
    for name, pattern in PATH_PARAMETERS.items():
        if f"{{{name}}}" in path:
            yield {
                "name": name,
                "in": "path",
                "required": True,
                "schema": {"type": "string", "pattern": f"^{pattern}$"},
            }


def _query_parameters(query: Any) -> Iterator[dict[str, Any]]:
    if query is None:
        return
    schema = _untitled(TypeAdapter(query).json_schema())
    for name, field in schema["properties"].items():
        description = field.pop("description", None)
        yield {
            "name": name,
            "in": "query",
            **({"description": description} if description else {}),
            "schema": field,
        }


def _error(status: int) -> dict[str, Any]:
    _, description = ERRORS[status]
    response: dict[str, Any] = {"description": description}
    if status == 401:
        response["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
    response["content"] = {"application/json": {"schema": {"$ref": REF.format(model="Error")}}}
    return response


def _untitled(schema: Any) -> Any:
    """A JSON Schema without pydantic's titles (the names of the classes and fields, which
    the document already gives), its descriptions on one line each (docstrings wrap)."""
    if isinstance(schema, list):
        return [_untitled(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    return {
        key: (
            {name: _untitled(field) for name, field in value.items()}
            if key in ("properties", "$defs")
            else " ".join(value.split())
            if key == "description" and isinstance(value, str)
            else _untitled(value)
        )
        for key, value in schema.items()
        if key != "title"
    }


def text() -> str:
    """The document as ``openapi.yaml`` holds it."""
    header = (
        "# Generated by `python -m jupyter_mlinfra.openapi` from jupyter_mlinfra/models/:\n"
        "# edit the models, then run it again.\n"
    )
    return header + yaml.safe_dump(document(), sort_keys=False, width=100, allow_unicode=True)


def main() -> int:
    DOCUMENT.write_text(text())
    print(f"wrote {DOCUMENT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
