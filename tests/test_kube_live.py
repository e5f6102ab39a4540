"""Live updates on the real test cluster (``tests/cluster``): the server's watches of its jobs'
objects push each change of a job to an open tab, as the local agent's stream does."""

from __future__ import annotations

from typing import Any

import pytest

from .cluster.fixture import KubeCluster
from .jobs_client import TERMINAL, call
from .kube_server import server_config, stop_watches_first
from .test_live import Tab

__all__ = ["stop_watches_first"]  # a fixture, for this module too


@pytest.fixture
def jp_server_config(kube_cluster: KubeCluster) -> dict[str, Any]:
    return server_config(kube_cluster)


async def test_a_cluster_jobs_changes_are_pushed_to_the_tab(
    jp_fetch: Any, jp_ws_fetch: Any, kube_cluster: KubeCluster
) -> None:
    tab = Tab(await jp_ws_fetch("mlinfra", "api", "v1", "live"))
    try:
        hello = await tab.next()
        if not hello["live"]:  # the first tab starts the watches
            await tab.until(lambda m: m == {"type": "live", "live": True}, timeout=120)
        job = await call(jp_fetch, "jobs", "POST", {"code": "print('pushed')", "name": "kube"})
        done = await tab.job(job["id"], TERMINAL, timeout=180)
        assert done["state"] == "succeeded", done
        states = [j["state"] for j in tab.jobs() if j["id"] == job["id"]]
        assert states[0] == "queued" and "running" in states, states
        assert done == await call(jp_fetch, f"jobs/{job['id']}")

        # cancelling a running job: its end is pushed too
        sleeper = await call(jp_fetch, "jobs", "POST", {"code": "import time; time.sleep(600)"})
        await tab.job(sleeper["id"], {"running"}, timeout=180)
        await call(jp_fetch, f"jobs/{sleeper['id']}", "DELETE")
        cancelled = await tab.job(sleeper["id"], {"cancelled"}, timeout=120)
        assert cancelled["reason"] == "cancelled"
    finally:
        tab.ws.close()
