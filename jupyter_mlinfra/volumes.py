"""Volumes that kernels and jobs see: the user's home, datasets, shared storage.

Pure: a volume is declared once (an environment's or a flavor's ``volumes``, or the home volume
of ``KubernetesPods.home_volume``) as a plain mapping and validated here, each mistake named
with where it is (``environments[0] 'pytorch'.volumes[1] 'imagenet': mount_path must be an
absolute path``). What it means is the same on both backends: a kernel or a job finds the
volume's files at ``mount_path``. On Kubernetes the volume comes from its source (a
PersistentVolumeClaim, NFS, a CSI driver, a host path) and is mounted there; on one machine
(the local backend) ``mount_path`` is a folder of that machine, which must exist.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .models import catalog as wire

SOURCES = ("claim", "nfs", "csi", "host_path")
"""Where a volume's files come from, one per volume: ``claim`` (a PersistentVolumeClaim's
name), ``nfs`` ({server, path}), ``csi`` ({driver, volume_attributes}), ``host_path``."""
FIELDS = ("name", "mount_path", "read_only", "sub_path", "description", *SOURCES)
HOME_FIELDS = ("mount_path", "read_only", "sub_path", *SOURCES)
RESERVED_PATHS = (
    "/dev", "/proc", "/sys", "/etc", "/mlinfra", "/var/lib/mlinfra-kernel",
    "/var/run/mlinfra-kernel-key", "/var/run/secrets", "/etc/mlinfra-podinfo",
)  # fmt: skip
"""Paths the pods' own mounts and the system use: a volume may not cover them, nor sit in
them."""
MAX_NAME = 40
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_TEMPLATE = "{username}"


@dataclass(frozen=True)
class Volume:
    """One volume, as declared; ``{username}`` in ``claim`` and ``sub_path`` stands for the
    owner's name (which the Kubernetes backend makes a DNS label, as it does namespaces)."""

    name: str
    mount_path: str
    read_only: bool = False
    claim: str = ""
    nfs: Mapping[str, str] = field(default_factory=dict)
    csi: Mapping[str, Any] = field(default_factory=dict)
    host_path: str = ""
    sub_path: str = ""
    description: str = ""

    @property
    def kind(self) -> str:
        """Which source it has: one of ``SOURCES``, or "" (a local folder only)."""
        for kind in SOURCES:
            if getattr(self, kind):
                return kind
        return ""

    def source(self, user: str = "") -> str:
        """What it is mounted from, in words (``claim claim-alice``, ``nfs fs:/exports``)."""
        kind = self.kind
        if kind == "claim":
            return f"claim {self.claim_name(user)}"
        if kind == "nfs":
            return f"nfs {self.nfs.get('server', '')}:{self.nfs.get('path', '')}"
        if kind == "csi":
            return f"csi {self.csi.get('driver', '')}"
        if kind == "host_path":
            return f"host path {self.host_path}"
        return f"folder {self.mount_path}"

    def claim_name(self, user: str) -> str:
        return self.claim.replace(_TEMPLATE, user) if user else self.claim

    def sub_path_for(self, user: str) -> str:
        return self.sub_path.replace(_TEMPLATE, user) if user else self.sub_path

    def holds(self, path: str) -> bool:
        """Whether ``path`` (absolute) is this volume's mount path or inside it."""
        path = posixpath.normpath(path)
        return path == self.mount_path or path.startswith(self.mount_path.rstrip("/") + "/")

    def to_json(self, user: str = "") -> wire.Volume:
        return {
            "name": self.name,
            "mount_path": self.mount_path,
            "read_only": self.read_only,
            "kind": self.kind or "folder",
            "source": self.source(user),
            "description": self.description,
        }


def parse_volumes(raw: Any, where: str, problems: list[str]) -> tuple[Volume, ...]:
    """A list of volume mappings; each problem appended to ``problems`` as ``where...: why``."""
    if raw is None:
        return ()
    if not isinstance(raw, list | tuple):
        problems.append(f"{where}: must be a list of volumes, got {raw!r}")
        return ()
    volumes: list[Volume] = []
    for index, item in enumerate(raw):
        name = item.get("name") if isinstance(item, Mapping) else None
        at = f"{where}[{index}]" + (f" {name!r}" if isinstance(name, str) else "")
        volume = parse_volume(item, at, problems)
        if volume is None:
            continue
        for other in volumes:
            if other.name == volume.name:
                problems.append(f"{at}: duplicate name {volume.name!r}")
            elif other.holds(volume.mount_path) or volume.holds(other.mount_path):
                problems.append(
                    f"{at}: mount_path {volume.mount_path} overlaps volume {other.name!r} at "
                    f"{other.mount_path}"
                )
        volumes.append(volume)
    return tuple(volumes)


