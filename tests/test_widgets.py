"""The notebook widgets against one real ``jupyter lab`` with a private agent: their models
follow real jobs; their text forms stay readable where widgets cannot render."""

from __future__ import annotations

import re
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.lib.pretty import pretty
from traitlets.config import Config

from jupyter_mlinfra.client import JobsClient, KernelsClient, discover
from jupyter_mlinfra.magics import JobHandle
from jupyter_mlinfra.transport import StreamedLines
from jupyter_mlinfra.widgets import FlavorPicker, JobMonitor, JobTable, can_render_widgets

from .lab_server import LabServer, running_kernel
from .waits import wait_until

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@pytest.fixture(scope="module")
def lab_config() -> dict[str, Any]:
    # one running job at a time, so a second one really queues
    return {"default_quota": {"max_running_jobs": 1}}


@pytest.fixture
def found(lab: LabServer, monkeypatch: pytest.MonkeyPatch) -> LabServer:
    """The lab, found by ``discover()`` as a kernel the server started finds it."""
    monkeypatch.setenv("JUPYTER_MLINFRA_URL", lab.base_url)
    monkeypatch.setenv("JUPYTER_MLINFRA_TOKEN", lab.token)
    monkeypatch.delenv("JUPYTER_MLINFRA_WIDGETS", raising=False)
    return lab


@pytest.fixture
def client(found: LabServer) -> JobsClient:
    return JobsClient(discover())


def submit(
    client: JobsClient, name: str, code: str, env: dict[str, str] | None = None
) -> dict[str, Any]:
    body = {"code": code, "name": name, "flavor": "cpu", "procs_per_node": 2, "env": env or {}}
    return client.submit(body)


SLEEPER = "import time\nprint('sleeping', flush=True)\ntime.sleep(60)"
WORKER = """\
import os, pathlib, time
while not pathlib.Path(os.environ["RELEASE"]).exists():  # until the test saw it running
    time.sleep(0.05)
print('step', os.environ['RANK'], 'done')
"""


def test_flavor_picker_offers_the_entitled_flavors(found: LabServer) -> None:
    picker = FlavorPicker()
    entitled = KernelsClient(discover()).flavors()["flavors"]
    assert [name for _, name in picker.flavor.options] == [f["name"] for f in entitled]
    assert [name for _, name in picker.flavor.options] == ["cpu", "a100x1"]  # not a100x4
    labels = dict((name, label) for label, name in picker.flavor.options)
    assert labels["cpu"] == entitled[0]["display_name"] == "1 CPU · 1Gi"
    # no accelerators on this machine: the A100 flavor says why it cannot start now
    assert labels["a100x1"].startswith("1 × A100 (") and labels["a100x1"].endswith(")")
    assert [name for _, name in picker.environment.options] == ["python", "pytorch"]
    assert picker.value == {"flavor": "cpu", "environment": "python"}

    seen: list[dict[str, str]] = []
    picker.observe(lambda change: seen.append(change["new"]), names="value")
    picker.flavor.value = "a100x1"
    picker.environment.value = "pytorch"
    assert picker.value == {"flavor": "a100x1", "environment": "pytorch"}
    assert seen[-1] == picker.value and len(seen) == 2

    text = pretty(picker)
    assert text.splitlines()[0].split()[:2] == ["NAME", "ACCELERATOR"]
    assert "chosen: flavor=a100x1 environment=pytorch" in text
    bundle = picker._repr_mimebundle_()
    assert WIDGET_VIEW in bundle and bundle["text/plain"] == text


def test_flavor_picker_starts_a_kernel_or_shows_why_not(found: LabServer) -> None:
    picker = FlavorPicker()
    picker.flavor.value = "a100x1"
    picker.start_button.click()  # no A100 here: the server's refusal, as one line
    assert picker.kernel is None
    assert "error" in picker.message.value and "started" not in picker.message.value

    picker.flavor.value = "cpu"
    picker.start_button.click()
    kernel = picker.kernel
    assert kernel is not None, picker.message.value
    try:
        assert kernel["flavor"] == "cpu" and kernel["environment"] == "python"
        assert f"started kernel {kernel['id']}" in picker.message.value
        assert f"started kernel {kernel['id']}" in repr(picker)
    finally:
        request = urllib.request.Request(
            found.url(f"api/kernels/{kernel['id']}"), headers=found.auth_header, method="DELETE"
        )
        urllib.request.urlopen(request, timeout=30).close()


