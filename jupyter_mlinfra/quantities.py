"""Kubernetes-style quantities ("16Gi", "500m", "2"), so one catalog serves both backends."""

from __future__ import annotations

import math
import re

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50}
_DECIMAL = {"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$")
_CPU = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m)?$")


def parse_memory(value: object) -> int:
    """Bytes from an int or a quantity string; raises ValueError with the accepted forms."""
    if isinstance(value, bool):
        raise ValueError(f"expected bytes or a quantity such as '16Gi', got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"must not be negative, got {value}")
        return value
    if isinstance(value, str):
        match = _QUANTITY.match(value.strip())
        if match:
            number, suffix = match.groups()
            scale = _BINARY.get(suffix or "") or _DECIMAL.get(suffix or "") or 1
            return int(float(number) * scale)
    raise ValueError(f"expected bytes or a quantity such as '16Gi', got {value!r}")


def parse_cpu(value: object) -> float:
    """Cores from a number or a quantity string ("500m" is half a core)."""
    if isinstance(value, bool):
        raise ValueError(f"expected cores such as 4 or '500m', got {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"must be a finite number, got {value!r}")
        if value < 0:
            raise ValueError(f"must not be negative, got {value}")
        return float(value)
    if isinstance(value, str):
        match = _CPU.match(value.strip())
        if match:
            number, milli = match.groups()
            return float(number) / (1000 if milli else 1)
    raise ValueError(f"expected cores such as 4 or '500m', got {value!r}")


def format_memory(size: int) -> str:
    """Readable first, exact where that is cheap: "24Gi", "1.5Gi" (exact with one decimal in
    the largest unit), "1280Mi" (exact in a smaller unit, at most four digits), else one
    rounded decimal of the largest unit ("22.9Gi")."""
    units = [(suffix, _BINARY[suffix]) for suffix in ("Pi", "Ti", "Gi", "Mi", "Ki")]
    largest = next(((suffix, scale) for suffix, scale in units if size >= scale), None)
    if largest is None:
        return str(size)
    suffix, scale = largest
    if (size * 10) % scale == 0:
        return f"{size / scale:g}{suffix}"
    for smaller, smaller_scale in units:
        if smaller_scale < scale and size % smaller_scale == 0 and size // smaller_scale < 10_000:
            return f"{size // smaller_scale}{smaller}"
    return f"{size / scale:.1f}{suffix}"


def format_cpu(cores: float) -> str:
    """Whole cores as "4", fractions as millicores ("500m")."""
    return str(int(cores)) if cores == int(cores) else f"{round(cores * 1000)}m"
