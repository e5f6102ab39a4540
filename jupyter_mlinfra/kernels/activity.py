"""When a kernel was last active, read from jupyter_server's kernel manager."""

from __future__ import annotations

from typing import Any

from traitlets import TraitError


def last_activity(manager: Any) -> float | None:
    """Epoch seconds of the kernel's last activity; None until jupyter_server has set it.

    A kernel is in the kernel manager's map before its start (an adoption's, too) has
    returned, and reading the trait before it is set raises instead of answering None."""
    try:
        value = getattr(manager, "last_activity", None)
    except TraitError:
        return None
    return value.timestamp() if value is not None else None
