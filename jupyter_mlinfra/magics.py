"""``%mlinfra`` and ``%%mlinfra``: queued distributed jobs from notebook cells.

Loaded by ``%load_ext jupyter_mlinfra``. ``%%mlinfra submit [options]`` queues the cell as a
job; ``%mlinfra jobs|status|logs|cancel|retry|pull|queue|flavors`` look after jobs. Options are
parsed in :mod:`.magic_args`; the server is found with :func:`.client.discover` (the server
extension sets ``JUPYTER_MLINFRA_URL``/``_TOKEN`` in every kernel it starts).

A mistake (bad options, an unknown flavor, no server) prints one line to stderr,
``mlinfra: what went wrong``, never a traceback. A job's own failure prints its traceback.
"""

from __future__ import annotations

import contextvars
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.display import display
from traitlets import Float, Unicode

from .client import ClientError, JobsClient, discover, encode_push
from .follow import FINISHED, follow
from .magic_args import ArgsError, Command, HelpRequested, SubmitOptions, parse
from .magic_args import idempotency_key as make_key
from .magic_args import submission as make_submission
from .text import (
    flavor_rows,
    format_table,
    job_history,
    job_rows,
    queue_rows,
    status_line,
)
from .watch import JobWatch

if TYPE_CHECKING:
    from .models.jobs import Job
    from .widgets import JobMonitor

T = TypeVar("T")


class JobHandle:
    """A submitted job, as ``%%mlinfra submit`` without ``--wait`` returns it (``job = _``).

    Every method asks the server; errors raise :class:`.client.ClientError`.
    """

    def __init__(self, client: JobsClient, job_id: str, *, poll_seconds: float = 0.5) -> None:
        self._client = client
        self._id = job_id
        self.poll_seconds = poll_seconds
        self.live: LiveStatus | None = None
        """The status line that keeps itself current once shown, where widgets cannot
        render."""
        self.monitor: JobMonitor | None = None
        """The widget showing the job, where the frontend renders widgets (instead of
        :attr:`live`)."""

    @property
    def id(self) -> str:
        return self._id

    def status(self) -> Job:
        """The job as the API shows it now (``state``, ``reason``, ``position``, ``eta``...)."""
        return self._client.job(self._id)

    def logs(self, *, rank: int | None = None, tail: int | None = None) -> str:
        """The logs so far: all ranks merged with ``[rank N]`` prefixes, or one rank's."""
        return "".join(self._client.logs(self._id, rank=rank, tail=tail))

    def cancel(self) -> Job:
        return self._client.cancel(self._id)

    def result(self) -> dict[str, Any]:
        """The variables the job pulled back (``--pull``), once it succeeded."""
        return self._client.result(self._id)

    def wait(self, timeout: float | None = None) -> Job:
        """Block until the job has finished and return it; ``TimeoutError`` after
        ``timeout`` seconds (the job keeps running)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with JobWatch(self._client, self._id, poll_seconds=self.poll_seconds) as watch:
            while watch.job["state"] not in FINISHED:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    state = watch.job["state"]
                    raise TimeoutError(f"job {self._id} is still {state} after {timeout}s")
                watch.next(left)
            return watch.job

    def __repr__(self) -> str:
        try:
            line = status_line(self.status())
        except ClientError as error:
            line = f"status unknown: {error.message}"
        return line if line.startswith(self._id) else f"{self._id} · {line}"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))

    def _ipython_display_(self) -> None:
        """What a cell shows of the job: its live view alone (the monitor, or a status line
        that keeps itself current), as it is when the cell ends, never a snapshot beside it
        that would soon contradict it; once the status line is shown, the job as it is now."""
        if self.monitor is not None:
            self.monitor.refresh()
            self.monitor.show()
        elif self.live is not None and not self.live.shown:
            self.live.show()
        else:
            display({"text/plain": repr(self)}, raw=True)  # type: ignore[no-untyped-call]


class LiveStatus(threading.Thread):
    """Once shown, keeps one plain-text display (``display_id``) showing a job's status line
    until the job finishes, as its changes come (``JobWatch``); works in every frontend and
    in a terminal."""

    def __init__(self, client: JobsClient, job_id: str, poll_seconds: float) -> None:
        super().__init__(name=f"mlinfra-status-{job_id}", daemon=True)
        self._run_in = contextvars.copy_context()
        self._client = client
        self._job_id = job_id
        self._poll = poll_seconds
        self._shown = ""
        self._display: Any = None

    @property
    def shown(self) -> bool:
        return self._display is not None

    def show(self) -> None:
        """Display the job's status line as it is now, then keep it current from this
        thread, in the displaying cell's context (so its updates belong to that cell)."""
        self._run_in = contextvars.copy_context()
        self._shown, finished = self._look()
        self._display = display(  # type: ignore[no-untyped-call]  # IPython leaves it untyped
            {"text/plain": self._shown}, raw=True, display_id=True
        )
        if not finished:
            self.start()

    def run(self) -> None:
        self._run_in.run(self._watch)

    def _look(self) -> tuple[str, bool]:
        """The job's status line now, and whether it is final."""
        try:
            job = self._client.job(self._job_id)
        except ClientError as error:  # say so and stop: the job itself is unaffected
            return f"{self._job_id}: status unknown: {error.message}", True
        return status_line(job), job["state"] in FINISHED

    def _watch(self) -> None:
        try:
            with JobWatch(self._client, self._job_id, poll_seconds=self._poll) as watch:
                self._show(status_line(watch.job))
                while watch.job["state"] not in FINISHED:
                    # each change at once; between them the line's clock (running for how
                    # long, starts in how long) is redrawn from the job already read
                    watch.next(self._poll)
                    self._show(status_line(watch.job))
        except ClientError as error:  # say so and stop: the job itself is unaffected
            self._show(f"{self._job_id}: status unknown: {error.message}")

    def _show(self, line: str) -> None:
        if line != self._shown and self._display is not None:
            self._display.update({"text/plain": line}, raw=True)
            self._shown = line