def test_job_monitor_follows_a_job_and_cancels_another(client: JobsClient, tmp_path: Path) -> None:
    blocker = JobMonitor(submit(client, "blocker", SLEEPER), poll_seconds=0.1)
    wait_until(lambda: blocker.state == "running")
    wait_until(lambda: "sleeping" in blocker.log_view.value)
    assert blocker.cancel_button.disabled is False
    assert "[rank 0]" not in blocker.ranks.value  # prefix stripped
    assert "rank 1 is running; last printed `sleeping`" in blocker.ranks.value

    release = tmp_path / "release"
    job = submit(client, "worker", WORKER, {"RELEASE": str(release)})
    monitor = JobMonitor(job, poll_seconds=0.1)
    states = [monitor.state]
    monitor.observe(lambda change: states.append(change["new"]), names="state")
    # held back by the quota while the blocker runs: the status line says where it stands,
    # and nothing repeats it
    wait_until(lambda: "position 1" in monitor.status.value)
    assert monitor.state == "queued" and monitor.status.value.startswith("worker: queued")
    assert monitor.detail.value == ""
    first = repr(monitor).splitlines()[0]
    assert re.fullmatch(
        rf"{job['id']} · worker: queued · position 1 · .* · as of \d\d:\d\d:\d\d", first
    )

    blocker.cancel_button.click()  # the Cancel button, as a click
    assert blocker.join(timeout=30) and blocker.state == "cancelled"
    assert blocker.cancel_button.disabled
    assert re.fullmatch(r"blocker: cancelled in \d+s", blocker.status.value)
    assert blocker.detail.value == ""  # "cancelled" once
    for rank in (0, 1):  # each rank stopped in the cell's third line
        assert f"rank {rank} stopped by SIGTERM while in `time.sleep(60)`" in blocker.ranks.value

    # the worker runs until released: the monitor sees it running however slow its polls
    wait_until(lambda: monitor.state == "running")
    release.touch()
    assert monitor.join(timeout=60), "the monitor's thread did not stop"
    assert monitor.state == "succeeded", monitor.status.value
    assert states[0] == "queued" and "running" in states and states[-1] == "succeeded"
    assert monitor.status.value.startswith("worker: succeeded in ")
    assert "[rank 0] step 0 done" in monitor.log_view.value
    assert "[rank 1] step 1 done" in monitor.log_view.value
    assert "rank 1 succeeded; last printed `step 1 done`" in monitor.ranks.value
    assert monitor.cancel_button.disabled

    text = pretty(monitor)
    assert text.startswith(f"{job['id']} · worker: succeeded in ")
    assert "[rank 1] step 1 done" in text
    assert monitor._repr_mimebundle_()["text/plain"] == text

    table = JobTable()
    assert table.job_ids[:2] == [job["id"], blocker.job_id]
    assert f"<td>{job['id']}</td><td>worker</td><td>succeeded</td>" in table.table.value
    queued = JobTable(state="queued")
    assert queued.job_ids == [] and pretty(queued) == "no jobs"
    listed = pretty(table).splitlines()
    assert listed[0].split()[:3] == ["ID", "NAME", "STATE"]
    assert listed[1].startswith(f"{job['id']}  worker")


class LogReads(JobsClient):
    """Tells of each log request whether it follows (True) or reads the log (False)."""

    def __init__(self) -> None:
        super().__init__(discover())
        self.reads: list[bool] = []

    def logs(self, job_id: str, **options: Any) -> StreamedLines:
        self.reads.append(bool(options.get("follow")))
        return super().logs(job_id, **options)


STEPPED = """\
import os, pathlib, time
def wait_for(name):
    while not pathlib.Path(os.environ["RELEASE"] + name).exists():
        time.sleep(0.05)
print('first', flush=True)
wait_for("")
print('second', flush=True)
wait_for("-end")
"""


