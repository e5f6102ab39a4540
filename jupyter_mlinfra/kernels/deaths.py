"""Why kernels died by themselves: JupyterLab restarts a dead kernel and says only that it
"appears to have died"; the provisioners, which see the exit (a process's signal, a pod's
OOMKilled or eviction), note it here, and ``GET kernels`` shows it as the kernel's
``last_exit`` until the kernel ends. A death noted is pushed to the browser tabs as a change of
the kernels, which they then read: they never ask again and again whether one came.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Container
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..models.kernels import LastExit


def process_exit_reason(code: int) -> str:
    """Why the kernel process ended, from its exit code (negative: the signal that ended it)."""
    if code >= 0:
        return f"the kernel process exited with code {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    text = f"the kernel process was killed by {name}"
    if -code == signal.SIGKILL:  # what the OOM killer sends, and the usual cause in a notebook
        text += " (as the out-of-memory killer does when memory runs out)"
    return text


class Deaths:
    """The last death of each kernel that has one."""

    def __init__(self, changed: Callable[[], None]) -> None:
        self._last: dict[str, tuple[float, str]] = {}
        self._changed = changed
        """Told of each death noted (from any thread)."""

    def died(self, kernel_id: str, reason: str, alive_since: float) -> None:
        """Note that the kernel, alive since ``alive_since``, died: once per death, since
        jupyter_client asks a dead kernel whether it lives again and again until it restarts."""
        last = self._last.get(kernel_id)
        if last is None or last[0] < alive_since:
            self._last[kernel_id] = (time.time(), reason)
            self._changed()

    def forget_all_but(self, kernel_ids: Container[str]) -> None:
        """Drop the deaths of kernels that are gone."""
        for kernel_id in [k for k in self._last if k not in kernel_ids]:
            del self._last[kernel_id]

    def to_json(self, kernel_id: str) -> LastExit | None:
        last = self._last.get(kernel_id)
        return None if last is None else {"at": last[0], "reason": last[1]}
