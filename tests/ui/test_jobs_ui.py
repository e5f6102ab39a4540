"""Jobs in the browser: submitted from a notebook cell, watched in the panel, their logs
followed in the main-area viewer; palette commands; the admins' view; the dark theme."""

from __future__ import annotations

import http.client
import json
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jupyter_mlinfra.transport import IDENTITY_HEADER
from tests.lab_server import LabServer
from tests.ui.panel import (
    JOBS,
    SLEEPER,
    call,
    cancel_if_active,
    free_the_accelerators,
    kernel_ids,
    open_panel,
    stop_new_kernels,
)
from tests.ui.test_lab_extension import run_from_palette

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

    from tests.ui.conftest import ConsoleLog

# Two ranks (h100x2 runs one per accelerator), each printing six numbered steps.
STEPS = (
    "import os, time\nfor step in range(6): print(f\"step {step} of rank {os.environ['RANK']}\","
    " flush=True) or time.sleep(1)"
)


def _type_cell(page: Page, text: str) -> None:
    """Type into the notebook's active cell and run it (Shift+Enter)."""
    page.locator(".jp-NotebookPanel .jp-Cell.jp-mod-active .cm-content").click()
    page.keyboard.type(text)
    page.keyboard.press("Shift+Enter")


def _job_named(server: LabServer, name: str) -> dict[str, Any]:
    jobs = [j for j in call(server, "GET", JOBS)["jobs"] if j["name"] == name]
    assert jobs, f"no job named {name!r}"
    return dict(jobs[0])


def test_a_notebook_job_waits_runs_and_succeeds_while_its_log_is_followed(
    page: Page, lab_server: LabServer, console: ConsoleLog, output_dir: Path
) -> None:
    from playwright.sync_api import expect

    free_the_accelerators(lab_server)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    panel = open_panel(page, lab_server, console, "notebook-job")
    before = kernel_ids(lab_server)
    blocker: dict[str, Any] = {}
    job: dict[str, Any] = {}
    try:
        panel.start.get_by_role("combobox", name="Flavor").select_option("cpu")
        panel.start.get_by_role("button", name="New notebook").click()
        expect(page.locator(".jp-mlinfra-KernelStatus")).to_contain_text("cpu", timeout=30_000)
        idle = page.locator(".jp-StatusBar-Widget", has_text="Idle").first
        expect(idle).to_be_visible(timeout=60_000)
        # an h100x2 job gets half the machine's CPUs and the notebook's kernel one more, so
        # (on an even number of cores) a second h100x2 job has to wait behind this one
        hog = {"code": SLEEPER, "flavor": "h100x2", "name": "ui-hog"}
        blocker = call(lab_server, "POST", JOBS, hog)
        expect(panel.job_state(blocker["id"])).to_have_text("running", timeout=20_000)
        _type_cell(page, "%load_ext jupyter_mlinfra")
        _type_cell(page, f"%%mlinfra submit --flavor h100x2 --name ui-nb\n{STEPS}")
        expect(panel.root.get_by_text("ui-nb", exact=True)).to_be_visible(timeout=30_000)
        job = _job_named(lab_server, "ui-nb")
        row = panel.job_row(job["id"])
        expect(panel.job_state(job["id"])).to_have_text("queued")
        expect(row).to_contain_text("position 1")
        expect(row.locator(".jp-mlinfra-JobRow-reason")).not_to_be_empty()
        row.scroll_into_view_if_needed()
        page.screenshot(path=str(output_dir / "job-queued.png"))

        row.get_by_role("button", name="Logs of job ui-nb").click()
        viewer = page.locator(".jp-mlinfra-LogView")
        state = viewer.get_by_role("status")
        expect(state).to_contain_text("Queued (position 1)")

        panel.job_row(blocker["id"]).get_by_role("button", name="Cancel job ui-hog").click()
        expect(panel.job_state(blocker["id"])).to_have_text("cancelled", timeout=15_000)
        expect(panel.job_state(job["id"])).to_have_text("running", timeout=30_000)
        log = viewer.locator("pre")
        expect(log).to_contain_text("[rank 0] step 0 of rank 0", timeout=15_000)
        expect(state).to_contain_text("following the log")
        expect(panel.job_state(job["id"])).to_have_text("succeeded", timeout=30_000)
        expect(state).to_contain_text("Job succeeded · exit code 0")
        expect(state).to_contain_text("The log is complete.")
        for rank in (0, 1):
            expect(log).to_contain_text(f"[rank {rank}] step 5 of rank {rank}")
        page.screenshot(path=str(output_dir / "log-viewer.png"))

        viewer.get_by_role("combobox", name="Rank").select_option(label="Rank 1")
        expect(log).to_contain_text("step 5 of rank 1")
        expect(log).not_to_contain_text("rank 0")
        expect(log).not_to_contain_text("[rank")
        with page.expect_download() as download:  # the whole log, through the browser's session
            viewer.get_by_role("link", name="Download").click()
        assert download.value.suggested_filename == f"job-{job['id']}.log"
        whole = Path(download.value.path()).read_text()
        assert "step 0 of rank 1" in whole and "step 5 of rank 1" in whole and "[rank" not in whole

        # one viewer per job: "Logs" again brings the open one back
        page.locator(".lm-TabBar-tab", has_text="Untitled").first.click()
        expect(viewer).to_be_hidden()
        row.get_by_role("button", name="Logs of job ui-nb").click()
        expect(viewer).to_have_count(1)
        expect(viewer).to_be_visible()

        row.get_by_role("button", name="Copy the id of job ui-nb").click()
        expect(page.get_by_text(f"Copied job id {job['id']}")).to_be_visible()
        assert page.evaluate("navigator.clipboard.readText()") == job["id"]
    finally:
        cancel_if_active(lab_server, *(j["id"] for j in (blocker, job) if j))
        stop_new_kernels(lab_server, before)
    assert console.errors(mentioning="mlinfra") == []