@magics_class
class MLInfraMagics(Magics):
    """``%mlinfra`` / ``%%mlinfra``; settings are configurable as ``c.MLInfraMagics.*``."""

    url = Unicode(
        "",
        help="The Jupyter server's URL. Empty: discovered (JUPYTER_MLINFRA_URL, which the "
        "server sets in its kernels; JupyterHub's variables; the newest running server).",
    ).tag(config=True)
    token = Unicode(
        "", help="The server's token. Empty: discovered along with the URL; never printed."
    ).tag(config=True)
    poll_seconds = Float(
        1.0,
        help="How often the live status line or monitor of a job submitted without --wait "
        "asks the server for the job's state, in seconds, where the server pushes no changes "
        "(no live websocket); the monitor also reads a running job's log tail this often.",
    ).tag(config=True)
    wait_poll_seconds = Float(
        0.5,
        help="How often --wait and JobHandle.wait() ask for a queued job's state, in seconds, "
        "where the server pushes no changes (no live websocket; a running job's logs stream "
        "without polling).",
    ).tag(config=True)
    request_timeout = Float(30.0, help="Seconds to wait for the server to answer one request.").tag(
        config=True
    )

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell, **kwargs)
        self._client: JobsClient | None = None
        self._salt = os.urandom(16).hex()
        """Per kernel session: the same cell in a new session is a new job."""

    @property
    def client(self) -> JobsClient:
        """Made on first use, so loading the extension works before any server is reachable."""
        if self._client is None:
            connection = discover(self.url or None, self.token or None)
            self._client = JobsClient(connection, timeout=self.request_timeout)
        return self._client

    @line_cell_magic
    def mlinfra(self, line: str, cell: str | None = None) -> JobHandle | None:
        """Queued distributed jobs: ``%mlinfra`` alone lists the commands,
        ``%mlinfra COMMAND --help`` explains one."""
        try:
            command = parse(line, cell=cell is not None)
            if command.submit is not None:
                return self._submit(command.submit, line, cell or "")
            self._commands()[command.name](command)
        except HelpRequested as shown:
            print(shown.text, end="")
        except (ArgsError, ClientError) as error:
            print(f"mlinfra: {error.message}", file=sys.stderr)
        return None

    def _commands(self) -> dict[str, Callable[[Command], None]]:
        return {
            "jobs": self._jobs,
            "status": self._status,
            "logs": self._logs,
            "cancel": lambda c: print(status_line(self.client.cancel(c.job_id))),
            "retry": lambda c: print(status_line(self.client.retry(c.job_id))),
            "pull": lambda c: self._pull(c.job_id),
            "queue": self._queue,
            "flavors": self._flavors,
        }

    # --- submit ---------------------------------------------------------------------------

    def _submit(self, options: SubmitOptions, line: str, cell: str) -> JobHandle | None:
        if not cell.strip():
            raise ArgsError("submit: the cell is empty; write the job's code below the magic")
        shell = self._shell()
        key = make_key(cell, line, self._salt, shell.execution_count)
        body = make_submission(
            options,
            cell,
            idempotency_key=key,
            working_dir=os.getcwd(),
            push=self._pushed(options.push),
        )
        job = self.client.submit(body)
        if options.wait:
            self._wait(job["id"], options.pull)
            return None
        handle = JobHandle(self.client, job["id"], poll_seconds=self.wait_poll_seconds)
        # shown when the cell displays the handle it returns (_ipython_display_)
        if _widgets(shell):
            from .widgets import JobMonitor

            handle.monitor = JobMonitor(job, self.client, poll_seconds=self.poll_seconds)
        else:
            handle.live = LiveStatus(self.client, job["id"], self.poll_seconds)
        return handle

    def _pushed(self, names: Sequence[str]) -> dict[str, str]:
        namespace = self._shell().user_ns
        missing = [name for name in names if name not in namespace]
        if missing:
            listed = ", ".join(repr(name) for name in missing)
            raise ArgsError(f"push: no variable {listed} in this notebook")
        encoded: dict[str, str] = {}
        for name in names:
            value = {name: namespace[name]}
            encoded.update(_pickled(f"push: cannot send {name!r}", encode_push, value))
        return encoded

    def _wait(self, job_id: str, pull: Sequence[str]) -> None:
        print(f"submitted job {job_id}", flush=True)
        try:
            final = follow(
                self.client,
                job_id,
                on_status=_print_progress,
                on_line=_print_line,
                poll_seconds=self.wait_poll_seconds,
            )
        except KeyboardInterrupt:
            print(
                f"\nstopped following job {job_id}; it keeps running. "
                f"Cancel it with: %mlinfra cancel {job_id}"
            )
            return
        if final["state"] != "succeeded":
            if final["message"] and not final["started"]:  # else its log said it already
                print(final["message"].rstrip(), file=sys.stderr)
            print(f"-- {status_line(final)}", file=sys.stderr)
            return
        print(f"-- {status_line(final)}")
        if pull:
            self._pull(job_id)

    # --- line commands --------------------------------------------------------------------

    def _pull(self, job_id: str) -> None:
        client = self.client
        variables = _pickled(
            f"pull: cannot load the variables of job {job_id}", client.result, job_id
        )
        if not variables:
            print(f"job {job_id} pulled no variables")
            return
        self._shell().push(variables)
        print(f"pulled {', '.join(variables)} from job {job_id}")

    def _logs(self, command: Command) -> None:
        lines = self.client.logs(
            command.job_id, rank=command.rank, tail=command.tail, follow=command.follow
        )
        try:
            for line in lines:
                _print_line(line)
        except KeyboardInterrupt:
            print(f"\nstopped following job {command.job_id}; it keeps running")

    def _flavors(self, command: Command) -> None:
        print(format_table(flavor_rows(self.client.flavors())))

    def _jobs(self, command: Command) -> None:
        if _widgets(self.shell):
            from .widgets import JobTable

            display(JobTable(self.client, state=command.state))  # type: ignore[no-untyped-call]
            return
        print(format_table(job_rows(self.client.jobs(state=command.state or None, limit=50))))

    def _status(self, command: Command) -> None:
        print(job_history(self.client.job(command.job_id), self.client.events(command.job_id)))

    def _queue(self, command: Command) -> None:
        queue = self.client.queue()
        print(format_table(queue_rows(queue)))
        print(f"{queue['pending']} job(s) waiting in all")

    def _shell(self) -> Any:
        if self.shell is None:
            raise ArgsError("not running in IPython")
        return self.shell


