"""The jupyter-mlinfra labextension, driven in a real JupyterLab by headless chromium."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.lab_server import LabServer

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from tests.ui.conftest import ConsoleLog

ACTIVATED = "jupyter-mlinfra is activated"


def open_lab(
    page: Page,
    server: LabServer,
    console: ConsoleLog,
    workspace: str | None = None,
    *,
    reset: bool = True,
) -> None:
    """Load JupyterLab and wait until its shell is up and our plugin has activated.

    With ``workspace``, open that workspace from scratch (``?reset``), so nothing earlier
    tests left open (notebooks whose kernels are gone) comes back; ``reset=False`` opens it
    as it was saved, as a reload does.
    """
    where = f"lab/workspaces/{workspace}?{'reset&' * reset}" if workspace else "lab?"
    activations = console.texts("log").count(ACTIVATED)
    page.goto(server.url(f"{where}token={server.token}"))
    page.get_by_role("menubar").first.wait_for(state="visible")
    page.locator("#jupyterlab-splash").wait_for(state="detached")
    for _ in range(600):  # plugins activate before the splash goes; allow 60 s anyway
        if console.texts("log").count(ACTIVATED) > activations:
            break
        page.wait_for_timeout(100)
    assert console.texts("log").count(ACTIVATED) > activations, console.entries


def run_from_palette(page: Page, label: str) -> None:
    """Open the command palette (Ctrl+Shift+C) and run the command labelled ``label``."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    search = page.get_by_placeholder("SEARCH", exact=True)
    item = page.get_by_role("menuitem", name=label).first
    deadline = time.monotonic() + 60
    while True:
        # the shell may still be activating restored widgets, which takes the key press or
        # closes the palette (also between the typing and the click): open it again
        page.keyboard.press("Control+Shift+C")
        try:
            search.fill(label, timeout=5_000)
            item.click(timeout=5_000)
            return
        except PlaywrightTimeoutError:
            if time.monotonic() > deadline:
                raise


def test_show_flavors_dialog(
    page: Page, lab_server: LabServer, console: ConsoleLog, output_dir: Path
) -> None:
    from playwright.sync_api import expect

    open_lab(page, lab_server, console, workspace="flavors")
    run_from_palette(page, "Show Accelerator Flavors")

    dialog = page.get_by_role("dialog").filter(has_text="Accelerator flavors")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("columnheader", name="Accelerator")).to_be_visible()
    cpu_row = dialog.get_by_role("row").filter(has=page.get_by_role("cell", name="cpu", exact=True))
    expect(cpu_row).to_have_count(1)
    whole_machine = dialog.get_by_role("row").filter(
        has=page.get_by_role("cell", name="h100x4", exact=True)
    )
    expect(whole_machine).to_contain_text("4 × H100 80GB HBM3")
    expect(whole_machine).to_contain_text("4 of 4 H100 80GB HBM3 free")
    page.screenshot(path=str(output_dir / "flavors-dialog.png"))

    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()

    assert console.errors(mentioning="mlinfra") == []


def test_the_launcher_starts_a_kernel_pinned_to_its_flavor(
    page: Page, lab_server: LabServer, console: ConsoleLog, output_dir: Path
) -> None:
    from playwright.sync_api import expect

    open_lab(page, lab_server, console, workspace="launcher")
    launcher = page.locator(".jp-Launcher")
    expect(launcher).to_be_visible()
    # one card per environment on its default flavor, and (flavor_launchers) one per flavor
    expect(launcher.get_by_text("(CPU · 1 core · 4Gi)").first).to_be_visible()
    card = launcher.locator(".jp-LauncherCard", has_text="· 2 × H100 80GB HBM3").first
    page.screenshot(path=str(output_dir / "launcher.png"))
    card.click()
    page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for()
    # the status bar names the kernel by its flavor; run only once it is idle
    status = page.locator(".jp-StatusBar-Widget", has_text="2 × H100 80GB HBM3").first
    expect(status).to_contain_text("Idle", timeout=60_000)
    editor = page.locator(".jp-NotebookPanel .jp-Cell .cm-content").first
    editor.click()
    page.keyboard.type(
        "import os; print(os.environ['MLINFRA_FLAVOR'], os.environ['CUDA_VISIBLE_DEVICES'])"
    )
    page.keyboard.press("Shift+Enter")
    output = page.locator(".jp-NotebookPanel .jp-OutputArea-output").first
    expect(output).to_contain_text("h100x2 0,1", timeout=60_000)
    page.screenshot(path=str(output_dir / "flavor-kernel.png"))
    assert console.errors(mentioning="mlinfra") == []


def test_an_idle_gpu_kernel_warns_in_the_notebook_then_is_culled(
    page: Page, lab_server: LabServer, console: ConsoleLog, output_dir: Path
) -> None:
    from playwright.sync_api import expect

    open_lab(page, lab_server, console, workspace="culling")
    run_from_palette(page, "New Launcher")  # the restored workspace may show no Launcher
    launcher = page.locator(".jp-Launcher").last
    launcher.locator(".jp-LauncherCard", has_text="· 1 × H100 80GB HBM3").first.click()
    status = page.locator(".jp-StatusBar-Widget", has_text="1 × H100 80GB HBM3").first
    expect(status).to_contain_text("Idle", timeout=60_000)
    kernel_id = _only_kernel_on(lab_server, "h100x1")
    notice = page.get_by_text("This kernel has been idle for", exact=False).first
    expect(notice).to_be_visible(timeout=30_000)
    page.wait_for_timeout(600)  # let the toast finish sliding in, for the picture
    page.screenshot(path=str(output_dir / "idle-notice.png"))
    for _ in range(300):  # culled within the warning period (6 s) after the notice
        kernels = _get(lab_server, "mlinfra/api/v1/kernels")["kernels"]
        culled = [k for k in kernels if k["id"] == kernel_id and k["state"] == "culled"]
        if culled:
            break
        page.wait_for_timeout(100)
    assert culled and culled[0]["reason"].startswith("idle for"), kernels


def _get(server: LabServer, path: str) -> Any:
    request = urllib.request.Request(server.url(path), headers=server.auth_header)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _only_kernel_on(server: LabServer, flavor: str) -> str:
    running = [
        k
        for k in _get(server, "mlinfra/api/v1/kernels")["kernels"]
        if k["flavor"] == flavor and k["state"] == "running"
    ]
    assert len(running) == 1, running
    return str(running[0]["id"])
