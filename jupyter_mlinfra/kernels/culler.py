"""Shuts down idle kernels that hold accelerators, so their devices go back to the pool.

Separate from jupyter_server's culler (``MappingKernelManager.cull_idle_timeout``, for every
kernel): accelerators are scarce, so their kernels usually get a shorter timeout. A kernel that
is not busy and saw no activity for ``timeout`` seconds is shut down through the kernel manager
(releasing its lease) and listed as culled, with why, by ``GET /kernels``. ``warning`` seconds
before, the kernel prints a warning on its stderr; it is never culled sooner than ``warning``
seconds after that warning, and any activity since cancels it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from ..background import Background
from .activity import last_activity
from .service import KernelService

WARNING_REPLY_TIMEOUT = 5.0
OWN_ACTIVITY_SLACK = 0.25
"""Seconds after the warning's reply within which activity is taken for the warning's own."""


def warning_code(message: str) -> str:
    """Code that prints ``message`` to the kernel's stderr stream (shown by a console that
    shows all kernel activity; the mlinfra sidebar surfaces it too, from GET /kernels) and to
    the kernel process's own stderr (the server's log), leaving no names behind."""
    return (
        "(lambda m, s=__import__('sys'): (print(m, file=s.stderr, flush=True), "
        f"print(m, file=s.__stderr__, flush=True)))({message!r})"
    )


@dataclass(frozen=True)
class _Warned:
    """A kernel that was warned: idle since (its last activity before the warning), when the
    warning was answered, and when it is culled unless used meanwhile (epoch seconds)."""

    idle_since: float
    answered: float
    cull_at: float


class IdleCuller(Background):
    def __init__(
        self, kernels: KernelService, *, timeout: float, warning: float, log: logging.Logger
    ) -> None:
        self.kernels = kernels
        self.timeout = timeout
        self.warning = min(warning, timeout)
        self.log = log
        self._warned: dict[str, _Warned] = {}

    @property
    def interval(self) -> float:
        """How often to look: often enough to warn and cull within about a quarter of the
        shortest delay, at most every 30 s."""
        shortest = min(d for d in (self.timeout, self.warning) if d > 0)
        return min(30.0, max(0.1, shortest / 4))

    def start(self) -> None:
        if self.timeout > 0 and self._task is None:
            super().start()
            self.log.info(
                "jupyter_mlinfra: culling accelerator kernels idle for %g s", self.timeout
            )

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except Exception:  # one bad pass must not stop culling for good
                self.log.exception("jupyter_mlinfra: culling idle accelerator kernels failed")

    async def check(self) -> None:
        """One pass: warn, or cull, each idle kernel that holds accelerators."""
        now = time.time()
        seen = set()
        for kernel_id, manager, accelerated in list(self.kernels.cullable()):
            seen.add(kernel_id)
            last = last_activity(manager)
            if not accelerated or last is None or getattr(manager, "execution_state", "") == "busy":
                continue
            warned = self._warned.get(kernel_id)
            if warned is not None and last > warned.answered + OWN_ACTIVITY_SLACK:
                del self._warned[kernel_id]  # used since the warning: start over
                warned = None
            if warned is not None:
                if now >= warned.cull_at:
                    await self._cull(kernel_id, now - warned.idle_since)
                continue
            idle = now - last
            if self.warning > 0 and idle >= self.timeout - self.warning:
                await self._warn(kernel_id, manager, last, now)
            elif self.warning <= 0 and idle >= self.timeout:
                await self._cull(kernel_id, idle)
        for gone in set(self._warned) - seen:
            del self._warned[gone]

    async def _warn(self, kernel_id: str, manager: Any, idle_since: float, now: float) -> None:
        """Warn the kernel, which is culled ``warning`` seconds later at the earliest (a late
        pass still gives its user that long)."""
        cull_at = max(idle_since + self.timeout, now + self.warning)
        message = (
            f"[mlinfra] This kernel has been idle for {now - idle_since:.0f} s; it will be "
            f"shut down in {cull_at - now:.0f} s to release its accelerators. "
            "Run any cell to keep it."
        )
        client = manager.client()
        try:
            client.start_channels()
            msg_id = client.execute(
                warning_code(message), silent=True, store_history=False, allow_stdin=False
            )
            deadline = time.monotonic() + WARNING_REPLY_TIMEOUT
            while time.monotonic() < deadline:
                reply = await client.get_shell_msg(timeout=deadline - time.monotonic())
                if reply["parent_header"].get("msg_id") == msg_id:
                    break
        except Exception as error:  # the kernel may be dying: culling goes on regardless
            self.log.info("mlinfra kernel %s: idle warning not delivered: %s", kernel_id, error)
        finally:
            client.stop_channels()
        self._warned[kernel_id] = _Warned(idle_since, time.time(), cull_at)
        self.log.info("mlinfra kernel %s: idle, warned before culling", kernel_id)

    async def _cull(self, kernel_id: str, idle: float) -> None:
        reason = f"idle for {idle:.0f} s"
        self._warned.pop(kernel_id, None)
        self.log.info("mlinfra kernel %s: culled, %s", kernel_id, reason)
        try:
            await self.kernels.stop(None, kernel_id, reason=reason, state="culled")
        except Exception as error:
            self.log.warning("mlinfra kernel %s: culling failed: %s", kernel_id, error)