def test_a_running_jobs_log_reaches_the_monitor_as_printed_and_is_never_read_again(
    found: LabServer, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    counting = LogReads()
    job = submit(counting, "stepped", STEPPED, {"RELEASE": str(release)})
    monitor = JobMonitor(job, counting, poll_seconds=0.05)  # its clock ticks 20 times a second
    wait_until(lambda: "first" in monitor.log_view.value)
    release.touch()
    wait_until(lambda: "[rank 1] second" in monitor.log_view.value)  # printed while followed
    assert counting.reads == [True]  # one log followed, however often the monitor ticked
    (tmp_path / "release-end").touch()
    assert monitor.join(timeout=60) and monitor.state == "succeeded"
    assert counting.reads == [True, False]  # and its last lines read once, at the end
    assert "[rank 0] second" in monitor.log_view.value


def test_close_stops_the_refresh_thread(client: JobsClient) -> None:
    monitor = JobMonitor(submit(client, "closed", SLEEPER), poll_seconds=0.1)
    wait_until(lambda: "sleeping" in monitor.log_view.value)  # its log followed, quiet now
    monitor.close()
    assert monitor.join(timeout=30)
    following = [t for t in threading.enumerate() if t.name.startswith("mlinfra-monitor-log")]
    assert following == []  # the quiet log's wait for a next line ended too
    assert repr(monitor).startswith(f"{monitor.job_id} · closed: running")  # text survives
    client.cancel(monitor.job_id)
    wait_until(lambda: client.job(monitor.job_id)["state"] == "cancelled")


def test_the_magics_show_widgets_only_where_they_render(
    found: LabServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    config = Config()
    config.HistoryManager.enabled = False
    config.MLInfraMagics.poll_seconds = 0.1
    ip = InteractiveShell.instance(config=config)
    try:
        assert not can_render_widgets(ip)  # no kernel: a terminal's plain text
        ip.run_line_magic("load_ext", "jupyter_mlinfra")
        monkeypatch.setenv("JUPYTER_MLINFRA_WIDGETS", "1")  # as in a notebook frontend
        assert can_render_widgets(ip)
        ip.run_cell("%%mlinfra submit --name shown\nprint('hi')")
        handle = ip.user_ns["_"]
        assert isinstance(handle, JobHandle) and handle.live is None
        monitor = handle.monitor
        assert isinstance(monitor, JobMonitor) and monitor.job_id == handle.id
        assert monitor.join(timeout=60) and monitor.state == "succeeded"
        ip.run_line_magic("mlinfra", "jobs --state succeeded")
        out, err = capsys.readouterr()
        assert err == ""
        # this shell shows the text/plain form of what it displays: the job as it was then
        assert re.match(rf"(Out\[\d+\]: )?{handle.id} · shown: ", out), out
        table = out[out.index("ID  ") :].splitlines()
        assert table[0].split()[:3] == ["ID", "NAME", "STATE"]
        assert table[1].split()[:3] == [handle.id, "shown", "succeeded"]  # newest first
        monkeypatch.setenv("JUPYTER_MLINFRA_WIDGETS", "0")
        ip.run_cell("%%mlinfra submit --name plain\nprint('hi')")
        handle = ip.user_ns["_"]
        assert isinstance(handle, JobHandle) and handle.monitor is None and handle.live
        handle.wait(timeout=60)
        handle.live.join(timeout=30)
        assert capsys.readouterr().out.splitlines()[-1].startswith("plain: succeeded")
    finally:
        InteractiveShell.clear_instance()


def test_a_cell_shows_one_view_of_the_job_it_submitted(lab: LabServer) -> None:
    """The live monitor alone: no text result beside it that would soon contradict it. Its
    text form (all that nbconvert keeps) says the job's state when it was shown, as such."""
    with running_kernel(lab) as execute:
        assert execute("%load_ext jupyter_mlinfra") == ""
        kinds: list[str] = []
        shown = execute("%%mlinfra submit --name once\nprint('hi')", kinds)
        assert "execute_result" not in kinds and kinds.count("display_data") == 1, kinds
        job_id = shown.split(" · ")[0]
        # unfinished, it says when it was so; finished, its state is final
        when = r"(.* · as of \d\d:\d\d:\d\d|succeeded in \ds)"
        assert re.fullmatch(rf"[0-9a-f]{{12}} · once: {when}", shown.splitlines()[0]), shown
        assert execute("job = _\nprint(type(job).__name__, job.id, job.wait()['state'])") == (
            f"JobHandle {job_id} succeeded\n"
        )
        assert execute("job").startswith(f"{job_id} · once: succeeded in ")  # shown elsewhere


IN_KERNEL = """\
%%mlinfra submit --name in-kernel
print('hi')
"""
CHECK = """\
handle = _
monitor = handle.monitor
print(type(monitor).__name__, monitor.join(timeout=60), monitor.state, handle.live)
print(monitor._repr_mimebundle_()["application/vnd.jupyter.widget-view+json"]["model_id"] != "")
"""


def test_a_real_kernel_shows_a_job_monitor_and_a_job_table(lab: LabServer) -> None:
    with running_kernel(lab) as execute:
        assert execute("%load_ext jupyter_mlinfra") == ""
        shown = execute(IN_KERNEL)
        assert re.match(r"[0-9a-f]{12} · in-kernel: ", shown), shown  # the widget's text form
        assert execute(CHECK) == "JobMonitor True succeeded None\nTrue\n"
        table = execute("%mlinfra jobs --state succeeded")
        assert table.splitlines()[0].split()[:3] == ["ID", "NAME", "STATE"], table
        assert "in-kernel" in table
