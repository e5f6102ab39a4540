"""The REST API's wire models: every request and response body, defined once.

Each model is a ``TypedDict`` whose fields carry their constraints and descriptions
(``Annotated[..., Field(...)]``), one module per API area (``catalog``, ``jobs``, ``kernels``,
``errors``; ``live`` for the live-updates websocket and the agent's change stream; ``agent`` for
the local agent's own routes), each with the operations of its area
(``operations.Operation``). From them come:

- the OpenAPI document (``python -m jupyter_mlinfra.openapi`` writes ``openapi.yaml``);
- the validation of request bodies (``validation.validated``): strict, with 4xx messages that
  name the field;
- the Python client's return types (``client.py``), and what mypy checks every producer of a
  body against (``Job.to_json`` returns ``models.jobs.Job``);
- the labextension's TypeScript types, generated from the OpenAPI document by
  ``openapi-typescript`` (``labextension/src/schema.d.ts``).

Why ``TypedDict`` validated by pydantic v2 rather than ``BaseModel`` classes: the wire shape is
plain JSON objects, which the whole code (text, widgets, the CLI's ``--json``) already reads as
dicts; a ``TypedDict`` is the static type of exactly that dict, so the client stays standard
library at run time (it imports fast inside kernels) while mypy checks every producer and
consumer, and pydantic (``TypeAdapter``) validates requests and writes the JSON Schema.
"""

from __future__ import annotations

from pydantic import ConfigDict

WIRE = ConfigDict(extra="forbid", strict=True)
"""Every model: unknown fields are refused, and no value is coerced ("1" is not a number)."""
