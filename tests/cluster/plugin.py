"""pytest fixtures of the real cluster, one of each per test session, stopped at its end:

- ``control_plane``: etcd, kube-apiserver, kube-controller-manager, kube-scheduler;
- ``kubelet``: the test kubelet on it, with no node (tests add theirs; only one kubelet per
  control plane can run, as it owns the cluster's pod network);
- ``kueue_and_jobset``: Kueue and JobSet installed from their release manifests, their pods
  running on the node ``system`` (cordoned once they run, so no test pod lands there and
  capacity counts only the tests' nodes), their webhooks served.

A failing test that used the control plane gets the end of every component's log in its
report."""

from __future__ import annotations

import os
import shutil
from collections.abc import Generator, Iterator

import pytest

from ..optional import need
from . import addons
from .control_plane import ControlPlane
from .kubelet import Kubelet


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """The control plane, started once (seconds; the first session on a machine also builds
    it: tens of minutes)."""
    need(shutil.which("go") is not None, "Go is not installed (needed to build the cluster)")
    need(os.geteuid() == 0, "the test cluster adds addresses and network namespaces: root only")
    plane = ControlPlane(tmp_path_factory.mktemp("cluster"))
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def kubelet(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Kubelet]:
    running = Kubelet(control_plane, tmp_path_factory.mktemp("kubelet")).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def kueue_and_jobset(control_plane: ControlPlane, kubelet: Kubelet) -> ControlPlane:
    """Kueue and JobSet as on a real cluster: release manifests, pods, served webhooks."""
    addons.install_all(control_plane, kubelet)
    return control_plane


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    plane = getattr(item, "funcargs", {}).get("control_plane")
    if report.failed and isinstance(plane, ControlPlane):
        report.sections.append(("control plane logs", plane.log_tails()))
    return report
