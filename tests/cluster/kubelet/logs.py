"""Container logs as the kubelet keeps them: stdout and stderr interleaved, line by line with
the time each arrived, one log per container start (so ``previous`` finds the one before);
followers wait for new lines."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone

#: longer lines are split, as the container runtime splits log lines (it uses 16 KiB)
LINE_LIMIT = 16384


class ContainerLog:
    """Lines of one container run: (arrival time in seconds, RFC 3339 stamp, bytes)."""

    def __init__(self) -> None:
        self.lines: list[tuple[float, str, bytes]] = []
        self.finished = False
        self._changed = asyncio.Event()

    def append(self, line: bytes) -> None:
        """One line with its newline, or a part of a longer one (kept as written)."""
        now = time.time()
        stamp = datetime.fromtimestamp(now, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        self.lines.append((now, stamp, line))
        self._wake()

    def finish(self) -> None:
        self.finished = True
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def waiter(self) -> asyncio.Event:
        """Set on the next new line or on finish; take it before reading to miss nothing."""
        return self._changed

    def tail(self, count: int) -> bytes:
        return b"".join(line for _, _, line in self.lines[-count:])


async def capture(output: asyncio.StreamReader, log: ContainerLog) -> None:
    """Read a container's output into its log line by line, whatever it writes: a very long
    line (a progress bar redrawn with ``\\r``) is kept in parts instead of stalling the
    reader; the parts join up again in the log text."""
    pending = b""
    while chunk := await output.read(65536):
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            log.append(line + b"\n")
        while len(pending) > LINE_LIMIT:
            log.append(pending[:LINE_LIMIT])
            pending = pending[LINE_LIMIT:]
    if pending:
        log.append(pending)


class LogBook:
    """Every container run's log, by pod uid and container name."""

    def __init__(self) -> None:
        self.runs: dict[str, dict[str, list[ContainerLog]]] = {}

    def start(self, pod_uid: str, container: str) -> ContainerLog:
        log = ContainerLog()
        self.runs.setdefault(pod_uid, {}).setdefault(container, []).append(log)
        return log

    def of(self, pod_uid: str, container: str) -> list[ContainerLog]:
        return self.runs.get(pod_uid, {}).get(container) or []

    def forget(self, pod_uid: str) -> None:
        for runs in self.runs.pop(pod_uid, {}).values():
            for log in runs:
                log.finish()
