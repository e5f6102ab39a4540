"""Label and field selectors, in their query-string form (``app=x,tier in (a,b),!gpu``) and
their object form (``matchLabels``/``matchExpressions``), as the API server evaluates them."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .errors import bad_request

Requirement = Callable[[dict[str, str]], bool]

_SET = re.compile(r"^\s*([\w./-]+)\s+(in|notin)\s*\(([^)]*)\)\s*$")
_EQ = re.compile(r"^\s*([\w./-]+)\s*(==|=|!=)\s*([\w./-]*)\s*$")
_EXISTS = re.compile(r"^\s*(!?)\s*([\w./-]+)\s*$")


def _split(selector: str) -> list[str]:
    """Split on commas that are not inside ``in (...)`` parentheses."""
    parts, depth, current = [], 0, ""
    for char in selector:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [part for part in parts if part.strip()]


def _requirement(text: str) -> Requirement:
    if match := _SET.match(text):
        key, op, values = match.groups()
        allowed = {value.strip() for value in values.split(",") if value.strip()}
        if op == "in":
            return lambda labels: labels.get(key) in allowed
        return lambda labels: labels.get(key) not in allowed
    if match := _EQ.match(text):
        key, op, value = match.groups()
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if match := _EXISTS.match(text):
        negate, key = match.groups()
        if negate:
            return lambda labels: key not in labels
        return lambda labels: key in labels
    raise bad_request(f"unable to parse requirement: {text.strip()!r}")


def parse_label_selector(selector: str | None) -> Requirement:
    """A predicate over a label dict; raises 400 for a selector the API server would refuse."""
    requirements = [_requirement(part) for part in _split(selector or "")]
    return lambda labels: all(requirement(labels) for requirement in requirements)


def matches_label_selector(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """Evaluate a LabelSelector object; ``None`` selects nothing, ``{}`` selects everything."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, op, values = expression["key"], expression["operator"], expression.get("values")
        if not _expression_holds(labels, key, op, values or []):
            return False
    return True


def _expression_holds(labels: dict[str, str], key: str, op: str, values: list[str]) -> bool:
    if op == "In":
        return labels.get(key) in values
    if op == "NotIn":
        return labels.get(key) not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    if op in ("Gt", "Lt"):
        value = labels.get(key)
        if value is None or not value.isdigit():
            return False
        return int(value) > int(values[0]) if op == "Gt" else int(value) < int(values[0])
    return False


def node_selector_term_matches(term: dict[str, Any], labels: dict[str, str]) -> bool:
    """One nodeSelectorTerm of a required node affinity (its matchExpressions)."""
    return all(
        _expression_holds(labels, e["key"], e["operator"], e.get("values") or [])
        for e in term.get("matchExpressions") or []
    )


def _field(obj: dict[str, Any], path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "" if value is None else str(value)


def _field_check(path: str, op: str, value: str) -> Callable[[dict[str, Any]], bool]:
    if op == "!=":
        return lambda obj: _field(obj, path) != value
    return lambda obj: _field(obj, path) == value


def parse_field_selector(selector: str | None) -> Callable[[dict[str, Any]], bool]:
    """A predicate over whole objects for ``metadata.name=x,status.phase!=Running`` (any dotted
    path: the real server allows a fixed set per kind, a superset is harmless for tests)."""
    checks: list[Callable[[dict[str, Any]], bool]] = []
    for part in _split(selector or ""):
        match = _EQ.match(part)
        if not match:
            raise bad_request(f"invalid field selector: {part.strip()!r}")
        checks.append(_field_check(*match.groups()))
    return lambda obj: all(check(obj) for check in checks)
