"""Plain text for people: tables, durations and ETAs, shared by the CLI, magics and widgets."""

from __future__ import annotations

import time

Table = list[tuple[str, ...]]


def format_table(rows: Table) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def duration(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``2h10m``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def eta_text(eta: float | None, now: float | None = None) -> str:
    if eta is None:
        return "unknown"
    wait = eta - (time.time() if now is None else now)
    return "now" if wait <= 0 else f"in ~{duration(wait)}"
