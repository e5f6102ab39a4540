"""Live updates in the browser: an open sidebar asks the server nothing while nothing happens,
and a job's changes appear in it as they happen, pushed over the tab's one websocket."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from tests.lab_server import LabServer
from tests.ui.panel import JOBS, call, cancel_if_active, open_panel

if TYPE_CHECKING:
    from playwright.sync_api import Page, Request, WebSocket

    from tests.ui.conftest import ConsoleLog

API = "/mlinfra/api/v1/"
QUIET_MS = 6000
"""How long an idle sidebar is watched: three of the old 2 s polls."""


class Traffic:
    """What the page asks of the extension's API, and what its websocket receives."""

    def __init__(self, page: Page) -> None:
        self.requests: list[str] = []
        self.sockets: list[str] = []
        self.pushed: list[dict[str, Any]] = []
        page.on("request", self._on_request)
        page.on("websocket", self._on_websocket)

    def _on_request(self, request: Request) -> None:
        if API in request.url:
            self.requests.append(f"{request.method} {request.url.split(API, 1)[1]}")

    def _on_websocket(self, ws: WebSocket) -> None:
        if API not in ws.url:
            return
        self.sockets.append(ws.url)
        ws.on("framereceived", self._on_frame)

    def _on_frame(self, payload: str | bytes) -> None:
        self.pushed.append(json.loads(payload))

    def states(self, job_id: str) -> list[str]:
        jobs = [m["job"] for m in self.pushed if m["type"] == "job"]
        return [j["state"] for j in jobs if j["id"] == job_id]

    def live(self) -> bool:
        flags = [m["live"] for m in self.pushed if m["type"] in ("hello", "live")]
        return bool(flags) and flags[-1]


def test_an_idle_sidebar_asks_nothing_and_a_jobs_changes_arrive_pushed(
    page: Page, lab_server: LabServer, console: ConsoleLog
) -> None:
    from playwright.sync_api import expect

    traffic = Traffic(page)
    panel = open_panel(page, lab_server, console, "live-updates")
    expect(panel.root.locator(".jp-mlinfra-FlavorCard").first).to_be_visible()
    for _ in range(300):
        if traffic.live():
            break
        page.wait_for_timeout(100)
    assert traffic.live(), traffic.pushed
    assert len(traffic.sockets) == 1 and traffic.sockets[0].split("?")[0].endswith("/live")

    page.wait_for_timeout(1000)  # what the first showing and the resync read, done
    traffic.requests.clear()
    page.wait_for_timeout(QUIET_MS)
    assert traffic.requests == [], "an idle sidebar asked the server"

    job: dict[str, Any] = {}
    try:
        job = call(lab_server, "POST", JOBS, {"code": "import time; time.sleep(2)", "name": "live"})
        expect(panel.job_row(job["id"])).to_be_visible()
        expect(panel.job_state(job["id"])).to_have_text("running")
        expect(panel.job_state(job["id"])).to_have_text("succeeded")
    finally:
        cancel_if_active(lab_server, *([job["id"]] if job else []))
    states = traffic.states(job["id"])
    assert states[0] == "queued" and states[-1] == "succeeded", states
    # the job's changes came pushed; the only reads are flavors' availability, once per change
    # of what the job holds (its start, its end), and nothing else
    asked = {r.split("?")[0] for r in traffic.requests}
    assert asked <= {"GET flavors"}, traffic.requests
    assert len(traffic.requests) <= 2, traffic.requests
    # chromium drops loads when the machine's addresses change (a cluster test's subnet)
    errors = [e for e in console.errors(mentioning="mlinfra") if "NETWORK_CHANGED" not in e.text]
    assert errors == []