def test_palette_commands_new_console_and_switch(
    page: Page, lab_server: LabServer, console: ConsoleLog, output_dir: Path
) -> None:
    from playwright.sync_api import expect

    free_the_accelerators(lab_server)
    panel = open_panel(page, lab_server, console, "palette")
    job = call(lab_server, "POST", JOBS, {"code": SLEEPER, "flavor": "cpu", "name": "ui-pal"})
    before = kernel_ids(lab_server)
    try:
        expect(panel.job_state(job["id"])).to_have_text("running", timeout=15_000)
        # without a job id, the command asks which job
        run_from_palette(page, "Cancel Job…")
        dialog = page.get_by_role("dialog")
        dialog.get_by_role("combobox").select_option(label=f"ui-pal · {_state(lab_server, job)}")
        page.screenshot(path=str(output_dir / "palette-cancel-job.png"))
        dialog.get_by_role("button", name="Ok").click()
        expect(panel.job_state(job["id"])).to_have_text("cancelled", timeout=15_000)

        # CPU kernels: this server culls idle GPU kernels after 10 s
        flavor = panel.start.get_by_role("combobox", name="Flavor")
        flavor.select_option("cpu")
        panel.start.get_by_role("button", name="New console").click()
        expect(page.locator(".jp-CodeConsole")).to_have_count(1, timeout=30_000)
        # the console runs on the kernel the command started on the flavor
        idle = page.locator(".jp-StatusBar-Widget", has_text="Idle").first
        expect(idle).to_be_visible(timeout=30_000)
        sessions = call(lab_server, "GET", "api/sessions")
        consoles = stop_new_kernels(lab_server, before)
        assert [k["flavor"] for k in consoles] == ["cpu"]
        on = [s["kernel"]["id"] for s in sessions if s["type"] == "console"]
        assert on == [consoles[0]["id"]], sessions
        before |= {k["id"] for k in consoles}
        panel.start.get_by_role("button", name="New notebook").click()
        status = page.locator(".jp-mlinfra-KernelStatus")
        expect(status).to_have_text("cpu", timeout=30_000)
        flavor.select_option("h100x1")
        panel.start.get_by_role("button", name="Switch this notebook's kernel").click()
        expect(page.get_by_text("now runs on h100x1")).to_be_visible(timeout=30_000)
        expect(status).to_contain_text("h100x1 · GPU", timeout=30_000)
        page.screenshot(path=str(output_dir / "switched-kernel.png"))
    finally:
        cancel_if_active(lab_server, job["id"])
        new = stop_new_kernels(lab_server, before)
    assert [k["flavor"] for k in new] == ["h100x1"]
    assert console.errors(mentioning="mlinfra") == []


