"""A page object for the ML Infrastructure sidebar, and REST calls the browser tests share."""

from __future__ import annotations

import json
import urllib.request
from typing import TYPE_CHECKING, Any

from tests.lab_server import LabServer
from tests.ui.test_lab_extension import open_lab, run_from_palette

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

    from tests.ui.conftest import ConsoleLog

JOBS = "mlinfra/api/v1/jobs"
SLEEPER = "import time; time.sleep(60)"
ACTIVE = ("queued", "admitted", "starting", "running")


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

    def job_state(self, job_id: str) -> Locator:
        return self.job_row(job_id).locator(".jp-mlinfra-JobState")

    @property
    def start(self) -> Locator:
        return self.root.locator(".jp-mlinfra-StartSection")


def open_panel(page: Page, server: LabServer, console: ConsoleLog, workspace: str) -> SidebarPanel:
    """JupyterLab on a fresh ``workspace`` (see ``open_lab``) with the panel open."""
    open_lab(page, server, console, workspace=workspace)
    panel = SidebarPanel(page)
    panel.open()
    return panel


def call(server: LabServer, method: str, path: str, body: Any = None) -> Any:
    """One authenticated REST call to ``server``; the decoded JSON answer (None if empty)."""
    data = None if body is None else json.dumps(body).encode()
    headers = {**server.auth_header, "Content-Type": "application/json"}
    request = urllib.request.Request(server.url(path), data=data, headers=headers, method=method)
    with urllib.request.urlopen(request, timeout=30) as response:
        payload = response.read()
    return json.loads(payload) if payload else None


def cancel_if_active(server: LabServer, *job_ids: str) -> None:
    """Cancel the jobs a test started that still wait or run (its cleanup)."""
    for job_id in job_ids:
        if call(server, "GET", f"{JOBS}/{job_id}")["state"] in ACTIVE:
            call(server, "DELETE", f"{JOBS}/{job_id}")


def free_the_accelerators(server: LabServer) -> None:
    """Stop kernels earlier tests left holding accelerators, so the first job can start."""
    for kernel in call(server, "GET", "mlinfra/api/v1/kernels")["kernels"]:
        if kernel["state"] == "running" and kernel["devices"]:
            call(server, "DELETE", f"mlinfra/api/v1/kernels/{kernel['id']}")


def stop_new_kernels(server: LabServer, before: set[str]) -> list[dict[str, Any]]:
    """Stop the running kernels not in ``before``; answers them, and those culled already
    (this server culls a GPU kernel idle for 10 s, which a slow run may reach first)."""
    new = []
    for kernel in call(server, "GET", "mlinfra/api/v1/kernels")["kernels"]:
        if kernel["id"] in before or kernel["state"] not in ("running", "culled"):
            continue
        new.append(kernel)
        if kernel["state"] == "running":
            call(server, "DELETE", f"mlinfra/api/v1/kernels/{kernel['id']}")
    return new


def kernel_ids(server: LabServer) -> set[str]:
    return {k["id"] for k in call(server, "GET", "mlinfra/api/v1/kernels")["kernels"]}
