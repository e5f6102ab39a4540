"""Fixtures for browser tests: one real ``jupyter lab`` and one headless chromium."""

from __future__ import annotations

import getpass
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests import optional
from tests.agents import AgentHome
from tests.conftest import write_fake_nvidia_smi
from tests.lab_server import LabServer, running_lab

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Error, Page

OUTPUT_DIR = Path(__file__).parent / "output"

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# tests/conftest.py loads pytest-jupyter, whose autouse fixtures create and close an asyncio
# loop and run ServerApp cleanup in it around every test. Browser tests run no in-process
# ServerApp, and Playwright's sync API marks its own loop as running in this thread between
# calls, so those fixtures would fail here. Same-named fixtures in this directory replace them.
@pytest.fixture(autouse=True)
def jp_asyncio_loop() -> None:
    """Replaces pytest-jupyter's loop: browser tests need none."""


@pytest.fixture(autouse=True)
def jp_server_cleanup() -> None:
    """Replaces pytest-jupyter's in-process ServerApp cleanup: there is none to clean."""


@pytest.fixture(scope="session")
def agent_home() -> Iterator[AgentHome]:
    """The private local agent of the session's ``jupyter lab``; stopped after."""
    home = AgentHome(Path(tempfile.mkdtemp(prefix="mlu-", dir="/tmp")))
    try:
        yield home
    finally:
        home.stop()
        shutil.rmtree(home.root, ignore_errors=True)


@pytest.fixture(scope="session")
def agent_socket(agent_home: AgentHome) -> str:
    """Where the agent listens: tests speak to it as a hub would, for other users."""
    return agent_home.socket


@pytest.fixture(scope="session")
def lab_server(
    tmp_path_factory: pytest.TempPathFactory, agent_home: AgentHome
) -> Iterator[LabServer]:
    """One ``jupyter lab`` for the whole session, under a non-root base URL.

    A base URL other than ``/`` makes sure the frontend joins API paths to it correctly; a
    stand-in ``nvidia-smi`` gives it four H100s, as on a GPU workstation; the Launcher offers
    a kernel per flavor; its user is an admin (who may list everybody's jobs); a private
    agent holds the kernels' leases.
    """
    tmp = tmp_path_factory.mktemp("lab")
    fake_bin = tmp / "bin"
    fake_bin.mkdir()
    write_fake_nvidia_smi(fake_bin, ["H100 80GB HBM3"] * 4)
    path = f"{fake_bin}{os.pathsep}{os.environ['PATH']}"
    settings = [f"--MLInfraApp.{name}={value}" for name, value in agent_home.settings.items()]
    settings += [
        "--MLInfraApp.flavor_launchers=True",
        f"--MLInfraApp.admin_users={getpass.getuser()}",
        # idle GPU kernels: a notice after 4 s, culled after 10 s
        "--MLInfraApp.accelerator_kernel_idle_timeout=10",
        "--MLInfraApp.accelerator_kernel_cull_warning=6",
    ]
    with running_lab(
        tmp, base_path="/lab-test/", extra_env={"PATH": path}, extra_args=settings
    ) as server:
        yield server


@pytest.fixture(scope="session")
def lab(lab_server: LabServer) -> tuple[str, str]:
    """``(base_url, token)`` of the session's ``jupyter lab``."""
    return lab_server.base_url, lab_server.token


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    optional.need(
        importlib.util.find_spec("playwright") is not None,
        "playwright (Python) is not installed: pip install -e '.[test]'",
    )
    executable = optional.chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass(frozen=True)
class ConsoleEntry:
    type: str
    """``log``, ``error``, ``warning``... or ``pageerror`` for an uncaught exception."""
    text: str
    where: str
    """The script or resource URL the message came from (the stack for a page error)."""

    def mentions(self, needle: str) -> bool:
        return needle.lower() in f"{self.text}\n{self.where}".lower()


class ConsoleLog:
    """Everything the page printed to its console, and its uncaught errors."""

    def __init__(self) -> None:
        self.entries: list[ConsoleEntry] = []

    def on_console(self, message: ConsoleMessage) -> None:
        where = str(message.location.get("url", ""))
        self.entries.append(ConsoleEntry(message.type, message.text, where))

    def on_page_error(self, error: Error) -> None:
        self.entries.append(ConsoleEntry("pageerror", str(error), error.stack or ""))

    def texts(self, kind: str | None = None) -> list[str]:
        return [e.text for e in self.entries if kind is None or e.type == kind]

    def errors(self, mentioning: str = "") -> list[ConsoleEntry]:
        """Errors, optionally only those whose text or origin mentions ``mentioning``."""
        return [
            e for e in self.entries if e.type in ("error", "pageerror") and e.mentions(mentioning)
        ]


@pytest.fixture
def console() -> ConsoleLog:
    return ConsoleLog()


@pytest.fixture
def page(browser: Browser, console: ConsoleLog) -> Iterator[Page]:
    """A fresh browser context and page; its console goes to the ``console`` fixture."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.on("console", console.on_console)
    page.on("pageerror", console.on_page_error)
    page.set_default_timeout(30_000)
    from playwright.sync_api import expect

    # assertions wait for what the page shows next: 5 s by default, short on a loaded machine
    expect.set_options(timeout=20_000)
    try:
        yield page
    finally:
        context.close()


@pytest.fixture(scope="session")
def output_dir() -> Path:
    """Screenshots and other artefacts (ignored by git)."""
    OUTPUT_DIR.mkdir(exist_ok=True)
    return OUTPUT_DIR


LOG_TAIL_LINES = 200
"""How much of the lab server's log a failed browser test shows."""


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed browser test shows what the page printed and the end of its server's log:
    an intermittent failure on CI can then be read from the CI log alone."""
    report = yield
    if report.failed:
        funcargs = getattr(item, "funcargs", {})
        for value in funcargs.values():
            if isinstance(value, ConsoleLog):
                lines = [f"{e.type}: {e.text} ({e.where})" for e in value.entries]
                report.sections.append(("browser console", "\n".join(lines)))
        for name, value in funcargs.items():
            if isinstance(value, LabServer) and value.log_path.exists():
                tail = value.log().splitlines()[-LOG_TAIL_LINES:]
                report.sections.append((f"{name} log (end)", "\n".join(tail)))
    return report
