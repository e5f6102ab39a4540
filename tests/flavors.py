"""The test flavor the Kubernetes backend's object tests share; each test module adds, with
``dataclasses.replace``, only the fields its checks are about."""

from __future__ import annotations

from jupyter_mlinfra.catalog import Accelerator, Flavor

#: two whole GPUs: requests and limits of an extended resource, and a multi-GPU node
A100X2 = Flavor(
    name="a100x2",
    display_name="2 × A100",
    cpu=8,
    memory_bytes=64 * 2**30,
    accelerator=Accelerator(kind="nvidia.com/gpu", model="A100", count=2),
)
