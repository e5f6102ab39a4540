"""Kubernetes-style quantities: parsing memory and CPU, and formatting them back."""

from __future__ import annotations

import pytest

from jupyter_mlinfra.quantities import format_cpu, format_memory, parse_cpu, parse_memory

Ki, Mi, Gi, Ti, Pi = 2**10, 2**20, 2**30, 2**40, 2**50

MEMORY_FORMS = "expected bytes or a quantity such as '16Gi', got {!r}"
CPU_FORMS = "expected cores such as 4 or '500m', got {!r}"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0),
        (1024, 1024),
        (16 * Gi, 16 * Gi),
        ("100", 100),
        ("1Ki", Ki),
        ("2Mi", 2 * Mi),
        ("16Gi", 16 * Gi),
        ("1.5Gi", 3 * Gi // 2),
        ("3Ti", 3 * Ti),
        ("1Pi", Pi),
        ("2k", 2_000),
        ("500M", 500_000_000),
        ("8G", 8_000_000_000),
        ("1T", 10**12),
        ("1P", 10**15),
        ("  2Mi ", 2 * Mi),
    ],
)
def test_parse_memory(value: object, expected: int) -> None:
    assert parse_memory(value) == expected
    assert isinstance(parse_memory(value), int)


@pytest.mark.parametrize(
    "value", [True, False, 1.5, None, "", "16GB", "16 Gi", "Gi", "-1Gi", "1e3", "1.Gi", [1]]
)
def test_parse_memory_rejects_other_forms(value: object) -> None:
    with pytest.raises(ValueError) as caught:
        parse_memory(value)
    assert str(caught.value) == MEMORY_FORMS.format(value)


def test_parse_memory_rejects_negative_bytes() -> None:
    with pytest.raises(ValueError) as caught:
        parse_memory(-1)
    assert str(caught.value) == "must not be negative, got -1"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0.0),
        (4, 4.0),
        (0.5, 0.5),
        ("2", 2.0),
        ("1.5", 1.5),
        ("500m", 0.5),
        ("100m", 0.1),
        (" 250m ", 0.25),
    ],
)
def test_parse_cpu(value: object, expected: float) -> None:
    assert parse_cpu(value) == expected
    assert isinstance(parse_cpu(value), float)


@pytest.mark.parametrize("value", [True, False, None, "", "two", "1 core", "-1", "m", "5Gi", [4]])
def test_parse_cpu_rejects_other_forms(value: object) -> None:
    with pytest.raises(ValueError) as caught:
        parse_cpu(value)
    assert str(caught.value) == CPU_FORMS.format(value)


@pytest.mark.parametrize(("value", "shown"), [(-1, "-1"), (-0.5, "-0.5")])
def test_parse_cpu_rejects_negative_numbers(value: float, shown: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_cpu(value)
    assert str(caught.value) == f"must not be negative, got {shown}"


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (0, "0"),
        (512, "512"),
        (Ki, "1Ki"),
        (1536, "1.5Ki"),  # exact with one decimal in the largest unit
        (3 * Mi // 2, "1.5Mi"),
        (5 * Gi // 4, "1280Mi"),  # not exact with one decimal: exact in a smaller unit
        (Gi + 1, "1.0Gi"),  # exact nowhere short: rounded
        (Mi, "1Mi"),
        (16 * Gi, "16Gi"),
        (1024 * Gi, "1Ti"),
        (3 * Pi, "3Pi"),
        (3 * Gi // 2, "1.5Gi"),
        (47 * Gi // 2, "23.5Gi"),
        (3 * Ti // 2, "1.5Ti"),
    ],
)
def test_format_memory(size: int, expected: str) -> None:
    assert format_memory(size) == expected


@pytest.mark.parametrize("text", ["1Ki", "2Mi", "16Gi", "3Ti", "1Pi", "1.5Gi", "512"])
def test_format_memory_round_trips(text: str) -> None:
    assert format_memory(parse_memory(text)) == text


@pytest.mark.parametrize(
    ("cores", "expected"),
    [(0, "0"), (4, "4"), (4.0, "4"), (0.5, "500m"), (0.25, "250m"), (0.1, "100m"), (1.5, "1500m")],
)
def test_format_cpu(cores: float, expected: str) -> None:
    assert format_cpu(cores) == expected


@pytest.mark.parametrize("text", ["4", "500m", "1500m", "100m"])
def test_format_cpu_round_trips(text: str) -> None:
    assert format_cpu(parse_cpu(text)) == text
