"""Request bodies and query parameters read strictly (``json_body.py``, ``arguments.py``): every
malformed input is an ``InvalidInput`` (400) or ``TooLarge`` (413) naming where it is."""

from __future__ import annotations

from typing import Any

import pytest

from jupyter_mlinfra.arguments import flag, text, whole
from jupyter_mlinfra.errors import InvalidInput, MLInfraError, TooLarge
from jupyter_mlinfra.json_body import MAX_DEPTH, parse_json_body

LIMIT = 1024


def refused(raw: bytes, limit: int = LIMIT) -> MLInfraError:
    with pytest.raises(MLInfraError) as raised:
        parse_json_body(raw, limit)
    return raised.value


def test_plain_json_and_an_empty_body_pass() -> None:
    assert parse_json_body(b'{"code": "print(1)", "env": {"A": "\\u00e9"}}', LIMIT) == {
        "code": "print(1)",
        "env": {"A": "é"},
    }
    assert parse_json_body(b"", LIMIT) == {}
    assert parse_json_body(b"  \n", LIMIT) == {}


@pytest.mark.parametrize(
    ("raw", "field", "words"),
    [
        (b'{"code": "\xff"}', None, "not UTF-8 (invalid byte at offset 10)"),
        (b'{"code": "\xed\xa0\x80"}', None, "not UTF-8"),  # a surrogate, UTF-8-encoded
        (b'{"code": "\\ud800"}', "code", "code: not valid Unicode (a lone surrogate"),
        (b'{"env": {"A": "x\\udfff"}}', "env", "env.A: not valid Unicode"),
        (b'{"env": {"\\udc00": "x"}}', "env", "a field name in env: not valid Unicode"),
        (b'{"\\ud800": 1}', None, "a field name in the request body: not valid Unicode"),
        (b'{"args": ["a", "\\ud83d"]}', "args", "args[1]: not valid Unicode"),
        (b'{"max_runtime_seconds": NaN}', None, "NaN is not a JSON value"),
        (b'{"max_runtime_seconds": -Infinity}', None, "-Infinity is not a JSON value"),
        (b'{"max_runtime_seconds": 1e999}', "max_runtime_seconds", "inf is not a finite"),
        (b'{"nodes": 1' + b"0" * 5000 + b"}", None, "not JSON"),
        (b'{"code": "x"', None, "not JSON"),
        (b"\xef\xbb\xbf{}", None, "not JSON"),  # a byte order mark
    ],
)
def test_malformed_bodies_are_400s_saying_where(raw: bytes, field: str | None, words: str) -> None:
    error = refused(raw, limit=10_000)
    assert isinstance(error, InvalidInput) and error.status == 400
    assert error.field == field
    assert words in error.message, error.message


def test_nesting_is_bounded_however_deep() -> None:
    deep = b'{"retry": ' + b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1) + b"}"
    error = refused(deep)
    assert error.field == "retry" and f"nests deeper than {MAX_DEPTH} levels" in error.message
    abyss = b"[" * 100_000 + b"]" * 100_000  # deeper than the parser's recursion
    error = refused(abyss, limit=len(abyss))
    assert error.status == 400 and "nests deeper" in error.message
    ok = b'{"retry": {"on_exit_codes": [1]}}'
    assert parse_json_body(ok, LIMIT) == {"retry": {"on_exit_codes": [1]}}


def test_a_body_over_the_limit_is_a_413_naming_the_setting() -> None:
    error = refused(b'{"code": "' + b"x" * LIMIT + b'"}')
    assert isinstance(error, TooLarge) and error.status == 413
    assert "more than the limit of 1024 (MLInfraApp.max_request_bytes)" in error.message


def argument(**given: str) -> Any:
    return lambda name, default: given.get(name, default)


UNICODE_DIGITS = ["\u00b2", "\u0663", "\uff11", "\u0967"]
"""'²', Arabic-Indic three, fullwidth one, Devanagari one: ``str.isdigit`` takes them all."""


@pytest.mark.parametrize("value", [*UNICODE_DIGITS, "+1", "-1", "1.0", "1e3", "0x10", "9" * 10])
def test_whole_numbers_are_ascii_digits_only(value: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        whole(argument(limit=value), "limit", maximum=10**9)
    assert raised.value.field == "limit" and raised.value.message.startswith("limit: ")


def test_whole_numbers_flags_and_text() -> None:
    assert whole(argument(tail="007"), "tail", maximum=10) == 7
    assert whole(argument(), "tail", maximum=10) is None
    with pytest.raises(InvalidInput, match="between 1 and 10, got 11"):
        whole(argument(n="11"), "n", minimum=1, maximum=10)
    assert flag(argument(all="1"), "all") is True
    assert flag(argument(), "all") is False
    for value in ("True", "yes", *UNICODE_DIGITS):
        with pytest.raises(InvalidInput) as raised:
            flag(argument(all=value), "all")
        assert raised.value.field == "all"
    with pytest.raises(InvalidInput, match="owner: at most 255 characters, got 256"):
        text(argument(owner="x" * 256), "owner")
