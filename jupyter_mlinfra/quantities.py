"""Kubernetes-style quantities ("16Gi", "500m", "2"), so one catalog serves both backends."""

from __future__ import annotations

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
    """The shortest exact binary quantity ("24Gi"), else one decimal place ("23.5Gi")."""
    for suffix in ("Pi", "Ti", "Gi", "Mi", "Ki"):
        scale = _BINARY[suffix]
        if size >= scale:
            if size % scale == 0:
                return f"{size // scale}{suffix}"
            if suffix in ("Gi", "Ti", "Pi"):
                return f"{size / scale:.1f}{suffix}"
    return str(size)


def format_cpu(cores: float) -> str:
    """Whole cores as "4", fractions as millicores ("500m")."""
    return str(int(cores)) if cores == int(cores) else f"{round(cores * 1000)}m"
