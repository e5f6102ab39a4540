# jupyter-mlinfra settings shared by the hub's mlinfra service (the agent) and every user's
# server: the same catalog, quotas and priorities on both ends. Groups and admins come from
# JupyterHub (jupyterhub_config.py); the settings below only refer to them.
c = get_config()  # noqa: F821 -- provided by Jupyter when it loads this file

c.MLInfraApp.backend = "local"

# To try it without GPUs, four stand-ins; on a GPU machine delete this: nvidia-smi finds them.
c.MLInfraApp.local_accelerators = [
    {"index": i, "kind": "nvidia.com/gpu", "model": "A100-SXM4-80GB"} for i in range(4)
]

c.MLInfraApp.flavors = [
    {"name": "cpu", "display_name": "CPU · 1 core · 4Gi", "cpu": 1, "memory": "4Gi"},
    {
        "name": "a100x1",
        "display_name": "1 × A100 · 2 CPU · 16Gi",
        "accelerator": {"kind": "nvidia.com/gpu", "model": "A100", "count": 1},
        "cpu": 2,
        "memory": "16Gi",
    },
    {
        "name": "a100x2",
        "display_name": "2 × A100 · 4 CPU · 32Gi",
        "accelerator": {"kind": "nvidia.com/gpu", "model": "A100", "count": 2},
        "cpu": 4,
        "memory": "32Gi",
        "groups": ["research"],  # a hub group
    },
]
# Environments: none listed means this Python, plus PyTorch, TensorFlow and JAX if it has them.

c.MLInfraApp.default_quota = {"max_gpus": 1, "max_running_jobs": 2, "max_queued_jobs": 10}
c.MLInfraApp.group_quotas = {
    "research": {"max_gpus": 4, "max_running_jobs": 8, "max_queued_jobs": 100},
    "students": {"max_gpus": 1, "max_running_jobs": 1, "max_queued_jobs": 5},
}
# Priority classes (low, normal, high) are entitlements: everybody submits at "normal" (the
# default) and may step down to "low"; only research may submit at "high", which with
# preemption evicts lower jobs; hub admins may use every class and reprioritise any job.
c.MLInfraApp.priority_entitlements = {"low": {}, "high": {"groups": ["research"]}}
c.MLInfraApp.preemption = True  # high-priority jobs may evict low ones
c.MLInfraApp.accelerator_kernel_idle_timeout = 3600  # idle GPU kernels give their GPUs back
