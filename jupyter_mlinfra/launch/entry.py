"""The in-job entry point: what every rank process of a job runs.

    python /path/to/entry.py [--gate] JOB_DIR

It runs under the environment's own Python (a virtual environment, a container image), which
may not have jupyter_mlinfra installed, so it imports only the standard library, plus
cloudpickle when variables are pushed or pulled. Keep it that way: no import of
jupyter_mlinfra, nothing newer than the standard library of Python 3.8.

``JOB_DIR/job.json``, written by the runner::

    {"code": "...", "script": "", "args": [], "push_file": "push.json", "pull": ["loss"],
     "cpus": [0, 1], "working_dir": "/home/me/project"}

The rank's identity (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ...) comes from the environment
the runner sets from ``contract.py``. The entry point pins itself to ``cpus`` (or to
``MLINFRA_CPUS``, comma-separated, which the runner sets per node), changes to
``working_dir``, loads the pushed variables (a JSON object of name -> base64 of the value's
cloudpickle, as the client sent them: nobody in between unpickles user data) into a fresh
``__main__`` namespace, runs the cell (compiled as ``<cell>``) or the script (with
``sys.argv = [script, *args]``), and on success rank 0 writes the pulled variables to
``JOB_DIR/pull.pkl`` (one cloudpickled dict). Once set up, just before the job's code, every
rank writes ``JOB_DIR/rank-<RANK>.ready``: the agent counts a gang as running when all have.
Every rank always writes
``JOB_DIR/rank-<RANK>.result.json`` = ``{"exit_code", "traceback", "started", "finished"}``
and exits with that code: 0 on success, 1 on an exception (its traceback is printed and
saved), ``n`` for ``SystemExit(n)``, 143 for SIGTERM or KeyboardInterrupt (``finally``
blocks of the job run first).

With ``--gate`` (the local agent's ranks) it first waits for the agent to record it: one byte
on stdin lets it run; stdin closed without it (the agent died before recording the rank, or
gave up the gang's start) makes it exit with 75 having run nothing, so no rank ever runs that
the agent could not find again after a crash.
"""

from __future__ import annotations

import base64
import contextlib
import importlib
import json
import linecache
import os
import runpy
import signal
import sys
import time
import traceback
import types
from typing import Any

CELL = "<cell>"
TERMINATED = 143
"""128 + SIGTERM, what a shell reports for a process that SIGTERM ended."""
GO = b"1"
"""What the local agent writes to a gated rank's stdin once it recorded the rank."""
NOT_STARTED = 75
"""The exit code of a gated rank the agent never let run (EX_TEMPFAIL: nothing ran)."""


class Terminated(BaseException):
    """Raised in the job by SIGTERM, so its ``finally`` blocks run; not an ``Exception``, so
    a job's ``except Exception`` does not swallow it."""


class JobError(Exception):
    """A problem with the job itself (its description, pushed or pulled variables), reported
    as one line rather than a traceback through this file."""


def _on_sigterm(signum: int, frame: Any) -> None:
    # once: a second SIGTERM while the job's finally blocks run must not interrupt them; the
    # runner sends SIGKILL after its grace period if they hang
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated()


