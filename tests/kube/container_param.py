"""The ``container`` query parameter of ``pods/exec`` and ``pods/log``: it names the container
unless the pod has only one (the API server's rules and words)."""

from __future__ import annotations

from typing import Any

from .errors import bad_request
from .store import Obj


def chosen_container(pod: Obj, wanted: str | None, *, with_init: bool = False) -> dict[str, Any]:
    """The container named ``wanted`` (an init container too ``with_init``, as logs allow), or
    the pod's only container when no name is given."""
    containers = pod["spec"]["containers"]
    name = pod["metadata"]["name"]
    if wanted is None:
        if len(containers) != 1:
            raise bad_request(
                f"a container name must be specified for pod {name}, "
                f"choose one of: [{' '.join(c['name'] for c in containers)}]"
            )
        return containers[0]  # type: ignore[no-any-return]
    candidates = [*(pod["spec"].get("initContainers", []) if with_init else []), *containers]
    for container in candidates:
        if container["name"] == wanted:
            return container  # type: ignore[no-any-return]
    raise bad_request(f"container {wanted} is not valid for pod {name}")
