"""Volumes on one machine: an environment's or a flavor's ``volumes`` mean the same thing as
on a cluster, the files a kernel or job finds at ``mount_path``; here nothing is mounted, so
``mount_path`` is a folder of this machine, which must exist (a dataset on a local disk, an
NFS share the machine mounts). ``read_only`` is not enforced: the files' permissions apply."""

from __future__ import annotations

import os
from collections.abc import Iterable

from ...errors import Conflict
from ...volumes import Volume


def check_folders(volumes: Iterable[Volume], what: str) -> None:
    """A Conflict naming the first volume whose folder this machine does not have."""
    for volume in volumes:
        if not os.path.isdir(volume.mount_path):
            raise Conflict(
                f"volume {volume.name!r} of this {what} is declared at {volume.mount_path}, "
                "which is not a folder of this machine (the local backend mounts nothing: the "
                "folder must exist)",
                "volumes",
            )
