"""The sidebar never hides a control: its sections are sized to what they hold, measured in
chromium at two window sizes with no jobs and with 30, from the elements' bounding boxes.

These tests run their own ``jupyter lab`` and agent, so "no jobs" means none, whatever other
browser tests submitted.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.agents import AgentHome
from tests.conftest import write_fake_nvidia_smi
from tests.lab_server import LabServer, running_lab
from tests.ui.panel import JOBS, SLEEPER, SidebarPanel, call, cancel_if_active
from tests.ui.test_lab_extension import open_lab, run_from_palette

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

    from tests.ui.conftest import ConsoleLog

WINDOWS = [(1280, 720), (1920, 1080)]
SECTIONS = {
    "Flavors": ".jp-mlinfra-FlavorsSection",
    "Start": ".jp-mlinfra-StartSection",
    "Kernels": ".jp-mlinfra-KernelsSection",
    "Jobs": ".jp-mlinfra-JobsSection",
    "Queue timeline": ".jp-mlinfra-TimelineSection",
}
SIZES_KEY = "jupyter-mlinfra:panel-sizes"
"""Where the panel keeps the sizes a person dragged its sections to, in the state database."""

# Everything about the panel's geometry, read in one go: each section's visible box (its own
# box cut by the panel's and the window's), how tall its content is, and the boxes of the
# Start section's controls and of every job row and its buttons.
MEASURE = """(root) => {
  const box = r => ({left: r.left, top: r.top, right: r.right, bottom: r.bottom});
  const cut = (a, b) => ({left: Math.max(a.left, b.left), top: Math.max(a.top, b.top),
    right: Math.min(a.right, b.right), bottom: Math.min(a.bottom, b.bottom)});
  const content = root.querySelector('.jp-SidePanel-content');
  const window_ = {left: 0, top: 0, right: innerWidth, bottom: innerHeight};
  const frame = cut(box(content.getBoundingClientRect()), window_);
  const shown = n => n.offsetParent !== null && getComputedStyle(n).visibility !== 'hidden';
  const sections = {};
  for (const [name, selector] of Object.entries(SECTIONS)) {
    const node = root.querySelector(selector);
    sections[name] = {
      expanded: shown(node),
      visible: cut(box(node.getBoundingClientRect()), frame),
      height: node.clientHeight,
      contentHeight: node.scrollHeight,
      scrollTop: node.scrollTop
    };
  }
  const start = root.querySelector(SECTIONS['Start']);
  const controls = [...start.querySelectorAll('button, select')].filter(shown)
    .map(n => ({name: n.getAttribute('aria-label') || n.textContent.trim(),
                box: box(n.getBoundingClientRect())}));
  const rows = [...root.querySelectorAll('li.jp-mlinfra-JobRow')].map(row => ({
    id: row.dataset.jobId,
    box: box(row.getBoundingClientRect()),
    buttons: [...row.querySelectorAll('button')].filter(shown)
      .map(b => ({name: b.getAttribute('aria-label'), box: box(b.getBoundingClientRect())}))
  }));
  return {frame, sections, controls, rows, panelScroll: content.scrollTop};
}""".replace("SECTIONS", json.dumps(SECTIONS))

SCROLL_TO_ROW = """(root, index) => {
  const section = root.querySelector('.jp-mlinfra-JobsSection');
  const row = root.querySelectorAll('li.jp-mlinfra-JobRow')[index];
  const top = row.getBoundingClientRect().top - section.getBoundingClientRect().top;
  section.scrollTop += top;  // the row at the top of the section, or as near as it goes
}"""

NEXT_FRAMES = "() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))"

EPSILON = 0.5
"""Sub-pixel rounding of bounding boxes."""


def inside(inner: dict[str, float], outer: dict[str, float]) -> bool:
    return (
        inner["left"] >= outer["left"] - EPSILON
        and inner["top"] >= outer["top"] - EPSILON
        and inner["right"] <= outer["right"] + EPSILON
        and inner["bottom"] <= outer["bottom"] + EPSILON
    )


@pytest.fixture(scope="module")
def own_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    """A ``jupyter lab`` of its own, with four stand-in H100s and a private agent."""
    home = AgentHome(Path(tempfile.mkdtemp(prefix="mlp-", dir="/tmp")))
    tmp = tmp_path_factory.mktemp("layout")
    fake_bin = tmp / "bin"
    fake_bin.mkdir()
    write_fake_nvidia_smi(fake_bin, ["H100 80GB HBM3"] * 4)
    settings = [f"--MLInfraApp.{name}={value}" for name, value in home.settings.items()]
    path = f"{fake_bin}{os.pathsep}{os.environ['PATH']}"
    try:
        with running_lab(tmp, extra_env={"PATH": path}, extra_args=settings) as server:
            yield server
    finally:
        home.stop()
        shutil.rmtree(home.root, ignore_errors=True)


@pytest.fixture(scope="module")
def thirty_jobs(own_lab: LabServer) -> Iterator[list[str]]:
    """30 jobs: a few running, most queued behind them, ten cancelled (their rows offer
    Retry rather than Cancel)."""
    flavors = ["cpu", "h100x1", "h100x2", "h100x4"]
    ids = [
        call(own_lab, "POST", JOBS, {"code": SLEEPER, "flavor": flavors[i % 4], "name": f"j{i}"})[
            "id"
        ]
        for i in range(30)
    ]
    try:
        for job_id in ids[:10]:
            call(own_lab, "DELETE", f"{JOBS}/{job_id}")
        yield ids
    finally:
        cancel_if_active(own_lab, *ids)


def open_at(
    browser: Browser, server: LabServer, console: ConsoleLog, size: tuple[int, int], name: str
) -> tuple[Page, SidebarPanel]:
    context = browser.new_context(viewport={"width": size[0], "height": size[1]})
    page = context.new_page()
    page.on("console", console.on_console)
    page.on("pageerror", console.on_page_error)
    page.set_default_timeout(30_000)
    open_lab(page, server, console, workspace=name)
    panel = SidebarPanel(page)
    panel.open()
    return page, panel


def settled(page: Page, panel: SidebarPanel, jobs: int | None) -> dict[str, Any]:
    """The panel's geometry once it shows ``jobs`` rows (None: its jobs, however many) and
    has stopped resizing."""
    from playwright.sync_api import expect

    if jobs is None:
        status = panel.root.locator(".jp-mlinfra-JobsSection .jp-mlinfra-Section-status")
        expect(status).not_to_have_text("Loading jobs…")
    else:
        expect(panel.root.locator("li.jp-mlinfra-JobRow")).to_have_count(jobs, timeout=30_000)
    expect(panel.root.locator(".jp-mlinfra-FlavorCard").first).to_be_visible()
    previous: dict[str, Any] = {}
    for _ in range(100):  # two identical readings 200 ms apart: the layout has settled
        page.wait_for_timeout(200)
        geometry: dict[str, Any] = panel.root.evaluate(MEASURE)
        if geometry["sections"] == previous.get("sections"):
            return geometry
        previous = geometry
    raise AssertionError(f"the panel kept resizing: {previous['sections']}")


def check_nothing_is_clipped(panel: SidebarPanel, geometry: dict[str, Any]) -> None:
    sections = geometry["sections"]
    assert geometry["panelScroll"] == 0
    start = sections["Start"]["visible"]
    names = [c["name"] for c in geometry["controls"]]
    assert names == [
        "Flavor",
        "Environment",
        "New notebook",
        "New console",
        "Switch this notebook's kernel",
    ], names
    for control in geometry["controls"]:
        assert inside(control["box"], start), (control, start)
    assert sections["Start"]["contentHeight"] <= sections["Start"]["height"], sections["Start"]

    # a section with room to spare while another scrolls would be hiding that one's rows
    # for nothing; only the last section takes what nobody needs
    overflowing = [n for n, s in sections.items() if s["contentHeight"] > s["height"] + 1]
    for name, section in list(sections.items())[:-1]:
        if overflowing and section["expanded"]:
            assert section["height"] <= section["contentHeight"] + 1, (name, sections)

    jobs = sections["Jobs"]
    rows = geometry["rows"]
    seen = [row for row in rows if inside(row["box"], jobs["visible"])]
    assert len(seen) >= min(1, len(rows)), (jobs, rows[:2])  # one whole row at least
    for index in range(len(rows)):  # each row in turn, scrolled into the section's view
        panel.root.evaluate(SCROLL_TO_ROW, index)
        after = panel.root.evaluate(MEASURE)
        row, visible = after["rows"][index], after["sections"]["Jobs"]["visible"]
        assert row["buttons"], row
        for button in row["buttons"]:
            assert inside(button["box"], visible), (button, visible)


@pytest.mark.parametrize("size", WINDOWS, ids=lambda s: f"{s[0]}x{s[1]}")
def test_no_control_is_clipped_with_no_jobs(
    browser: Browser,
    own_lab: LabServer,
    console: ConsoleLog,
    output_dir: Path,
    size: tuple[int, int],
) -> None:
    page, panel = open_at(browser, own_lab, console, size, f"empty-{size[0]}")
    try:
        geometry = settled(page, panel, 0)
        page.screenshot(path=str(output_dir / f"panel-{size[0]}x{size[1]}-0-jobs.png"))
        check_nothing_is_clipped(panel, geometry)
        # empty sections take little: a line saying so
        for name in ("Kernels", "Jobs"):
            assert geometry["sections"][name]["height"] < 100, geometry["sections"]
    finally:
        page.context.close()
    assert console.errors(mentioning="mlinfra") == []


@pytest.mark.parametrize("size", WINDOWS, ids=lambda s: f"{s[0]}x{s[1]}")
def test_no_control_is_clipped_with_30_jobs(
    browser: Browser,
    own_lab: LabServer,
    thirty_jobs: list[str],
    console: ConsoleLog,
    output_dir: Path,
    size: tuple[int, int],
) -> None:
    page, panel = open_at(browser, own_lab, console, size, f"busy-{size[0]}")
    try:
        geometry = settled(page, panel, len(thirty_jobs))
        page.screenshot(path=str(output_dir / f"panel-{size[0]}x{size[1]}-30-jobs.png"))
        check_nothing_is_clipped(panel, geometry)
        page.screenshot(path=str(output_dir / f"panel-{size[0]}x{size[1]}-30-jobs-scrolled.png"))
    finally:
        page.context.close()
    assert console.errors(mentioning="mlinfra") == []


def saved_sizes(server: LabServer, workspace: str) -> Any:
    """The sizes the panel keeps in the state database (None when it keeps none)."""
    request = urllib.request.Request(
        server.url(f"lab/api/workspaces/{workspace}"), headers=server.auth_header
    )
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())["data"].get(SIZES_KEY)


def heights(panel: SidebarPanel) -> dict[str, int]:
    sections = panel.root.evaluate(MEASURE)["sections"]
    return {name: section["height"] for name, section in sections.items()}


def test_dragged_sizes_are_kept_across_reloads_until_fitted_again(
    browser: Browser, own_lab: LabServer, console: ConsoleLog, output_dir: Path
) -> None:
    from playwright.sync_api import expect

    workspace = "dragged"

    def wait_until(check: Callable[[], bool]) -> None:
        for _ in range(150):
            if check():
                return
            page.wait_for_timeout(200)
        raise AssertionError("never happened")

    page, panel = open_at(browser, own_lab, console, (1280, 720), workspace)
    job = ""
    try:
        fitted = settled(page, panel, None)["sections"]
        # the handle under the Start section, dragged 60 px down: Start grows, Kernels shrinks
        handle = panel.root.locator(f"{SECTIONS['Start']} + .lm-SplitPanel-handle")
        box = handle.bounding_box()
        assert box is not None
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x, y + 30, steps=3)
        page.mouse.move(x, y + 60, steps=3)
        page.mouse.up()
        dragged = heights(panel)
        assert dragged["Start"] >= fitted["Start"]["height"] + 55, (dragged, fitted)
        wait_until(lambda: saved_sizes(own_lab, workspace) is not None)

        # a change in what the sections hold does not undo what the person chose
        job = call(own_lab, "POST", JOBS, {"code": SLEEPER, "flavor": "cpu", "name": "kept"})["id"]
        expect(panel.job_row(job)).to_have_count(1)
        page.evaluate(NEXT_FRAMES)  # where a layout asked for with the new row would be done
        assert heights(panel) == dragged

        open_lab(page, own_lab, console, workspace, reset=False)  # a reload
        expect(panel.job_row(job)).to_have_count(1)
        wait_until(lambda: heights(panel) == dragged)
        page.screenshot(path=str(output_dir / "panel-dragged-after-reload.png"))

        run_from_palette(page, "Fit Panel Sections to Their Content")
        wait_until(lambda: heights(panel)["Start"] == fitted["Start"]["height"])
        wait_until(lambda: saved_sizes(own_lab, workspace) is None)
    finally:
        if job:
            cancel_if_active(own_lab, job)
        page.context.close()
    assert console.errors(mentioning="mlinfra") == []
