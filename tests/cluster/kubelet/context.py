"""What the pods of a node share: the kubelet's settings and the node's connection, and a
container's running process."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .api import Api
from .cgroups import Cgroups, ContainerCgroup
from .containers import Image, ProcessSpec
from .events import Recorder
from .logs import LogBook
from .pod_network import PodNetwork
from .sources import Sources
from .status import Obj


@dataclass(frozen=True)
class ImageContent:
    """What an image a test added carries besides this machine's programs (which every image
    has: a container's root is the host's): files, and the image's ``ENV``."""

    files: Mapping[str, str]
    """Path in the container -> host path, bound read-only (an image's own files, readable by
    its users whatever the host's folders above them allow)."""
    env: Mapping[str, str]
    """Variables before the pod's own (which win), as a runtime applies an image's ``ENV``."""


@dataclass
class Settings:
    """What every node's kubelet shares, some of it changeable by tests."""

    root: Path
    host_ip: str
    apiserver_port: int
    network: PodNetwork
    cgroups: Cgroups
    logs: LogBook
    images: Mapping[str, Image]
    image_users: Mapping[str, tuple[int, int]]
    submounts: list[str]
    nameserver: str | None
    cluster_domain: str = "cluster.local"
    image_pull_seconds: float = 0.0
    failing_images: set[str] = field(default_factory=set)
    image_contents: dict[str, ImageContent] = field(default_factory=dict)
    #: first delay and cap of the restart back-off (a real kubelet's: 10 s doubling to 5 min)
    restart_backoff: tuple[float, float] = (0.1, 2.0)


@dataclass
class NodeContext:
    """What a pod worker needs from its node."""

    name: str
    api: Api
    recorder: Recorder
    sources: Sources
    settings: Settings
    allocatable: Obj
    pulled: set[str] = field(default_factory=set)


@dataclass
class Running:
    """A container's process while it runs."""

    process: asyncio.subprocess.Process
    cgroup: ContainerCgroup
    spec: ProcessSpec
