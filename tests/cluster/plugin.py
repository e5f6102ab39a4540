"""pytest fixtures of the real control plane: one per test session, stopped at its end.

A failing test that used it gets the end of every component's log in its report."""

from __future__ import annotations

import os
import shutil
from collections.abc import Generator, Iterator

import pytest

from ..optional import need
from .control_plane import ControlPlane


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """etcd, kube-apiserver, kube-controller-manager and kube-scheduler, started once (tens of
    seconds; the first session on a machine also builds them: minutes)."""
    need(shutil.which("go") is not None, "Go is not installed (needed to build the cluster)")
    need(os.geteuid() == 0, "the test cluster adds its addresses to lo, which needs root")
    plane = ControlPlane(tmp_path_factory.mktemp("cluster"))
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    plane = getattr(item, "funcargs", {}).get("control_plane")
    if report.failed and isinstance(plane, ControlPlane):
        report.sections.append(("control plane logs", plane.log_tails()))
    return report
