"""One control-plane process: started with its log in a file, waited for, stopped by its pid.

Every component logs to ``<logs>/<name>.log`` (appended across restarts), so a failing test can
print what the API server or a controller said; a component that dies while something waits
for it fails that wait at once, with the end of its log."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

STOP_GRACE_SECONDS = 20


class ComponentFailed(RuntimeError):
    """A component exited, or never became ready; the message ends with its log's last lines."""


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file ('' if there is none yet)."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class Component:
    """A binary with its arguments; ``start``/``stop`` may repeat (an API server restart)."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log: Path,
        env: dict[str, str] | None = None,
        stop_grace: float = STOP_GRACE_SECONDS,
    ) -> None:
        self.name = name
        self.stop_grace = stop_grace
        self.argv = list(argv)
        self.log = log
        self.env = env
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        assert not self.running(), f"{self.name} is already running"
        with self.log.open("ab") as out:
            out.write(f"\n==== {self.name} started: {' '.join(self.argv)}\n".encode())
            out.flush()
            # Its own session: a Ctrl-C in the developer's terminal reaches the Python process
            # only, which then stops the components in order.
            self._process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(self.env or {})},
                start_new_session=True,
            )

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after ``stop_grace`` seconds; waits until the process is gone."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(self.stop_grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._process = None

    def failed(self, what: str) -> ComponentFailed:
        return ComponentFailed(f"{self.name} {what}; the end of {self.log}:\n{tail(self.log)}")

    def wait_until(self, check: Callable[[], bool], what: str, timeout: float) -> None:
        """Poll ``check`` until it holds; fail early if the process exits meanwhile."""
        deadline = time.monotonic() + timeout
        while not check():
            if not self.running():
                raise self.failed(f"exited ({self._exit_code()}) before it was {what}")
            if time.monotonic() > deadline:
                raise self.failed(f"was not {what} within {timeout:.0f} s")
            time.sleep(0.2)

    def _exit_code(self) -> str:
        code = self._process.poll() if self._process else None
        return "never started" if code is None else f"exit code {code}"
