"""Query parameters read strictly, the same way by every route that takes them.

Numbers are ASCII digits only (``str.isdigit`` also takes '²' and '٣', and ``int`` then
fails or reads another script's digits), bounded in length before they are converted;
booleans are true/false/1/0; text is bounded. Anything else is a 400 naming the parameter.
Pure: a route passes its ``JSONErrors.query_argument``.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .errors import InvalidInput, shown

Argument = Callable[[str, str | None], str | None]
"""``query_argument(name, default)`` of a request: the default when the parameter is absent,
its value as sent, perhaps empty, when present."""

_DIGITS = re.compile(r"[0-9]{1,9}")
MAX_TEXT = 255
"""The longest text a query parameter may hold (names of users, flavors, queues, states)."""


def flag(argument: Argument, name: str) -> bool:
    """A boolean parameter (default false)."""
    value = argument(name, "false") or ""
    if value not in ("true", "false", "1", "0"):
        raise InvalidInput(
            f"query parameter {name!r} must be true or false, got {shown(value)}", name
        )
    return value in ("true", "1")


def whole(argument: Argument, name: str, *, minimum: int = 0, maximum: int) -> int | None:
    """A whole-number parameter between ``minimum`` and ``maximum``; None when absent (an
    empty value is not a number)."""
    text = argument(name, None)
    if text is None:
        return None
    if not _DIGITS.fullmatch(text):
        raise InvalidInput(f"{name}: must be a whole number, got {shown(text)}", name)
    value = int(text)
    if not minimum <= value <= maximum:
        raise InvalidInput(f"{name}: must be between {minimum} and {maximum}, got {value}", name)
    return value


def text(argument: Argument, name: str, maximum: int = MAX_TEXT) -> str:
    """A text parameter ('' when absent), at most ``maximum`` characters."""
    value = argument(name, "") or ""
    if len(value) > maximum:
        raise InvalidInput(f"{name}: at most {maximum} characters, got {len(value)}", name)
    return value