def _streams() -> None:
    """Line-buffered output, so the runner's log files show each line as it is printed."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            with contextlib.suppress(ValueError, OSError):  # a detached or odd stream
                reconfigure(line_buffering=True)


def _write_atomically(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)


def _load_job(job_dir: str) -> dict[str, Any]:
    path = os.path.join(job_dir, "job.json")
    try:
        with open(path, encoding="utf-8") as file:
            job = json.load(file)
    except (OSError, ValueError) as error:
        raise JobError(f"cannot read the job description {path}: {error}") from None
    if not isinstance(job, dict):
        raise JobError(f"the job description {path} is not a JSON object")
    if bool(job.get("code")) == bool(job.get("script")):
        raise JobError(f"the job description {path} must give exactly one of code or script")
    return job


def _pin(cpus: list[int]) -> None:
    if not cpus:
        return
    setaffinity = getattr(os, "sched_setaffinity", None)
    if setaffinity is None:  # pragma: no cover - not Linux
        print("mlinfra: CPU pinning is not supported on this platform", file=sys.stderr)
        return
    try:
        setaffinity(0, {int(cpu) for cpu in cpus})
    except OSError as error:
        raise JobError(f"cannot pin to CPUs {sorted(cpus)}: {error}") from None


def _cloudpickle() -> Any:
    try:
        return importlib.import_module("cloudpickle")
    except ImportError:
        raise JobError(
            "cloudpickle is needed to push or pull variables, and this environment's "
            f"Python ({sys.executable}) does not have it: pip install cloudpickle"
        ) from None


def _load_push(job_dir: str, push_file: str) -> dict[str, Any]:
    if not push_file:
        return {}
    cloudpickle = _cloudpickle()
    path = os.path.join(job_dir, push_file)
    try:
        with open(path, encoding="utf-8") as file:
            encoded = json.load(file)
    except (OSError, ValueError) as error:
        raise JobError(f"cannot read the pushed variables from {path}: {error}") from None
    if not isinstance(encoded, dict):
        raise JobError(f"the pushed variables in {path} are not an object of name -> base64")
    pushed = {}
    for name, data in encoded.items():
        try:
            pushed[name] = cloudpickle.loads(base64.b64decode(data))
        except Exception as error:
            raise JobError(
                f"cannot load pushed variable {name!r}: {type(error).__name__}: {error}"
            ) from None
    return pushed


def _save_pull(job_dir: str, names: list[str], namespace: dict[str, Any]) -> None:
    missing = [name for name in names if name not in namespace]
    if missing:
        listed = ", ".join(repr(name) for name in missing)
        raise JobError(f"cannot pull {listed}: not defined by the job on rank 0")
    cloudpickle = _cloudpickle()
    values = {name: namespace[name] for name in names}
    try:
        data = cloudpickle.dumps(values)
    except Exception as error:
        raise JobError(f"cannot pull {', '.join(names)}: {type(error).__name__}: {error}") from None
    _write_atomically(os.path.join(job_dir, "pull.pkl"), data)


def _fresh_main() -> dict[str, Any]:
    """A new ``__main__`` module for the job, as a notebook cell or ``python script.py`` has:
    functions and classes it defines pickle by value, as cloudpickle does for ``__main__``."""
    module = types.ModuleType("__main__")
    sys.modules["__main__"] = module
    return module.__dict__


def _run_code(code: str, namespace: dict[str, Any]) -> dict[str, Any]:
    # register the source so tracebacks show the cell's lines, not just their numbers
    linecache.cache[CELL] = (len(code), None, code.splitlines(True), CELL)
    sys.argv = [CELL]
    if sys.path:
        sys.path[0] = os.getcwd()  # as `python -c`: the working directory, not this file's
    exec(compile(code, CELL, "exec"), namespace)
    return namespace


def _run_script(script: str, args: list[str], pushed: dict[str, Any]) -> dict[str, Any]:
    script = os.path.abspath(script)
    sys.argv = [script, *args]
    if sys.path:
        sys.path[0] = os.path.dirname(script)  # as `python script.py`
    return runpy.run_path(script, init_globals=pushed, run_name="__main__")


def _job_frames(error: BaseException) -> types.TracebackType | None:
    """The traceback from the job's own first frame on, without this file and runpy."""
    ours = {run.__code__.co_filename, runpy.run_path.__code__.co_filename}  # runpy may be frozen
    tb = error.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename in ours:
        tb = tb.tb_next
    return tb or error.__traceback__


def _stopped_at(error: BaseException) -> str:
    """Where the job was when it was stopped: its frames without the signal handler's own,
    which Python appends to the job's innermost one."""
    frames = traceback.extract_tb(_job_frames(error))
    while len(frames) > 1 and frames[-1].filename == _on_sigterm.__code__.co_filename:
        frames.pop()
    return "".join(traceback.format_list(frames))


