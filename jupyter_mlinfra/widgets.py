"""Notebook widgets (ipywidgets 8): pick a flavor, watch a job, list jobs.

Each widget is a ``VBox`` of standard ipywidgets (no custom JavaScript) and reads the REST API
through :mod:`.client`. Each also has a plain-text form (``repr``, ``_repr_pretty_`` and the
``text/plain`` of its mime bundle), so it stays readable where widgets cannot render: a terminal
IPython, nbconvert, a notebook viewer.

- :class:`FlavorPicker` - flavor and environment dropdowns; ``.value``; starts a kernel.
- :class:`JobMonitor` - one job, live: state, why it waits, ranks, log tail, Cancel.
- :class:`JobTable` - the user's jobs, with a Refresh button.

:func:`can_render_widgets` decides whether the magics show these or plain text.
"""

from __future__ import annotations

import contextlib
import contextvars
import html
import importlib.util
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import ipywidgets as w
from IPython.display import display
from traitlets import Dict, Unicode

from .client import ClientError, JobsClient, KernelsClient, discover
from .follow import FINISHED
from .text import flavor_rows, format_table, job_rows, rank_sentence, status_line
from .watch import JobWatch, wait_kernel

if TYPE_CHECKING:
    from .models.catalog import Flavor
    from .models.jobs import Job
    from .models.kernels import Kernel
    from .transport import StreamedLines

ENV_WIDGETS = "JUPYTER_MLINFRA_WIDGETS"
"""``1`` or ``0`` forces the magics to show widgets or plain text; unset: decided per shell."""

LOG_TAIL_LINES = 20
MAX_FAILED_POLLS = 10
LOG_DRAW_SECONDS = 0.2
"""A followed log is drawn at most this often: a job printing fast costs a few updates."""
LOG_JOIN_SECONDS = 5.0
"""How long a monitor waits for its log's thread to let go, once its stream is closed."""


def _thread(target: Callable[..., None], name: str, *args: Any) -> threading.Thread:
    """A daemon thread, started in the current context: the widget updates it makes belong
    to the cell that showed the widget."""
    context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(target, *args), name=name, daemon=True)
    thread.start()
    return thread


def can_render_widgets(shell: Any = None) -> bool:
    """Whether a widget shown now can render: ipywidgets is importable and the shell is a
    kernel's (a frontend may render it; nbconvert keeps the ``text/plain`` form). A terminal
    IPython or no IPython at all gets plain text. ``JUPYTER_MLINFRA_WIDGETS=0|1`` overrides."""
    forced = os.environ.get(ENV_WIDGETS, "").strip().lower()
    if forced in ("0", "false", "no", "off"):
        return False
    if importlib.util.find_spec("ipywidgets") is None:
        return False
    if forced in ("1", "true", "yes", "on"):
        return True
    if shell is None:
        from IPython import get_ipython

        shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class _TextForm:
    """Plain text wherever the widget view cannot render."""

    def text(self) -> str:
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.text()

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(self.text())

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle: dict[str, Any] = super()._repr_mimebundle_(**kwargs)  # type: ignore[misc]
        bundle["text/plain"] = self.text()  # not cut at 110 characters
        return bundle


def _message(widget: Any, text: str, *, error: bool = False) -> None:
    color = "var(--jp-error-color1, #d32f2f)" if error else "var(--jp-ui-font-color1, inherit)"
    widget.value = f'<span style="color: {color}">{html.escape(text)}</span>' if text else ""


