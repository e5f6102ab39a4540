"""The user's files in kernel and job pods: volumes and their mounts, and the working directory.

Pure. A kernel's or a job's pod gets the home volume (``KubernetesPods.home_volume``, mounted
where the user's server has its root directory, so paths are the same on both), then the
environment's and the flavor's volumes, each at its ``mount_path``; a kernel then runs in the
notebook's folder and a job in the folder it was submitted from, when a mounted volume holds
that folder (otherwise in the image's working directory: the folder is not in the pod).
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from typing import Any

from ...errors import InvalidInput
from ...volumes import Volume, overlapping
from .names import dns_label

Manifest = dict[str, Any]

HOME_VOLUME = "user-home"
"""The pod's name for the home volume; others are ``vol-<name>``."""


def pod_volume_name(volume: Volume) -> str:
    return HOME_VOLUME if volume.name == "home" else f"vol-{volume.name}"


def claim_name(volume: Volume, user: str) -> str:
    """The claim of ``volume`` for ``user``: a name with ``{username}`` is made a DNS label,
    as ``KubernetesCluster.namespace`` is (z2jh's ``claim-{username}``)."""
    name = volume.claim_name(user)
    return dns_label(name) if name != volume.claim else name


def volume_source(volume: Volume, user: str) -> Manifest:
    """A pod's volume for ``volume`` (its source; the mount says where)."""
    name = pod_volume_name(volume)
    kind = volume.kind
    if kind == "claim":
        claim: Manifest = {"claimName": claim_name(volume, user)}
        if volume.read_only:
            claim["readOnly"] = True
        return {"name": name, "persistentVolumeClaim": claim}
    if kind == "nfs":
        nfs: Manifest = {"server": volume.nfs["server"], "path": volume.nfs["path"]}
        if volume.read_only:
            nfs["readOnly"] = True
        return {"name": name, "nfs": nfs}
    if kind == "csi":
        csi: Manifest = {"driver": volume.csi["driver"]}
        if volume.csi.get("volume_attributes"):
            csi["volumeAttributes"] = dict(volume.csi["volume_attributes"])
        if volume.csi.get("fs_type"):
            csi["fsType"] = volume.csi["fs_type"]
        if volume.read_only:
            csi["readOnly"] = True
        return {"name": name, "csi": csi}
    if kind == "host_path":
        return {"name": name, "hostPath": {"path": volume.host_path, "type": "Directory"}}
    raise InvalidInput(
        f"volume {volume.name!r} ({volume.mount_path}) names no source a cluster can mount "
        "(claim, nfs, csi or host_path): it is a folder of the local backend's machine",
        "volumes",
    )


def volume_mount(volume: Volume, user: str) -> Manifest:
    mount: Manifest = {"name": pod_volume_name(volume), "mountPath": volume.mount_path}
    sub_path = volume.sub_path_for(dns_label(user)) if volume.sub_path else ""
    if sub_path:
        mount["subPath"] = sub_path
    if volume.read_only:
        mount["readOnly"] = True
    return mount


def mounted(home: Volume | None, *declared: Sequence[Volume]) -> tuple[Volume, ...]:
    """The volumes a pod gets, home first, then each declaring entry's (the environment's, the
    flavor's); InvalidInput when two clash."""
    volumes = ((home,) if home is not None else ()) + tuple(v for d in declared for v in d)
    clash = overlapping(volumes)
    if clash:
        raise InvalidInput(f"cannot mount these volumes together: {clash}", "volumes")
    return volumes


def add_volumes(spec: Manifest, container: Manifest, volumes: Sequence[Volume], user: str) -> None:
    """Add ``volumes`` to a pod spec and their mounts to its ``container`` (in place)."""
    spec["volumes"] = [*spec.get("volumes", []), *(volume_source(v, user) for v in volumes)]
    container["volumeMounts"] = [
        *container.get("volumeMounts", []),
        *(volume_mount(v, user) for v in volumes),
    ]


def working_dir(path: str, volumes: Sequence[Volume]) -> str:
    """``path`` (a folder of the user's server, absolute) when one of ``volumes`` holds it,
    so the pod has it at the same path; "" otherwise (the image's working directory)."""
    if not path.startswith("/") or "\0" in path:
        return ""
    path = posixpath.normpath(path)
    return path if any(v.holds(path) for v in volumes) else ""


def home_env(volumes: Sequence[Volume]) -> dict[str, str]:
    """``HOME`` as the user's server has it when the home volume is mounted writable (an
    environment's own HOME wins over it): caches and dotfiles land in the user's home."""
    for volume in volumes:
        if volume.name == "home" and not volume.read_only:
            return {"HOME": volume.mount_path}
    return {}


RESULTS = ".mlinfra/results"
"""Where in the home volume a job's node 0 leaves pulled variables larger than a Secret holds
(``<home>/.mlinfra/results/<attempt>-result.pkl``): the user's server reads them there."""


def results_dir(volumes: Sequence[Volume]) -> str:
    """The folder for large pulled variables in a writable home volume; "" without one."""
    for volume in volumes:
        if volume.name == "home" and not volume.read_only:
            return f"{volume.mount_path.rstrip('/')}/{RESULTS}"
    return ""
