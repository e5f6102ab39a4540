"""A Kubernetes kernel's start, seen in JupyterLab: the sidebar's Kernels section, the status
bar and a notification follow it phase by phase (the image pull included) until the kernel is
ready, and a start the scheduler refuses ends with the scheduler's own message.

The server runs with ``backend = "kubernetes"`` on a real cluster (``kube_cluster``: a real
API server and scheduler, as the example's ServiceAccount), whose test kubelet really runs the
kernel pod's containers, so the notebook gets a real kernel.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from jupyter_mlinfra.backends.kubernetes.kernel_pod import pod_name
from tests.lab_server import LabServer, running_lab
from tests.test_kube_kernels import CATALOG, MISSING_IMAGE, PYTORCH_IMAGE, REPO
from tests.ui.panel import SidebarPanel, call, stop_new_kernels
from tests.ui.test_lab_extension import open_lab, run_from_palette

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

    from tests.cluster.fixture import KubeCluster
    from tests.ui.conftest import ConsoleLog

KERNELS = "mlinfra/api/v1/kernels"
PULL_SECONDS = 10.0
"""The kubelet's simulated image pull: long enough to watch the pulling phase, and to check
it through the page and the API, on a loaded machine too."""


@pytest.fixture
def kube_lab(kube_cluster: KubeCluster, tmp_path: Path) -> Iterator[LabServer]:
    """``jupyter lab`` with ``backend = "kubernetes"`` on the test's cluster: ``gpu-1`` has
    4 GPUs, ``gpu-2`` 8 (see ``take_gpu_2`` for a start the scheduler refuses). The image of
    the ``missing`` environment cannot be pulled."""
    kube_cluster.add_node("gpu-1", allocatable={"nvidia.com/gpu": "4"})
    kube_cluster.add_node("gpu-2", allocatable={"nvidia.com/gpu": "8"})
    kube_cluster.fail_image_pull(MISSING_IMAGE)
    config = {
        # a kernelspec per flavor too, as JupyterLab's "Change Kernel" offers them
        "MLInfraApp": {**CATALOG, "backend": "kubernetes", "flavor_launchers": True},
        "KubernetesCluster": {"kubeconfig": str(kube_cluster.kubeconfig)},
        "KubernetesKernels": {
            "init_source": str(REPO / "kernels"),
            "kernel_port": random.randrange(20000, 60000, 10),
            "start_timeout": 60.0,
        },
    }
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "jupyter_server_config.json").write_text(json.dumps(config))
    with running_lab(tmp_path, base_path="/kube-lab/") as server:
        try:
            yield server
        finally:
            stop_new_kernels(server, set())


def toast(page: Page, text: str) -> Locator:
    """The JupyterLab notification (toast) that says ``text``."""
    return page.locator(".Toastify__toast").filter(has_text=text)


def take_gpu_2(kube_cluster: KubeCluster) -> None:
    """Another team's pod takes all 8 GPUs of ``gpu-2``, placed there at once (as by another
    scheduler): what the panel offered a moment ago is gone when the kernel's pod comes."""
    other_team = kube_cluster.add_namespace(f"{kube_cluster.namespace}-other-team")
    kube_cluster.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "gpu-taker", "namespace": other_team},
            "spec": {
                "nodeName": "gpu-2",
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "main",
                        "image": "python:3.12",
                        "command": ["python", "-c", "import time; time.sleep(300)"],
                        "resources": {"limits": {"nvidia.com/gpu": "8"}},
                    }
                ],
            },
        }
    )


def start_from_panel(
    panel: SidebarPanel, flavor: str, before_click: Callable[[], None] = lambda: None
) -> None:
    """Pick ``flavor`` and the pytorch environment in the Start section; ``before_click()``;
    "New notebook"."""
    from playwright.sync_api import expect

    start = panel.start
    flavors = start.get_by_role("combobox", name="Flavor")
    expect(flavors.locator(f"option[value='{flavor}']")).to_be_enabled()
    flavors.select_option(flavor)
    start.get_by_role("combobox", name="Environment").select_option("pytorch")
    before_click()
    start.get_by_role("button", name="New notebook").click()


