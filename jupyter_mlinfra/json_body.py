"""Untrusted JSON request bodies, read one way by every HTTP surface (``JSONErrors.json_body``).

Bounded in size and nesting, strict UTF-8 and strict JSON, and made only of text that can be
encoded again: what passes can be stored in SQLite, put in a process's environment and sent
back with ``json.dumps``, so a malformed body is a 400 (or a 413) naming the field here, never
a 500 later. Pure: no tornado.
"""

from __future__ import annotations

import json
import math
from typing import Any

from .errors import InvalidInput, TooLarge

MAX_DEPTH = 16
"""How deeply objects and arrays may nest: the deepest valid request (a submission's
``retry.on_exit_codes``) nests 3 levels."""


def check_size(raw: bytes, limit: int) -> None:
    """413 when the body is larger than ``limit`` (``MLInfraApp.max_request_bytes``)."""
    if len(raw) > limit:
        raise TooLarge(
            f"the request body has {len(raw)} bytes, more than the limit of {limit} "
            "(MLInfraApp.max_request_bytes)",
            None,
        )


def parse_json_body(raw: bytes, limit: int) -> Any:
    """The JSON value of a request body; an empty body is ``{}``."""
    check_size(raw, limit)
    if not raw.strip():
        return {}
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidInput(
            f"the request body is not UTF-8 (invalid byte at offset {error.start})", None
        ) from None
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise InvalidInput(f"the request body nests deeper than {MAX_DEPTH} levels", None) from None
    except ValueError as error:
        raise InvalidInput(f"the request body is not JSON: {error}", None) from None
    _check_plain(value)
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _check_plain(value: Any) -> None:
    """Walk ``value`` without recursion: nesting within MAX_DEPTH, finite numbers, and text
    that encodes as UTF-8 (JSON's ``\\ud800`` escapes can name a lone surrogate, which
    SQLite, the OS and UTF-8 writers all refuse)."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth >= MAX_DEPTH:
                raise InvalidInput(
                    f"{path or 'the request body'}: nests deeper than {MAX_DEPTH} levels",
                    _field(path),
                )
            if isinstance(item, dict):
                for key, child in item.items():
                    _check_text(key, f"a field name in {path or 'the request body'}", path)
                    name = key if len(key) <= 64 else key[:64] + "..."
                    stack.append((child, f"{path}.{name}" if path else name, depth + 1))
            else:
                stack.extend((child, f"{path}[{n}]", depth + 1) for n, child in enumerate(item))
        elif isinstance(item, str):
            _check_text(item, path or "the request body", path)
        elif isinstance(item, float) and not math.isfinite(item):
            raise InvalidInput(f"{path}: {item} is not a finite number", _field(path))


def _check_text(text: str, where: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise InvalidInput(
            f"{where}: not valid Unicode (a lone surrogate at character {error.start})",
            _field(path),
        ) from None


def _field(path: str) -> str | None:
    """The top-level field a path is in: ``env`` for ``env.HOME``, ``args`` for ``args[2]``."""
    if not path:
        return None
    return path.split(".", 1)[0].split("[", 1)[0]
