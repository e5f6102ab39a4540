"""The magics are backend-agnostic: from a real kernel that a ``jupyter lab`` with ``backend =
"kubernetes"`` started, ``%%mlinfra submit --nodes 2`` runs a PyTorch gloo job as a JobSet of
two pods on a real cluster with JobSet and Kueue (two ranks on their own pod IPs, meeting at
node 0's DNS name, which the cluster's CoreDNS answers), follows both ranks' logs and pulls the
reduced tensor back into the kernel."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from .cluster.fixture import KubeCluster
from .kube_server import kueue_objects
from .lab_server import running_kernel, running_lab
from .optional import need

TWO_NODE_ALL_REDUCE = """\
%%mlinfra submit --nodes 2 --env pytorch --wait --pull reduced,nodes
import os
import torch
import torch.distributed as dist

dist.init_process_group("gloo")  # env://: MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE
rank = dist.get_rank()
reduced = torch.tensor([float(rank + 1), 10.0])
dist.all_reduce(reduced)
nodes = os.environ["NNODES"]
print("rank", rank, "on node", os.environ["NODE_RANK"], "sum", reduced.tolist())
dist.destroy_process_group()
"""


@pytest.mark.kueue_and_jobset
def test_two_node_pytorch_job_from_a_real_kernel(kube_cluster: KubeCluster, tmp_path: Path) -> None:
    need(importlib.util.find_spec("torch") is not None, "PyTorch is not installed")
    for obj in kueue_objects(kube_cluster.namespace, cpus="4"):  # the queue jobs go to
        kube_cluster.create(obj)
    config = {
        "MLInfraApp": {
            "backend": "kubernetes",
            "flavors": [{"name": "cpu", "cpu": 1, "memory": "1Gi", "max_nodes": 2}],
            "environments": [
                {"name": "pytorch", "framework": "pytorch", "image": "pytorch/pytorch:2.13.0"}
            ],
        },
        "KubernetesCluster": {"kubeconfig": str(kube_cluster.kubeconfig)},
    }
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "jupyter_server_config.json").write_text(json.dumps(config))
    with running_lab(tmp_path) as lab, running_kernel(lab) as execute:
        assert execute("%load_ext jupyter_mlinfra") == ""
        output = execute(TWO_NODE_ALL_REDUCE)
        assert "[rank 0] rank 0 on node 0 sum [3.0, 20.0]\n" in output, output
        assert "[rank 1] rank 1 on node 1 sum [3.0, 20.0]\n" in output, output
        assert "pulled reduced, nodes from job" in output and "Traceback" not in output
        check = execute("print(type(reduced).__module__, reduced.tolist(), nodes)")
        assert check == "torch [3.0, 20.0] 2\n"
    (jobset,) = kube_cluster.list("jobset.x-k8s.io/v1alpha2", "JobSet")
    assert jobset["spec"]["replicatedJobs"][0]["template"]["spec"]["completions"] == 2
    assert jobset["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "default"