def test_a_gpu_kernel_start_shows_its_image_pull_then_is_ready(
    page: Page,
    kube_lab: LabServer,
    kube_cluster: KubeCluster,
    console: ConsoleLog,
    output_dir: Path,
) -> None:
    from playwright.sync_api import expect

    kube_cluster.image_pull_seconds = PULL_SECONDS
    open_lab(page, kube_lab, console)
    panel = SidebarPanel(page)
    panel.open()
    start_from_panel(panel, "a100x1")

    pulling = panel.root.locator("li.jp-mlinfra-KernelRow[data-phase='pulling']")
    expect(pulling).to_have_count(1, timeout=20_000)
    expect(pulling.locator(".jp-mlinfra-KernelRow-phase")).to_have_text("pulling image")
    expect(pulling.locator(".jp-mlinfra-KernelRow-reason")).to_contain_text("Pulling image")
    expect(pulling).to_contain_text("a100x1")
    notice = toast(page, "Starting a kernel on a100x1 — pulling image: Pulling image")
    expect(notice).to_have_count(1)
    status = page.locator(".jp-mlinfra-KernelStatus")
    # how long so far, counted in the page from the kernel's since
    expect(status).to_have_text(re.compile(r"^a100x1 · pulling image \(\d+ s\)$"))
    page.screenshot(path=str(output_dir / "kube-kernel-pulling.png"))
    starting = call(kube_lab, "GET", KERNELS)["kernels"]
    assert [(k["state"], k["phase"]) for k in starting] == [("starting", "pulling")]
    assert PYTORCH_IMAGE in starting[0]["reason"] or "kernel-init" in starting[0]["reason"]

    expect(toast(page, "Kernel ready on a100x1")).to_have_count(1, timeout=60_000)
    expect(page.locator(".jp-NotebookPanel")).to_have_count(1)
    ready = panel.root.locator(
        f"li.jp-mlinfra-KernelRow[data-kernel-id='{starting[0]['id']}'][data-state='running']"
    )
    expect(ready.locator(".jp-mlinfra-KernelRow-phase")).to_have_text("running", timeout=10_000)
    expect(ready.locator(".jp-mlinfra-KernelRow-reason")).to_be_hidden()
    expect(status).to_have_text("a100x1", timeout=10_000)  # the notebook's kernel's flavor
    expect(toast(page, "Starting a kernel on a100x1")).to_have_count(0)  # updated in place
    page.screenshot(path=str(output_dir / "kube-kernel-ready.png"))
    assert console.errors(mentioning="mlinfra") == []


def test_an_unschedulable_start_shows_the_schedulers_message(
    page: Page,
    kube_lab: LabServer,
    kube_cluster: KubeCluster,
    console: ConsoleLog,
    output_dir: Path,
) -> None:
    """a100x8 is offered (``gpu-2`` is free), then another team takes ``gpu-2`` between the
    offer and the click: the scheduler refuses the kernel's pod, in its own words."""
    from playwright.sync_api import expect

    open_lab(page, kube_lab, console)
    panel = SidebarPanel(page)
    panel.open()
    start_from_panel(panel, "a100x8", before_click=lambda: take_gpu_2(kube_cluster))

    refused = toast(page, "Cannot start a kernel on a100x8: ")
    expect(refused).to_have_count(1, timeout=30_000)
    expect(refused).to_contain_text("0/3 nodes are available: 3 Insufficient nvidia.com/gpu")
    expect(toast(page, "Starting a kernel on a100x8")).to_have_count(0)  # the same toast
    expect(page.locator(".jp-mlinfra-KernelStatus")).to_be_hidden()
    expect(page.locator(".jp-NotebookPanel")).to_have_count(0)
    expect(panel.root.locator("li.jp-mlinfra-KernelRow")).to_have_count(0, timeout=10_000)
    page.screenshot(path=str(output_dir / "kube-kernel-unschedulable.png"))
    [failed] = call(kube_lab, "GET", KERNELS)["kernels"]  # kept, saying why
    assert failed["state"] == "failed" and failed["error"]["status"] == 409, failed
    assert "Insufficient nvidia.com/gpu" in failed["error"]["message"], failed


