"""Starting a process through ``enter.py``: a container's first process, or a command exec'd
into a running container."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
from pathlib import Path

from .containers import ProcessSpec
from .status import Obj

ENTER = Path(__file__).with_name("enter.py")


def launch_file(folder: Path, spec: ProcessSpec, extra: Obj) -> Path:
    """The launch file ``enter.py`` reads (private: it holds the environment)."""
    path = folder / f"launch-{secrets.token_hex(4)}.json"
    path.touch(mode=0o600)
    path.write_text(
        json.dumps(
            {
                "argv": spec.argv,
                "env": spec.env,
                "cwd": spec.cwd,
                "user": {
                    "uid": spec.user.uid,
                    "gid": spec.user.gid,
                    "groups": list(spec.user.groups),
                },
                **extra,
            }
        )
    )
    return path


async def launch(
    path: Path, *, stdin: int, stdout: int, stderr: int
) -> asyncio.subprocess.Process | str:
    """Run ``enter.py``: the process once its command runs, or why it could not start."""
    report, report_w = os.pipe()
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",
            "-S",
            os.fspath(ENTER),
            os.fspath(path),
            str(report_w),
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            pass_fds=(report_w,),
            start_new_session=True,
            env={},
        )
    finally:
        os.close(report_w)
    try:
        why = await asyncio.to_thread(os.read, report, 4096)
    finally:
        os.close(report)
    if why:
        await process.wait()
        return why.decode(errors="replace")
    return process
