"""The ML Infrastructure sidebar panel, driven in a real JupyterLab by headless chromium."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.lab_server import LabServer
from tests.ui.test_lab_extension import open_lab, run_from_palette

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

    from tests.ui.conftest import ConsoleLog

SLEEPER = "import time; time.sleep(60)"


class SidebarPanel:
    """The panel as a person sees it: its sections, cards and job rows."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.root = page.locator("#jp-mlinfra-panel")

    def open(self) -> None:
        run_from_palette(self.page, "Open ML Infrastructure Panel")
        self.root.wait_for(state="visible")

    def flavor_card(self, name: str) -> Locator:
        return self.root.get_by_role("listitem").filter(
            has=self.page.locator("code", has_text=name)
        )

    def job_row(self, job_id: str) -> Locator:
        return self.root.locator(f"li.jp-mlinfra-JobRow[data-job-id='{job_id}']")


def _call(server: LabServer, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    headers = {**server.auth_header, "Content-Type": "application/json"}
    request = urllib.request.Request(server.url(path), data=data, headers=headers, method=method)
    with urllib.request.urlopen(request, timeout=30) as response:
        payload = response.read()
    return json.loads(payload) if payload else None


def _free_the_accelerators(server: LabServer) -> None:
    """Stop kernels earlier tests left holding accelerators, so the first job can start."""
    for kernel in _call(server, "GET", "mlinfra/api/v1/kernels")["kernels"]:
        if kernel["state"] == "running" and kernel["devices"]:
            _call(server, "DELETE", f"mlinfra/api/v1/kernels/{kernel['id']}")


def test_the_sidebar_shows_flavors_and_cancels_a_queued_job(
    page: Page, lab_server: LabServer, console: ConsoleLog, output_dir: Path
) -> None:
    from playwright.sync_api import expect

    _free_the_accelerators(lab_server)
    open_lab(page, lab_server, console, workspace="sidebar")
    panel = SidebarPanel(page)
    panel.open()
    expect(panel.root.get_by_text("ML Infrastructure", exact=True)).to_be_visible()

    card = panel.flavor_card("h100x4")
    expect(card).to_have_count(1)
    expect(card).to_contain_text("4 × H100 80GB HBM3")
    expect(card).to_contain_text("of 4 H100 80GB HBM3 free")

    jobs = "mlinfra/api/v1/jobs"
    first = _call(lab_server, "POST", jobs, {"code": SLEEPER, "flavor": "h100x4", "name": "ui-a"})
    second = _call(lab_server, "POST", jobs, {"code": SLEEPER, "flavor": "h100x4", "name": "ui-b"})
    try:
        running = panel.job_row(first["id"])
        queued = panel.job_row(second["id"])
        expect(running.locator(".jp-mlinfra-JobState")).to_have_text("running", timeout=20_000)
        expect(queued.locator(".jp-mlinfra-JobState")).to_have_text("queued")
        expect(queued).to_contain_text("position 1")
        reason = _call(lab_server, "GET", f"{jobs}/{second['id']}")["reason"]
        assert reason
        expect(queued.locator(".jp-mlinfra-JobRow-reason")).to_have_text(reason)
        expect(queued).to_contain_text("h100x4")
        page.screenshot(path=str(output_dir / "sidebar.png"))

        queued.get_by_role("button", name="Cancel job ui-b").click()
        expect(queued.locator(".jp-mlinfra-JobState")).to_have_text("cancelled")
        expect(queued.get_by_role("button", name="Retry job ui-b")).to_be_visible()
        expect(queued.get_by_role("button", name="Cancel job ui-b")).to_be_hidden()
    finally:
        for job in (first, second):
            state = _call(lab_server, "GET", f"{jobs}/{job['id']}")["state"]
            if state in ("queued", "admitted", "starting", "running"):
                _call(lab_server, "DELETE", f"{jobs}/{job['id']}")

    expect(running.locator(".jp-mlinfra-JobState")).to_have_text("cancelled", timeout=15_000)
    assert console.errors(mentioning="mlinfra") == []


def test_the_start_section_opens_a_notebook_on_a_flavor(
    page: Page, lab_server: LabServer, console: ConsoleLog, output_dir: Path
) -> None:
    from playwright.sync_api import expect

    _free_the_accelerators(lab_server)
    open_lab(page, lab_server, console, workspace="start")
    panel = SidebarPanel(page)
    panel.open()
    start = panel.root.locator(".jp-mlinfra-StartSection")
    flavor = start.get_by_role("combobox", name="Flavor")
    expect(flavor.locator("option[value='h100x1']")).to_have_count(1)
    flavor.select_option("h100x1")
    before = {k["id"] for k in _call(lab_server, "GET", "mlinfra/api/v1/kernels")["kernels"]}
    start.get_by_role("button", name="New notebook").click()
    new: list[dict[str, Any]] = []
    try:
        status = page.locator(".jp-mlinfra-KernelStatus")
        expect(status).to_contain_text("h100x1", timeout=15_000)
        expect(status).to_contain_text("GPU")
        expect(page.locator(".jp-NotebookPanel")).to_have_count(1)
        page.screenshot(path=str(output_dir / "start-section.png"))
    finally:
        for kernel in _call(lab_server, "GET", "mlinfra/api/v1/kernels")["kernels"]:
            if kernel["id"] not in before and kernel["state"] == "running":
                new.append(kernel)
                _call(lab_server, "DELETE", f"mlinfra/api/v1/kernels/{kernel['id']}")
    assert [k["flavor"] for k in new] == ["h100x1"]
    assert console.errors(mentioning="mlinfra") == []


def test_the_queue_timeline_draws_a_bar_per_job(
    page: Page, lab_server: LabServer, console: ConsoleLog, output_dir: Path
) -> None:
    from playwright.sync_api import expect

    _free_the_accelerators(lab_server)
    open_lab(page, lab_server, console, workspace="timeline")
    panel = SidebarPanel(page)
    panel.open()
    jobs = "mlinfra/api/v1/jobs"
    job = _call(lab_server, "POST", jobs, {"code": SLEEPER, "flavor": "h100x2", "name": "ui-t"})
    try:
        chart = panel.root.locator("svg.jp-mlinfra-Timeline-chart[data-flavor='h100x2']")
        bar = chart.locator(f"g.jp-mlinfra-Timeline-bar[data-job-id='{job['id']}']")
        expect(bar).to_have_count(1, timeout=15_000)
        expect(bar.locator("title")).to_contain_text("ui-t")
        expect(bar).to_have_class("jp-mlinfra-Timeline-bar jp-mlinfra-mod-running", timeout=15_000)
        expect(bar.locator("rect.jp-mlinfra-Timeline-run")).to_have_count(1)
        panel.root.locator(".jp-mlinfra-TimelineSection").scroll_into_view_if_needed()
        page.screenshot(path=str(output_dir / "queue-timeline.png"))
    finally:
        _call(lab_server, "DELETE", f"{jobs}/{job['id']}")
    assert console.errors(mentioning="mlinfra") == []
