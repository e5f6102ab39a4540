"""How the fixture starts and ends a container's processes (its main process, an exec'd
command, an exec probe): in the container's environment and working directory, each in a
session of its own, so that killing the group also ends whatever the process started."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

from .containers import ProcessSpec


async def start(
    argv: list[str], spec: ProcessSpec, *, stdin: int, stdout: int, stderr: int
) -> asyncio.subprocess.Process:
    """Start ``argv`` as a process of the container described by ``spec``."""
    return await asyncio.create_subprocess_exec(
        *argv,
        env=spec.env,
        cwd=spec.cwd,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
    )


def signal_group(process: asyncio.subprocess.Process, signum: int = signal.SIGKILL) -> None:
    """Signal the process's session; one already gone (or reaped) is no error."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)
