"""Request bodies validated against their wire model, strictly; the first problem becomes one
``InvalidInput`` (HTTP 400) whose message and ``field`` name what was wrong, in words rather
than pydantic's ("nodes: must be between 1 and 64, got 65").

``field`` is the path of named fields down to the value at fault (``retry.max_restarts``),
stopping at a map or list (``env`` for a bad variable in ``env``); an unknown field is named
whole (``retry.others``).
"""

from __future__ import annotations

from functools import cache
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from ..errors import InvalidInput, shown
from .patterns import WORDS

T = TypeVar("T")

KINDS = {
    "int_type": "a whole number",
    "string_type": "a string",
    "float_type": "a number",
    "bool_type": "true or false",
    "list_type": "a list",
    "dict_type": "an object",
}
"""What a value of the wrong type should have been."""


_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def _adapter(model: Any) -> TypeAdapter[Any]:
    """One adapter per model: building one compiles its validator."""
    if model not in _ADAPTERS:
        _ADAPTERS[model] = TypeAdapter(model)
    return _ADAPTERS[model]


@cache
def _schema(model: Any) -> dict[str, Any]:
    schema: dict[str, Any] = _adapter(model).json_schema()
    return schema


def validated(model: type[T], body: Any) -> T:
    """``body`` (parsed JSON) as ``model``, or ``InvalidInput`` naming the first problem."""
    try:
        value: T = _adapter(model).validate_python(body)
    except ValidationError as error:
        raise problem(model, error) from None
    return value


def problem(model: Any, error: ValidationError) -> InvalidInput:
    """The first of ``error``'s problems, unknown fields first (as a reader of the request
    would notice them: a misspelt field explains the rest)."""
    errors = sorted(error.errors(), key=lambda e: e["type"] != "extra_forbidden")
    first = errors[0]
    loc = tuple(first["loc"])
    if not loc and first["type"] in ("dict_type", "model_type"):
        return InvalidInput("the request body must be a JSON object", None)
    field, rest, node = _field(_schema(model), loc)
    if first["type"] == "extra_forbidden":
        name = ".".join(str(part) for part in loc)
        known = ", ".join(_properties(_schema(model), loc[:-1]))
        return InvalidInput(f"{shown(name)}: unknown field; known fields: {known}", name[:64])
    return InvalidInput(_message(field, rest, first, node), field or None)


def _field(
    schema: dict[str, Any], loc: tuple[Any, ...]
) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
    """The named fields' path in ``loc``, the rest (list indices, map keys), and the schema of
    the value at fault."""
    names: list[str] = []
    node, rest = schema, ()
    for n, part in enumerate(loc):
        node = _object(schema, node)
        properties = node.get("properties", {})
        if not rest and isinstance(part, str) and part in properties:
            names.append(part)
            node = properties[part]
            continue
        rest = rest or loc[n:]
        if loc[n + 1 : n + 2] == ("[key]",):  # the key itself is at fault
            return ".".join(names), rest, _object(schema, node.get("propertyNames", {}))
        if isinstance(part, int):
            node = node.get("items", {})
        else:  # a map's value, or an unknown field (additionalProperties: false)
            values = node.get("additionalProperties")
            node = values if isinstance(values, dict) else {}
    return ".".join(names), rest, _object(schema, node)


def _object(root: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """``node`` with a reference followed and ``X | None`` unwrapped to ``X``."""
    options = node.get("anyOf", ())
    if {"type": "null"} in options:
        node = next(option for option in options if option != {"type": "null"})
    ref = node.get("$ref", "")
    if ref:
        node = root["$defs"][ref.rsplit("/", 1)[-1]]
    return node


def _properties(root: dict[str, Any], loc: tuple[Any, ...]) -> list[str]:
    node = root
    for part in loc:
        node = _object(root, node)["properties"][part]
    return list(_object(root, node).get("properties", {}))


def _message(field: str, rest: tuple[Any, ...], error: ErrorDetails, node: dict[str, Any]) -> str:
    kind, context, value = error["type"], error.get("ctx", {}), error["input"]
    where = field or "the request body"
    if rest and rest[-1] == "[key]":  # a map's key: env's variable names, push's
        return f"{where}: {shown(str(rest[0]))} is not {_words(context)}"
    if rest:
        where += "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in rest)
    if kind == "missing":
        return f"{where}: required"
    if kind in KINDS:
        return f"{where}: must be {KINDS[kind]}, got {type(value).__name__}"
    if kind == "string_pattern_mismatch":
        return f"{where}: must be {_words(context)}, got {shown(value)}"
    if kind == "string_too_long":
        limit = context["max_length"]
        return f"{where}: must be at most {limit} characters, got {len(value)}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        return f"{where}: must be {_range(node)}, got {value!r}"
    if kind in ("literal_error", "enum"):
        return f"{where}: must be one of {context['expected']}, got {shown(str(value))}"
    return f"{where}: {error['msg']}"


def _range(node: dict[str, Any]) -> str:
    """A number's bounds in words: "between 1 and 64", "more than 0 and at most 1e+09"."""
    low, high = node.get("minimum"), node.get("maximum")
    if low is not None and high is not None:
        return f"between {low:g} and {high:g}"
    words = [
        f"{word} {node[key]:g}"
        for key, word in (
            ("minimum", "at least"),
            ("exclusiveMinimum", "more than"),
            ("maximum", "at most"),
            ("exclusiveMaximum", "less than"),
        )
        if key in node
    ]
    return " and ".join(words)


def _words(context: dict[str, Any]) -> str:
    pattern = context.get("pattern", "")
    return WORDS.get(pattern, f"text matching {pattern}")