def parse_volume(
    raw: Any, where: str, problems: list[str], *, home: bool = False, mount_path: str = ""
) -> Volume | None:
    """One volume mapping (``home``: the home volume, whose name is ``home`` and whose
    ``mount_path`` defaults to ``mount_path``); None when it has problems (appended)."""
    known = HOME_FIELDS if home else FIELDS
    if not isinstance(raw, Mapping):
        problems.append(f"{where}: must be a mapping with {', '.join(known)}, got {raw!r}")
        return None
    found: list[str] = []
    for key in raw:
        if key not in known:
            found.append(f"{where}: unknown field {key!r}; known fields: {', '.join(known)}")
    name = "home" if home else _name(raw.get("name"), where, found)
    path = _mount_path(raw.get("mount_path", mount_path), where, found)
    sources = [kind for kind in SOURCES if raw.get(kind)]
    if len(sources) > 1:
        found.append(f"{where}: give one source of {', '.join(SOURCES)}, got {', '.join(sources)}")
    if home and not sources:
        found.append(f"{where}: needs a source, one of {', '.join(SOURCES)}")
    volume = Volume(
        name=name,
        mount_path=path,
        read_only=_flag(raw.get("read_only", False), f"{where}.read_only", found),
        claim=_text(raw.get("claim", ""), f"{where}.claim", found),
        nfs=_nfs(raw.get("nfs"), f"{where}.nfs", found),
        csi=_csi(raw.get("csi"), f"{where}.csi", found),
        host_path=_absolute(raw.get("host_path", ""), f"{where}.host_path", found),
        sub_path=_sub_path(raw.get("sub_path", ""), f"{where}.sub_path", found),
        description=_text(raw.get("description", ""), f"{where}.description", found),
    )
    problems.extend(found)
    return None if found else volume


def overlapping(volumes: Iterable[Volume]) -> str:
    """The first two of ``volumes`` (home, an environment's, a flavor's together) whose names or
    mount paths clash, in words; "" when none do."""
    seen: list[Volume] = []
    for volume in volumes:
        for other in seen:
            if other.name == volume.name:
                return f"two volumes are named {volume.name!r}"
            if other.holds(volume.mount_path) or volume.holds(other.mount_path):
                return (
                    f"volume {volume.name!r} at {volume.mount_path} overlaps volume "
                    f"{other.name!r} at {other.mount_path}"
                )
        seen.append(volume)
    return ""


def _name(value: Any, where: str, found: list[str]) -> str:
    if not isinstance(value, str) or not _NAME.match(value) or len(value) > MAX_NAME:
        found.append(
            f"{where}.name: must be a name of lower-case letters, digits and '-' (at most "
            f"{MAX_NAME}), got {value!r}"
        )
        return ""
    if value == "home":
        found.append(f"{where}.name: 'home' is the home volume's (KubernetesPods.home_volume)")
    return value


def _mount_path(value: Any, where: str, found: list[str]) -> str:
    path = _absolute(value, f"{where}.mount_path", found)
    if not path and not any(m.startswith(f"{where}.mount_path") for m in found):
        found.append(f"{where}.mount_path: missing (an absolute path such as /data/imagenet)")
    if path == "/":
        found.append(f"{where}.mount_path: may not be /")
    for reserved in RESERVED_PATHS if path else ():
        if path == reserved or path.startswith(reserved + "/") or reserved.startswith(path + "/"):
            found.append(f"{where}.mount_path: {path} clashes with {reserved}, which pods use")
            break
    return path


def _absolute(value: Any, where: str, found: list[str]) -> str:
    if value in ("", None):
        return ""
    if not isinstance(value, str) or not value.startswith("/") or "\0" in value:
        found.append(f"{where}: must be an absolute path, got {value!r}")
        return ""
    return posixpath.normpath(value)


def _sub_path(value: Any, where: str, found: list[str]) -> str:
    text = _text(value, where, found)
    if text.startswith("/") or ".." in text.split("/"):
        found.append(f"{where}: must be a relative path without '..', got {text!r}")
        return ""
    return text


def _text(value: Any, where: str, found: list[str]) -> str:
    if not isinstance(value, str):
        found.append(f"{where}: must be a string, got {value!r}")
        return ""
    return value


def _flag(value: Any, where: str, found: list[str]) -> bool:
    if not isinstance(value, bool):
        found.append(f"{where}: must be true or false, got {value!r}")
        return False
    return value


def _nfs(value: Any, where: str, found: list[str]) -> dict[str, str]:
    if value in (None, {}):
        return {}
    if (
        not isinstance(value, Mapping)
        or set(value) != {"server", "path"}
        or not all(isinstance(v, str) and v for v in value.values())
    ):
        found.append(f"{where}: must be a mapping with server and path, got {value!r}")
        return {}
    if not value["path"].startswith("/"):
        found.append(f"{where}.path: must be an absolute path, got {value['path']!r}")
    return dict(value)


def _csi(value: Any, where: str, found: list[str]) -> dict[str, Any]:
    if value in (None, {}):
        return {}
    if not isinstance(value, Mapping) or not isinstance(value.get("driver"), str):
        found.append(f"{where}: must be a mapping with driver (and volume_attributes)")
        return {}
    unknown = set(value) - {"driver", "volume_attributes", "fs_type"}
    if unknown:
        found.append(f"{where}: unknown fields {sorted(unknown)}; known: driver, "
                     "volume_attributes, fs_type")  # fmt: skip
    attributes = value.get("volume_attributes", {})
    if not isinstance(attributes, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in attributes.items()
    ):
        found.append(f"{where}.volume_attributes: must be a mapping of strings to strings")
    return dict(value)