def _job_traceback(error: BaseException) -> str:
    return "".join(traceback.format_exception(type(error), error, _job_frames(error)))


def _exit_status(error: SystemExit) -> tuple[int, str]:
    """What ``python`` itself exits with for ``SystemExit(code)``, and any message."""
    code = error.code
    if code is None:
        return 0, ""
    if isinstance(code, bool) or not isinstance(code, int):
        return 1, str(code)
    if 0 <= code <= 255:
        return code, ""
    return 1, f"SystemExit({code}): exit codes are 0..255, recorded as 1"


def run(job_dir: str) -> int:
    """Run the job in ``job_dir`` as the rank the environment names; return its exit code."""
    started = time.time()
    job_dir = os.path.abspath(job_dir)  # before the job changes directory
    rank = os.environ.get("RANK", "0")
    if not rank.isdigit():
        sys.stderr.write(f"mlinfra: RANK must be a whole number, got {rank!r}\n")
        return 2
    rank = str(int(rank))
    signal.signal(signal.SIGTERM, _on_sigterm)
    exit_code, message = 0, ""
    try:
        job = _load_job(job_dir)
        pinned = os.environ.get("MLINFRA_CPUS", "")
        _pin([int(c) for c in pinned.split(",") if c] or list(job.get("cpus") or []))
        if job.get("working_dir"):
            try:
                os.chdir(job["working_dir"])
            except OSError as error:
                raise JobError(f"cannot change to the working directory: {error}") from None
        pushed = _load_push(job_dir, job.get("push_file") or "")
        _write_atomically(os.path.join(job_dir, f"rank-{rank}.ready"), b"")  # the gang waits
        pull: list[str] = list(job.get("pull") or [])
        if rank == "0" and pull:
            with contextlib.suppress(FileNotFoundError):  # a previous attempt's
                os.unlink(os.path.join(job_dir, "pull.pkl"))
        if job.get("code"):
            namespace = _fresh_main()
            namespace.update(pushed)
            result = _run_code(job["code"], namespace)
        else:
            result = _run_script(job["script"], list(job.get("args") or []), pushed)
        if rank == "0" and pull:
            _save_pull(job_dir, pull, result)
    except SystemExit as error:
        exit_code, message = _exit_status(error)
    except JobError as error:
        exit_code, message = 1, f"mlinfra: {error}\n"
    except (Terminated, KeyboardInterrupt) as error:
        what = "SIGTERM" if isinstance(error, Terminated) else "KeyboardInterrupt"
        exit_code = TERMINATED
        message = f"mlinfra: rank {rank} stopped by {what} (exit code {TERMINATED}) in:\n"
        message += _stopped_at(error)
    except BaseException as error:
        exit_code, message = 1, _job_traceback(error)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # let the result be written
    if message:
        sys.stderr.write(message if message.endswith("\n") else message + "\n")
    record = {
        "exit_code": exit_code,
        "traceback": message,
        "started": started,
        "finished": time.time(),
    }
    try:
        _write_atomically(
            os.path.join(job_dir, f"rank-{rank}.result.json"),
            json.dumps(record).encode("utf-8"),
        )
    except OSError as error:
        sys.stderr.write(f"mlinfra: cannot write the result of rank {rank}: {error}\n")
        return exit_code or 1
    return exit_code


def wait_at_the_gate() -> bool:
    """Whether the local agent let this rank run: it writes one byte to the rank's stdin once
    the rank's pid is in its store, and closes stdin unsent when it cannot record it (it died,
    or the gang could not start). Either way stdin then reads as empty, as for any rank."""
    try:
        go = os.read(0, 1)
    except OSError:
        go = b""
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    return go == GO


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    _streams()
    gated = argv[:1] == ["--gate"]
    if gated:
        argv = argv[1:]
    if len(argv) != 1:
        sys.stderr.write("usage: python entry.py [--gate] JOB_DIR\n")
        return 2
    if gated and not wait_at_the_gate():
        return NOT_STARTED
    return run(argv[0])


if __name__ == "__main__":
    code = main()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe
            stream.flush()
    sys.exit(code)
