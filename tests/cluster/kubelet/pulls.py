"""Image pulls, simulated: no image can be pulled here (an image stands for a program on this
machine), but a pod's events and container states go through what a kubelet's do."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from .status import Obj

if TYPE_CHECKING:
    from .pods import PodWorker


async def pull(worker: PodWorker, container: Obj) -> None:
    """An image pull, simulated: events as a kubelet writes them, the pull time a test
    set, images a test made fail stay in ImagePullBackOff."""
    image = container.get("image", "")
    name = container["name"]
    if image in worker.settings.failing_images:
        worker.record("Pulling", f'Pulling image "{image}"', container=name)
        message = (
            f'Failed to pull image "{image}": rpc error: code = NotFound desc = '
            f'failed to pull and unpack image "{image}": not found'
        )
        worker.record("Failed", message, warning=True, container=name)
        worker.waiting(container, "ErrImagePull", message)
        worker.record("BackOff", f'Back-off pulling image "{image}"', warning=True, container=name)
        worker.waiting(container, "ImagePullBackOff", f'Back-off pulling image "{image}"')
        await asyncio.Event().wait()  # a kubelet retries forever, until the pod goes
    if container.get("imagePullPolicy") != "Always" and image in worker.node.pulled:
        worker.record(
            "Pulled", f'Container image "{image}" already present on machine', container=name
        )
        return
    worker.record("Pulling", f'Pulling image "{image}"', container=name)
    await asyncio.sleep(worker.settings.image_pull_seconds)
    worker.node.pulled.add(image)
    seconds = f"{worker.settings.image_pull_seconds:.3f}s"
    worker.record(
        "Pulled",
        f'Successfully pulled image "{image}" in {seconds} ({seconds} including waiting).'
        " Image size: 0 bytes.",
        container=name,
    )