# Two bursts of lines; the second once the reader has scrolled up (the test touches RELEASE).
BURSTS = (
    "import os, pathlib, time\n"
    "for i in range(300): print(f'line {i}', flush=True)\n"
    "while not pathlib.Path(os.environ['RELEASE']).exists(): time.sleep(0.05)\n"
    "for i in range(300, 600): print(f'line {i}', flush=True)\n"
)


def test_the_log_viewer_scrolls_with_the_log_until_the_reader_scrolls_up(
    page: Page, lab_server: LabServer, console: ConsoleLog, output_dir: Path, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    panel = open_panel(page, lab_server, console, "scroll")
    release = tmp_path / "release"
    body = {"code": BURSTS, "flavor": "cpu", "name": "ui-scroll", "env": {"RELEASE": str(release)}}
    job = call(lab_server, "POST", JOBS, body)
    try:
        expect(panel.job_state(job["id"])).to_have_text("running", timeout=15_000)
        run_from_palette(page, "Open Logs of Job…")  # no job given: it asks which
        dialog = page.get_by_role("dialog")
        dialog.get_by_role("combobox").select_option(label=f"ui-scroll · {_state(lab_server, job)}")
        dialog.get_by_role("button", name="Ok").click()
        viewer = page.locator(".jp-mlinfra-LogView")
        log = viewer.locator("pre")
        expect(log).to_contain_text("line 299", timeout=15_000)
        assert "line 300" not in log.inner_text()  # the second burst waits for the release
        assert log.evaluate("n => n.scrollHeight > n.clientHeight")
        assert _distance_from_end(log) < 30  # it followed the log to its end

        log.evaluate("n => { n.scrollTop = 0; }")
        paused = viewer.get_by_text("Auto-scroll paused")
        expect(paused).to_be_visible()
        release.touch()
        expect(log).to_contain_text("line 599", timeout=20_000)
        assert log.evaluate("n => n.scrollTop") == 0  # the reader stays where they are

        log.evaluate("n => { n.scrollTop = n.scrollHeight; }")
        expect(paused).to_be_hidden()
        expect(viewer.get_by_role("status")).to_contain_text("Job succeeded", timeout=20_000)
    finally:
        cancel_if_active(lab_server, job["id"])
    assert console.errors(mentioning="mlinfra") == []


def _distance_from_end(log: Locator) -> float:
    """How far (px) the log box is scrolled from its end."""
    return float(log.evaluate("n => n.scrollHeight - n.scrollTop - n.clientHeight"))


def _state(server: LabServer, job: dict[str, Any]) -> str:
    """The rest of a job's label in the palette's job chooser: state, flavor, id."""
    current = call(server, "GET", f"{JOBS}/{job['id']}")
    return f"{current['state']} · {current['flavor']} · {current['id']}"


def _submit_as(server_socket: str, user: str, body: dict[str, Any]) -> dict[str, Any]:
    """Submit a job as another user, straight to the local agent (as a hub would)."""

    class AgentConnection(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.connect(server_socket)

    connection = AgentConnection("mlinfra-agent", timeout=30)
    identity = json.dumps({"user": user, "groups": [], "admin": False})
    headers = {"Content-Type": "application/json", IDENTITY_HEADER: identity}
    try:
        connection.request("POST", "/mlinfra/api/v1/jobs", json.dumps(body), headers)
        response = connection.getresponse()
        answer = json.loads(response.read())
        assert response.status == 201, answer
        return dict(answer)
    finally:
        connection.close()


THEMES = "@jupyterlab/apputils-extension:themes"


def _save_theme(server: LabServer, theme: str) -> None:
    """Save the user's theme through JupyterLab's settings API (pages load with it)."""
    call(server, "PUT", f"lab/api/settings/{THEMES}", {"raw": json.dumps({"theme": theme})})


def _contrast(page: Page, selector: str) -> float:
    """The WCAG contrast ratio of the first element matching ``selector``: its text color
    against the first opaque background behind it."""
    ratio = page.evaluate(
        """selector => {
          const node = document.querySelector(selector);
          const rgb = text => text.match(/[\\d.]+/g).map(Number);
          const lum = ([r, g, b]) => {
            const f = c => {
              c /= 255;
              return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
            };
            return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
          };
          let back = null;
          for (let n = node; n && !back; n = n.parentElement) {
            const c = rgb(getComputedStyle(n).backgroundColor);
            if (c.length < 4 || c[3] > 0.5) back = c;
          }
          const a = lum(rgb(getComputedStyle(node).color)), b = lum(back);
          return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
        }""",
        selector,
    )
    return float(ratio)


def test_admins_see_all_users_jobs_and_the_panel_reads_well_in_the_dark_theme(
    page: Page, lab_server: LabServer, agent_socket: str, console: ConsoleLog, output_dir: Path
) -> None:
    from playwright.sync_api import expect

    mine = call(lab_server, "POST", JOBS, {"code": SLEEPER, "flavor": "cpu", "name": "ui-mine"})
    theirs = _submit_as(agent_socket, "alice", {"code": SLEEPER, "flavor": "cpu", "name": "ui-al"})
    _save_theme(lab_server, "JupyterLab Dark")
    try:
        panel = open_panel(page, lab_server, console, "admin")
        expect(panel.job_row(mine["id"])).to_have_count(1, timeout=15_000)
        expect(panel.job_row(theirs["id"])).to_have_count(0)
        everybody = panel.root.get_by_role("checkbox", name="All users")
        expect(everybody).to_be_visible()
        everybody.check()
        row = panel.job_row(theirs["id"])
        expect(row).to_have_count(1, timeout=15_000)
        expect(row.locator(".jp-mlinfra-JobRow-owner")).to_have_text("alice")
        expect(panel.job_row(mine["id"]).locator(".jp-mlinfra-JobRow-owner")).to_be_visible()

        # keyboard: from the switch, Tab reaches the newest job's first action; Enter runs it
        everybody.focus()
        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement.getAttribute('aria-label')")
        assert focused == "Logs of job ui-al", focused
        page.keyboard.press("Enter")
        expect(page.locator(".jp-mlinfra-LogView").get_by_role("status")).to_contain_text(
            "following the log", timeout=15_000
        )

        expect(page.locator("body")).to_have_attribute("data-jp-theme-light", "false")
        page.screenshot(path=str(output_dir / "sidebar-dark.png"))
        panel.root.screenshot(path=str(output_dir / "panel-dark.png"))
        for selector in (
            "#jp-mlinfra-panel .jp-mlinfra-Panel-title",
            "#jp-mlinfra-panel .jp-mlinfra-FlavorCard-title",
            "#jp-mlinfra-panel .jp-mlinfra-JobRow-name",
            "#jp-mlinfra-panel .jp-mlinfra-JobRow-owner",
            "#jp-mlinfra-panel .jp-mlinfra-JobRow-reason",
            "#jp-mlinfra-panel .jp-mlinfra-JobState",
            "#jp-mlinfra-panel .jp-mlinfra-JobRow-action",
            "#jp-mlinfra-panel .jp-mlinfra-StartSection-field",
        ):
            assert _contrast(page, selector) >= 3.0, selector
    finally:
        _save_theme(lab_server, "JupyterLab Light")  # for the session's later tests
        cancel_if_active(lab_server, mine["id"], theirs["id"])
    assert console.errors(mentioning="mlinfra") == []
