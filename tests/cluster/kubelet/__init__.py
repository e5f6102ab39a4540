"""The test kubelet: the node side of the real control plane (see README.md)."""

from .kubelet import Kubelet
from .node import NodeSpec

__all__ = ["Kubelet", "NodeSpec"]