def _widgets(shell: Any) -> bool:
    """Whether to show widgets rather than plain text (see :func:`.widgets.can_render_widgets`),
    without importing ipywidgets where they cannot render."""
    forced = os.environ.get("JUPYTER_MLINFRA_WIDGETS", "").strip().lower() in (
        "1",
        "true",
        "yes",
        "on",
    )
    if not forced and getattr(shell, "kernel", None) is None:
        return False
    try:
        from .widgets import can_render_widgets
    except ImportError:  # ipywidgets missing or broken: plain text still works
        return False
    return can_render_widgets(shell)


def _pickled(what: str, action: Callable[..., T], *args: Any) -> T:
    """``action(*args)`` with cloudpickle's failures as one line: user values can fail to
    pickle or unpickle in any way (a lock, a module missing here), so anything is caught."""
    try:
        return action(*args)
    except ClientError:
        raise
    except Exception as error:
        hint = " (pip install cloudpickle)" if getattr(error, "name", "") == "cloudpickle" else ""
        raise ClientError(f"{what}: {type(error).__name__}: {error}{hint}") from None


def _print_progress(job: Job) -> None:
    if job["state"] not in FINISHED:  # the end is reported once, after the logs
        print(f"-- {status_line(job)}", flush=True)


def _print_line(line: str) -> None:
    sys.stdout.write(line)
    sys.stdout.flush()