def _html_table(rows: list[tuple[str, ...]]) -> str:
    head = "".join(f"<th style='text-align: left'>{html.escape(c)}</th>" for c in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows[1:]
    )
    return (
        f"<table class='mlinfra-table'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )


def _pre(text: str) -> str:
    return f"<pre style='margin: 0; max-height: 24em; overflow: auto'>{html.escape(text)}</pre>"


# --- FlavorPicker -----------------------------------------------------------------------------


class FlavorPicker(_TextForm, w.VBox):  # type: ignore[misc]  # ipywidgets is untyped
    """Pick a flavor and an environment the user may use; ``.value`` gives both.

    "Start kernel" starts a kernel of them (``POST /kernels``); in a flavor kernel, "Switch
    this kernel" restarts the running kernel on the chosen flavor.
    """

    value = Dict(help="{'flavor': ..., 'environment': ...}, following the dropdowns.")

    def __init__(self, client: KernelsClient | None = None, **kwargs: Any) -> None:
        self.client = client or KernelsClient(discover())
        self.flavors = self.client.flavors()
        self.environments = self.client.environments()
        self.kernel: Kernel | None = None
        """The kernel the last "Start kernel" started."""
        flavor_names = [f["name"] for f in self.flavors["flavors"]]
        env_names = [e["name"] for e in self.environments["environments"]]
        self.flavor = w.Dropdown(
            description="Flavor",
            options=[(_flavor_label(f), f["name"]) for f in self.flavors["flavors"]],
            value=_default(self.flavors["default_flavor"], flavor_names),
        )
        self.environment = w.Dropdown(
            description="Environment",
            options=[
                (e["display_name"] or e["name"], e["name"])
                for e in self.environments["environments"]
            ],
            value=_default(self.environments["default_environment"], env_names),
            style={"description_width": "initial"},
        )
        self.start_button = w.Button(
            description="Start kernel", icon="play", tooltip="Start a kernel on this flavor"
        )
        self.switch_button = w.Button(
            description="Switch this kernel",
            icon="refresh",
            tooltip="Restart this notebook's kernel on the chosen flavor",
            layout=w.Layout(display="" if os.environ.get("MLINFRA_KERNEL_ID") else "none"),
        )
        self.message = w.HTML()
        self.start_button.on_click(lambda _: self.start_kernel())
        self.switch_button.on_click(lambda _: self.switch_kernel())
        super().__init__(
            children=[
                w.HBox([self.flavor, self.environment]),
                w.HBox([self.start_button, self.switch_button]),
                self.message,
            ],
            **kwargs,
        )
        self.flavor.observe(self._changed, names="value")
        self.environment.observe(self._changed, names="value")
        self._changed()

    def _changed(self, change: Any = None) -> None:
        self.value = {"flavor": self.flavor.value, "environment": self.environment.value}

    def start_kernel(self, path: str | None = None) -> Kernel | None:
        """Start a kernel of the chosen environment on the chosen flavor; the result or the
        server's refusal shows in the message line."""
        choice = dict(self.value)
        what = f"starting a {choice['environment']} kernel on {choice['flavor']}"
        _message(self.message, f"{what}…")

        def progress(kernel: Kernel) -> None:
            if kernel["state"] == "starting":
                where = kernel.get("phase") or "starting"
                _message(self.message, " · ".join(filter(None, (what, where, kernel["reason"]))))

        try:
            started = self.client.start_kernel(choice["environment"], choice["flavor"], path)
            kernel = wait_kernel(self.client, started["id"], on_change=progress)
        except ClientError as error:
            _message(self.message, error.message, error=True)
            return None
        self.kernel = kernel
        devices = ",".join(str(d) for d in kernel["devices"]) or "none"
        _message(
            self.message,
            f"started kernel {kernel['id']} ({kernel['name']}) on {kernel['flavor']} · "
            f"accelerators: {devices}",
        )
        return kernel

    def switch_kernel(self) -> Kernel | None:
        kernel_id = os.environ.get("MLINFRA_KERNEL_ID", "")
        if not kernel_id:
            _message(self.message, "this kernel is not a flavor kernel", error=True)
            return None
        _message(self.message, f"restarting this kernel on {self.value['flavor']}…")
        try:
            kernel = self.client.switch_kernel(kernel_id, self.value["flavor"])
        except ClientError as error:
            _message(self.message, error.message, error=True)
            return None
        _message(self.message, f"kernel {kernel['id']} now runs on {kernel['flavor']}")
        return kernel

    def text(self) -> str:
        lines = [format_table(flavor_rows(self.flavors))]
        value = self.value or {}
        lines.append(f"chosen: flavor={value.get('flavor')} environment={value.get('environment')}")
        if self.message.value:
            lines.append(html.unescape(_strip_tags(self.message.value)))
        return "\n".join(lines)


def _flavor_label(flavor: Flavor) -> str:
    label = flavor["display_name"] or flavor["name"]
    availability = flavor["availability"]
    # the picker starts kernels, which Kueue's quota does not hold back
    return label if availability["kernels_available"] else f"{label} ({availability['summary']})"


def _default(preferred: str, names: list[str]) -> str | None:
    if preferred in names:
        return preferred
    return names[0] if names else None


def _strip_tags(markup: str) -> str:
    return re.sub(r"<[^>]+>", "", markup)


# --- JobMonitor -------------------------------------------------------------------------------


class JobMonitor(_TextForm, w.VBox):  # type: ignore[misc]  # ipywidgets is untyped
    """One job, live: state and status line, why it waits (position, ETA), its ranks with
    each one's latest line, the tail of the merged log, and a Cancel button.

    A daemon thread keeps it current until the job finishes: the job's changes as the server
    pushes them (``JobWatch``; asked for every ``poll_seconds`` where nothing is pushed), and
    every ``poll_seconds`` the status line's clock. While an attempt runs, a second thread
    follows its log as the server streams it (nothing is read again); once the job finished,
    its last lines are read once. ``close()`` (or ``stop()``) ends both threads at once.
    """

    state = Unicode("", help="The job's state as last seen (queued, running, succeeded...).")

    def __init__(
        self,
        job: str | Job,
        client: JobsClient | None = None,
        *,
        poll_seconds: float = 1.0,
        tail: int = LOG_TAIL_LINES,
        start: bool = True,
        **kwargs: Any,
    ) -> None:
        self.client = client or JobsClient(discover())
        self.poll_seconds = poll_seconds
        self.tail = tail
        self.job: Job = self.client.job(job) if isinstance(job, str) else job.copy()
        self.seen = time.time()
        """When :attr:`job` was read from the server."""
        self.log_tail = ""
        self.error = ""
        self._lines: deque[str] = deque(maxlen=tail)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watching: JobWatch | None = None
        self._log: StreamedLines | None = None
        """The running attempt's log, followed."""
        self._log_thread: threading.Thread | None = None
        self._followed = 0
        """The attempt whose log is (or was) followed."""
        self._drawn = 0.0
        self._drawing = threading.RLock()
        self._display: Any = None
        self.title = w.HTML()
        # HTML rather than Label: a long status line (why it waits, until when) wraps
        self.status = w.HTML()
        self.detail = w.HTML()
        self.ranks = w.HTML()
        self.log_view = w.HTML()
        self.message = w.HTML()
        self.cancel_button = w.Button(
            description="Cancel", icon="stop", button_style="danger", tooltip="Cancel this job"
        )
        self.cancel_button.on_click(lambda _: self.cancel())
        super().__init__(
            children=[
                w.HBox([self.title, self.cancel_button]),
                self.status,
                self.detail,
                self.ranks,
                self.log_view,
                self.message,
            ],
            **kwargs,
        )
        self._render()
        if start:
            self.start()

    @property
    def job_id(self) -> str:
        return str(self.job["id"])

    @property
    def finished(self) -> bool:
        return self.job["state"] in FINISHED

    # --- refreshing ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the refresh thread (once), in the current context so that its updates
        belong to the cell that showed the widget."""
        if self._thread is not None:
            return
        self._thread = _thread(self._watch, f"mlinfra-monitor-{self.job_id}")

    def stop(self) -> None:
        self._stop.set()
        watching, log = self._watching, self._log
        if watching is not None:
            watching.close()  # ends its wait for the next change at once
        if log is not None:
            log.close()  # and its wait for the next line

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the refresh thread (and so the log's) to end; whether it has."""
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def close(self) -> None:
        self.stop()
        super().close()

    def _watch(self) -> None:
        if self.finished:
            self.refresh()
            return
        try:
            self._follow_changes()
        finally:
            self._stop_following()
        if self.finished:
            self._read_tail()  # its last lines exactly, however much of them was followed

    def _follow_changes(self) -> None:
        failures = 0
        while not self._stop.is_set() and not self.finished:
            try:
                with JobWatch(self.client, self.job_id, poll_seconds=self.poll_seconds) as watch:
                    self._watching = watch
                    failures = 0
                    while not self._stop.is_set():  # (stopped before it could be closed)
                        self._update(watch.job)
                        self._follow_log()
                        if self.finished:
                            return
                        watch.next(self.poll_seconds)
            except ClientError as error:  # asked again a while later, a few times
                self._failed(error)
                failures += 1
                if failures >= MAX_FAILED_POLLS or self._stop.wait(self.poll_seconds):
                    return
            finally:
                self._watching = None

    def refresh(self) -> bool:
        """Ask the server for the job and its log tail; whether that worked."""
        try:
            job = self.client.job(self.job_id)
        except ClientError as error:
            self._failed(error)
            return False
        self._update(job)
        self._read_tail()
        return True

    def _read_tail(self) -> None:
        if self.job["started"] is not None:
            with contextlib.suppress(ClientError):  # no logs yet: keep the last ones
                self._lines = deque(self.client.logs(self.job_id, tail=self.tail), self.tail)
                self._render()

    def _follow_log(self) -> None:
        """Follow the running attempt's log on a thread of its own (each attempt once)."""
        job = self.job
        if job["state"] != "running" or job["attempt"] == self._followed:
            return
        self._stop_following()
        self._followed = job["attempt"]
        with self._drawing:
            self._lines.clear()
        self._log = self.client.logs(self.job_id, tail=self.tail, follow=True)
        self._log_thread = _thread(self._read_log, f"mlinfra-monitor-log-{self.job_id}", self._log)

    def _read_log(self, lines: StreamedLines) -> None:
        """Show each line as it comes (drawn at most every ``LOG_DRAW_SECONDS``; the status
        clock draws the rest); the stream ends with the attempt."""
        with contextlib.suppress(ClientError, OSError):  # its last lines are read at the end
            for line in lines:
                with self._drawing:  # never while a drawing joins the lines
                    self._lines.append(line)
                if time.monotonic() - self._drawn >= LOG_DRAW_SECONDS:
                    self._render()
        self._render()

    def _stop_following(self) -> None:
        log, thread = self._log, self._log_thread
        self._log = self._log_thread = None
        if log is not None:
            log.close()
        if thread is not None:
            thread.join(LOG_JOIN_SECONDS)

    def _failed(self, error: ClientError) -> None:
        self.error = f"status unknown: {error.message}"
        self._render()

    def _update(self, job: Job) -> None:
        """Show ``job`` as just read or pushed."""
        self.error = ""
        changed = job["state"] != self.job["state"]
        self.job, self.seen = job, time.time()
        self._render()
        if changed and self._display is not None:
            self._display.update(self)  # keeps the text/plain form current (nbconvert)

    def cancel(self) -> Job | None:
        """Cancel the job; the server's answer or refusal shows in the message line."""
        try:
            job = self.client.cancel(self.job_id)
        except ClientError as error:
            self.error = error.message
            self._render()
            return None
        self.job, self.seen = job, time.time()
        self._render()
        return job

    def show(self) -> None:
        """Display the widget with a display id, updated on each change of state."""
        self._display = display(self, display_id=True)  # type: ignore[no-untyped-call]

    # --- drawing ------------------------------------------------------------------------

    def _render(self) -> None:
        with self._drawing:  # from the refresh thread and the log's (which appends under it)
            self._drawn = time.monotonic()
            self.log_tail = "".join(self._lines)
            self._draw()

    def _draw(self) -> None:
        job = self.job
        name = html.escape(job["name"] or "job")
        self.title.value = f"<b>{name}</b> <code>{html.escape(job['id'])}</code>"
        self.status.value = html.escape(status_line(job), quote=False)
        self.detail.value = html.escape(self._detail(), quote=False)
        self.ranks.value = _pre("\n".join(self.rank_lines().values())) if job["started"] else ""
        self.log_view.value = _pre(self.log_tail) if self.log_tail else ""
        _message(self.message, self.error, error=True)
        self.cancel_button.disabled = self.finished
        self.state = job["state"]

    def _detail(self) -> str:
        """The job's reason where its status line leaves it out (which, while it waits,
        already says where it stands and when it will likely start), unless it succeeded."""
        job = self.job
        reason = str(job["reason"] or "")
        said = job["state"] == "succeeded" or reason == job["state"] or reason in status_line(job)
        return "" if said else reason

    def rank_lines(self) -> dict[int, str]:
        """Each rank's state as a sentence, from its last lines in the log tail (the merged
        log prefixes them ``[rank N]`` when there are several ranks)."""
        count = self.job["nodes"] * self.job["procs_per_node"]
        lines: dict[int, list[str]] = {rank: [] for rank in range(count)}
        for line in self.log_tail.splitlines():
            rank, text = 0, line
            if count > 1 and line.startswith("[rank "):
                label, _, text = line.partition("] ")
                try:
                    rank = int(label[len("[rank ") :])
                except ValueError:
                    continue
            lines.setdefault(rank, []).append(text)
        return {rank: rank_sentence(rank, self.job["state"], told) for rank, told in lines.items()}

    def text(self) -> str:
        """The job as it was when this text was made, and says so while it is unfinished:
        where the widget cannot render (nbconvert), this text stays as it was printed."""
        first = f"{self.job_id} · {status_line(self.job)}"
        if not self.finished:
            first += f" · as of {time.strftime('%H:%M:%S', time.localtime(self.seen))}"
        lines = [first]
        detail = self._detail()
        if detail:
            lines.append(f"  {detail}")
        if self.log_tail:
            lines.append(self.log_tail.rstrip("\n"))
        if self.error:
            lines.append(f"mlinfra: {self.error}")
        return "\n".join(lines)


# --- JobTable ---------------------------------------------------------------------------------


class JobTable(_TextForm, w.VBox):  # type: ignore[misc]  # ipywidgets is untyped
    """The user's jobs (``state`` filters, e.g. ``"queued,running"``), newest first, with a
    Refresh button."""

    def __init__(
        self, client: JobsClient | None = None, state: str = "", *, limit: int = 50, **kwargs: Any
    ) -> None:
        self.client = client or JobsClient(discover())
        self.state_filter = state
        self.limit = limit
        self.rows: list[tuple[str, ...]] = job_rows({"jobs": [], "next": None})
        self.error = ""
        self.table = w.HTML()
        self.message = w.HTML()
        self.refresh_button = w.Button(description="Refresh", icon="refresh")
        self.refresh_button.on_click(lambda _: self.refresh())
        super().__init__(children=[self.refresh_button, self.table, self.message], **kwargs)
        self.refresh()

    def refresh(self) -> bool:
        try:
            page = self.client.jobs(state=self.state_filter or None, limit=self.limit)
        except ClientError as error:
            self.error = error.message
            _message(self.message, error.message, error=True)
            return False
        self.error = ""
        _message(self.message, "")
        self.rows = job_rows(page)
        self.table.value = _html_table(self.rows) if len(self.rows) > 1 else "<i>no jobs</i>"
        return True

    @property
    def job_ids(self) -> list[str]:
        return [row[0] for row in self.rows[1:]]

    def text(self) -> str:
        text = format_table(self.rows) if len(self.rows) > 1 else "no jobs"
        return text + (f"\nmlinfra: {self.error}" if self.error else "")
