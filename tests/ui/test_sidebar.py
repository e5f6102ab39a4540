"""The ML Infrastructure sidebar panel, driven in a real JupyterLab by headless chromium."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.lab_server import LabServer
from tests.ui.panel import SLEEPER, call, free_the_accelerators, open_panel, stop_new_kernels

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from tests.ui.conftest import ConsoleLog


def test_the_sidebar_shows_flavors_and_cancels_a_queued_job(
    page: Page, lab_server: LabServer, console: ConsoleLog, output_dir: Path
) -> None:
    from playwright.sync_api import expect

    free_the_accelerators(lab_server)
    panel = open_panel(page, lab_server, console, "sidebar")
    expect(panel.root.get_by_text("ML Infrastructure", exact=True)).to_be_visible()

    card = panel.flavor_card("h100x4")
    expect(card).to_have_count(1)
    expect(card).to_contain_text("4 × H100 80GB HBM3")
    expect(card).to_contain_text("of 4 H100 80GB HBM3 free")

    jobs = "mlinfra/api/v1/jobs"
    first = call(lab_server, "POST", jobs, {"code": SLEEPER, "flavor": "h100x4", "name": "ui-a"})
    second = call(lab_server, "POST", jobs, {"code": SLEEPER, "flavor": "h100x4", "name": "ui-b"})
    try:
        running = panel.job_row(first["id"])
        queued = panel.job_row(second["id"])
        expect(running.locator(".jp-mlinfra-JobState")).to_have_text("running", timeout=20_000)
        expect(queued.locator(".jp-mlinfra-JobState")).to_have_text("queued")
        expect(queued).to_contain_text("position 1")
        reason = call(lab_server, "GET", f"{jobs}/{second['id']}")["reason"]
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
            state = call(lab_server, "GET", f"{jobs}/{job['id']}")["state"]
            if state in ("queued", "admitted", "starting", "running"):
                call(lab_server, "DELETE", f"{jobs}/{job['id']}")

    expect(running.locator(".jp-mlinfra-JobState")).to_have_text("cancelled", timeout=15_000)
    assert console.errors(mentioning="mlinfra") == []


def test_the_start_section_opens_a_notebook_on_a_flavor(
    page: Page, lab_server: LabServer, console: ConsoleLog, output_dir: Path
) -> None:
    from playwright.sync_api import expect

    free_the_accelerators(lab_server)
    panel = open_panel(page, lab_server, console, "start")
    start = panel.root.locator(".jp-mlinfra-StartSection")
    flavor = start.get_by_role("combobox", name="Flavor")
    expect(flavor.locator("option[value='h100x1']")).to_have_count(1)
    flavor.select_option("h100x1")
    before = {k["id"] for k in call(lab_server, "GET", "mlinfra/api/v1/kernels")["kernels"]}
    start.get_by_role("button", name="New notebook").click()
    new: list[dict[str, Any]] = []
    try:
        status = page.locator(".jp-mlinfra-KernelStatus")
        expect(status).to_contain_text("h100x1", timeout=15_000)
        expect(status).to_contain_text("GPU")
        expect(page.locator(".jp-NotebookPanel")).to_have_count(1)
        page.screenshot(path=str(output_dir / "start-section.png"))
    finally:
        new = stop_new_kernels(lab_server, before)
    assert [k["flavor"] for k in new] == ["h100x1"]
    assert console.errors(mentioning="mlinfra") == []


def test_the_queue_timeline_draws_a_bar_per_job(
    page: Page, lab_server: LabServer, console: ConsoleLog, output_dir: Path
) -> None:
    from playwright.sync_api import expect

    free_the_accelerators(lab_server)
    panel = open_panel(page, lab_server, console, "timeline")
    jobs = "mlinfra/api/v1/jobs"
    job = call(lab_server, "POST", jobs, {"code": SLEEPER, "flavor": "h100x2", "name": "ui-t"})
    try:
        chart = panel.root.locator("svg.jp-mlinfra-Timeline-chart[data-flavor='h100x2']")
        bar = chart.locator(f"g.jp-mlinfra-Timeline-bar[data-job-id='{job['id']}']")
        expect(bar).to_have_count(1, timeout=15_000)
        expect(bar.locator("title")).to_contain_text("ui-t")
        expect(bar).to_have_class("jp-mlinfra-Timeline-bar jp-mlinfra-mod-running", timeout=15_000)
        expect(bar.locator("rect.jp-mlinfra-Timeline-run")).to_have_count(1)
        panel.root.locator(".jp-mlinfra-TimelineSection").scroll_into_view_if_needed()
        page.screenshot(path=str(output_dir / "queue-timeline.png"))
        # a day at a glance: the same bar, on a grid in hours
        panel.root.get_by_role("combobox", name="Time span").select_option(label="last 24 hours")
        expect(chart.locator("text").first).to_have_text("-24h")
        expect(bar).to_have_count(1)
    finally:
        call(lab_server, "DELETE", f"{jobs}/{job['id']}")
    assert console.errors(mentioning="mlinfra") == []