def test_a_start_is_cancelled_from_its_notification(
    page: Page, kube_lab: LabServer, kube_cluster: KubeCluster, console: ConsoleLog
) -> None:
    """While the image pulls, the start's notification offers Cancel: the start is given up
    by its id, no notebook opens, and the kernel's pod goes."""
    from playwright.sync_api import expect

    kube_cluster.image_pull_seconds = 120.0
    try:
        open_lab(page, kube_lab, console)
        panel = SidebarPanel(page)
        panel.open()
        start_from_panel(panel, "a100x1")
        notice = toast(page, "Starting a kernel on a100x1 — pulling image")
        expect(notice).to_have_count(1, timeout=30_000)
        [kernel] = call(kube_lab, "GET", KERNELS)["kernels"]
        notice.get_by_role("button", name="Cancel").click()
        expect(toast(page, "Kernel start on a100x1 cancelled")).to_have_count(1, timeout=30_000)
        expect(toast(page, "Starting a kernel on a100x1")).to_have_count(0)  # the same toast
        expect(panel.root.locator("li.jp-mlinfra-KernelRow")).to_have_count(0, timeout=10_000)
        expect(page.locator(".jp-mlinfra-KernelStatus")).to_be_hidden()
        expect(page.locator(".jp-NotebookPanel")).to_have_count(0)
    finally:
        kube_cluster.image_pull_seconds = 0.0
    assert call(kube_lab, "GET", KERNELS)["kernels"] == []
    pod = kube_cluster.get("v1", "Pod", pod_name(kernel["id"]))
    assert pod is None or pod["metadata"].get("deletionTimestamp"), pod
    assert console.errors(mentioning="mlinfra") == []


def test_a_notebook_from_the_launcher_shows_its_kernels_start(
    page: Page,
    kube_lab: LabServer,
    kube_cluster: KubeCluster,
    console: ConsoleLog,
    output_dir: Path,
) -> None:
    """The notebook starts its kernel itself (``POST /api/sessions``): the same progress; and
    again when the notebook's kernel moves to another flavor, and when JupyterLab's "Change
    Kernel…" replaces it."""
    from playwright.sync_api import expect

    kube_cluster.image_pull_seconds = PULL_SECONDS
    open_lab(page, kube_lab, console)
    launcher = page.locator(".jp-Launcher")
    launcher.locator(".jp-LauncherCard", has_text="pytorch (").first.click()
    page.locator(".jp-NotebookPanel").wait_for()

    expect(toast(page, "Starting a kernel on cpu — pulling image: Pulling image")).to_have_count(
        1, timeout=20_000
    )
    status = page.locator(".jp-mlinfra-KernelStatus")
    expect(status).to_contain_text("cpu · pulling image")
    page.screenshot(path=str(output_dir / "kube-launcher-pulling.png"))

    expect(toast(page, "Kernel ready on cpu")).to_have_count(1, timeout=60_000)
    expect(status).to_have_text("cpu", timeout=10_000)
    kernels = call(kube_lab, "GET", KERNELS)["kernels"]
    assert [(k["flavor"], k["state"]) for k in kernels] == [("cpu", "running")]

    # moving the notebook's kernel to a GPU flavor takes a new pod: the same progress, then
    # the same kernel on the new flavor (its node pulls the image: a GPU node that an earlier
    # test's pod left the image on started it within a second, before the progress was seen)
    kube_cluster.kubelet.forget_images()
    panel = SidebarPanel(page)
    panel.open()
    panel.start.get_by_role("combobox", name="Flavor").select_option("a100x1")
    panel.start.get_by_role("button", name="Switch this notebook's kernel").click()
    expect(toast(page, "Starting a kernel on a100x1 — ")).to_have_count(1, timeout=20_000)
    expect(status).to_contain_text("a100x1 · ")  # its phase: preparing, pulling image...
    expect(toast(page, "now runs on a100x1")).to_have_count(1, timeout=60_000)
    expect(status).to_have_text("a100x1", timeout=10_000)
    moved = call(kube_lab, "GET", KERNELS)["kernels"]
    assert [(k["id"], k["flavor"], k["state"]) for k in moved] == [
        (kernels[0]["id"], "a100x1", "running")
    ]

    # JupyterLab's own "Change Kernel…" to the cpu flavor's kernelspec: a new kernel, followed
    # (its node pulls the image again, as it would after the image changed)
    kube_cluster.kubelet.forget_images()
    specs = call(kube_lab, "GET", "api/kernelspecs")["kernelspecs"]
    cpu_spec = specs["mlinfra-pytorch--cpu"]["spec"]["display_name"]
    run_from_palette(page, "Change Kernel…")
    dialog = page.get_by_role("dialog")
    dialog.locator("select").select_option(label=cpu_spec)
    dialog.get_by_role("button", name="Select Kernel").click()
    expect(toast(page, "Starting a kernel on cpu — ")).to_have_count(1, timeout=20_000)
    expect(status).to_contain_text("cpu · ")
    expect(toast(page, "Kernel ready on cpu")).to_have_count(1, timeout=60_000)
    expect(status).to_have_text("cpu", timeout=10_000)
    changed = call(kube_lab, "GET", KERNELS)["kernels"]
    assert [(k["flavor"], k["state"]) for k in changed] == [("cpu", "running")]
    assert changed[0]["id"] != kernels[0]["id"]
    assert console.errors(mentioning="mlinfra") == []


def test_a_notebook_whose_image_cannot_be_pulled_says_why(
    page: Page, kube_lab: LabServer, console: ConsoleLog, output_dir: Path
) -> None:
    """JupyterLab's own dialog carries the cluster's reason; no progress notification stays."""
    from playwright.sync_api import expect

    open_lab(page, kube_lab, console)
    launcher = page.locator(".jp-Launcher")
    launcher.locator(".jp-LauncherCard", has_text="missing (").first.click()

    dialog = page.get_by_role("dialog").filter(has_text="Error Starting Kernel")
    expect(dialog).to_contain_text("cannot pull image", timeout=30_000)
    expect(dialog).to_contain_text(MISSING_IMAGE)
    page.screenshot(path=str(output_dir / "kube-kernel-pull-error.png"))
    expect(toast(page, "Starting a kernel on")).to_have_count(0)
    expect(page.locator(".jp-mlinfra-KernelStatus")).to_be_hidden()
    assert call(kube_lab, "GET", KERNELS)["kernels"] == []


def test_a_kernel_killed_for_memory_says_why_when_it_comes_back(
    page: Page, kube_lab: LabServer, console: ConsoleLog, output_dir: Path
) -> None:
    """A cell allocates more than the cpu flavor's 1Gi: the cluster OOM-kills the kernel's
    container, JupyterLab restarts the kernel, and a notification and the Kernels section say
    why it died."""
    from playwright.sync_api import expect

    open_lab(page, kube_lab, console)
    page.locator(".jp-Launcher .jp-LauncherCard", has_text="pytorch (").first.click()
    idle = page.locator(".jp-StatusBar-Widget", has_text="Idle").first
    expect(idle).to_be_visible(timeout=60_000)
    panel = SidebarPanel(page)
    panel.open()
    page.locator(".jp-NotebookPanel .jp-Cell.jp-mod-active .cm-content").click()
    page.keyboard.type("blob = bytearray(1300 * 2**20)")
    page.keyboard.press("Shift+Enter")

    # JupyterLab's own dialog says only that the kernel died; the notification says why
    dialog = page.get_by_role("dialog").filter(has_text="appears to have died")
    expect(dialog).to_be_visible(timeout=60_000)
    died = toast(page, "The kernel on cpu died and is restarting: OOMKilled: the kernel ran out")
    expect(died).to_have_count(1, timeout=30_000)
    dialog.get_by_role("button").first.click()
    row = panel.root.locator("li.jp-mlinfra-KernelRow[data-state='running']")
    expect(row.locator(".jp-mlinfra-KernelRow-reason")).to_contain_text(
        "Restarted after it died at", timeout=30_000
    )
    expect(row.locator(".jp-mlinfra-KernelRow-reason")).to_contain_text("OOMKilled")
    expect(died).to_be_visible()  # it stays until dismissed
    page.screenshot(path=str(output_dir / "kube-kernel-oom.png"))
    assert console.errors(mentioning="mlinfra") == []
