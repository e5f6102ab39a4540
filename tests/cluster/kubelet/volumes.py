"""Pod volumes as host folders, which the launcher binds at their mount paths: emptyDir,
secret, configMap, downwardAPI, projected (with a real service-account token from the
TokenRequest API), hostPath and persistentVolumeClaim (its PersistentVolume's hostPath or local
path).

Content volumes are written as a real kubelet writes them (its AtomicWriter): the files live in
a timestamped folder that a ``..data`` symlink points to, and each visible name is a symlink
through ``..data``, so an update (a Secret changed, a token refreshed, a label added) swaps every
file at once; programs that watch their certificates (controller-runtime's certwatcher) see what
they would see on a node. With ``fsGroup`` the files belong to that group, as upstream."""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .containers import Obj, field_value, resource_field

#: kind ("secret"/"configmap"), name -> data (None: absent); a Secret's data is decoded
DataLookup = Callable[[str, str], "dict[str, bytes] | None"]
#: (volume name, projection index) -> the token for that projection
TokenLookup = Callable[[str, int], str]

DEFAULT_MODE = 0o644


class MissingSource(Exception):
    """A volume cannot be set up (yet): the kubelet reports FailedMount and waits."""


def sources_of(pod: Obj) -> set[tuple[str, str]]:
    """Every (kind, name) of Secret and ConfigMap the pod's volumes and env refer to."""
    found: set[tuple[str, str]] = set()
    for volume in pod["spec"].get("volumes") or []:
        if "secret" in volume:
            found.add(("secret", volume["secret"]["secretName"]))
        if "configMap" in volume:
            found.add(("configmap", volume["configMap"]["name"]))
        for projection in (volume.get("projected") or {}).get("sources") or []:
            if "secret" in projection:
                found.add(("secret", projection["secret"]["name"]))
            if "configMap" in projection:
                found.add(("configmap", projection["configMap"]["name"]))
    for container in [*pod["spec"].get("initContainers", []), *pod["spec"]["containers"]]:
        for source in container.get("envFrom") or []:
            if "secretRef" in source:
                found.add(("secret", source["secretRef"]["name"]))
            if "configMapRef" in source:
                found.add(("configmap", source["configMapRef"]["name"]))
        for item in container.get("env") or []:
            value_from = item.get("valueFrom") or {}
            if "secretKeyRef" in value_from:
                found.add(("secret", value_from["secretKeyRef"]["name"]))
            if "configMapKeyRef" in value_from:
                found.add(("configmap", value_from["configMapKeyRef"]["name"]))
    return found


def token_projections(pod: Obj) -> list[tuple[str, int, Obj]]:
    """(volume name, projection index, serviceAccountToken) of each token the pod mounts."""
    return [
        (volume["name"], index, projection["serviceAccountToken"])
        for volume in pod["spec"].get("volumes") or []
        for index, projection in enumerate((volume.get("projected") or {}).get("sources") or [])
        if "serviceAccountToken" in projection
    ]


def _keyed(source: Obj, data: dict[str, bytes], default_mode: int) -> dict[str, tuple[bytes, int]]:
    items = source.get("items")
    if not items:
        return {key: (value, default_mode) for key, value in data.items()}
    missing = [item["key"] for item in items if item["key"] not in data]
    if missing and not source.get("optional"):
        raise MissingSource(f"configmap references non-existent config key: {missing[0]}")
    return {
        item["path"]: (data[item["key"]], int(item.get("mode", default_mode)))
        for item in items
        if item["key"] in data
    }


def atomic_write(folder: Path, files: dict[str, tuple[bytes, int]], group: int | None) -> None:
    """Make ``folder`` hold exactly ``files`` (relative path -> content, mode) at once; nothing
    happens when it holds them already."""
    current = folder / "..data"
    if current.is_symlink() and _holds(current, files):
        return
    stamp = folder / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{secrets.token_hex(4)}"
    stamp.mkdir()
    for relative, (content, mode) in files.items():
        target = stamp / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        target.chmod(mode)
        if group is not None:
            os.chown(target, -1, group)
    for path in [stamp, *(p for p in stamp.rglob("*") if p.is_dir())]:
        path.chmod(0o755)
        if group is not None:
            os.chown(path, -1, group)
    previous = os.readlink(current) if current.is_symlink() else None
    swap = folder / "..data_tmp"
    swap.unlink(missing_ok=True)
    swap.symlink_to(stamp.name)
    os.rename(swap, current)
    visible = {relative.split("/")[0] for relative in files}
    for name in visible:
        link = folder / name
        if not link.is_symlink():
            link.symlink_to(f"..data/{name}")
    for entry in folder.iterdir():
        if not entry.name.startswith("..") and entry.name not in visible:
            entry.unlink()
    if previous is not None:
        shutil.rmtree(folder / previous, ignore_errors=True)


def _holds(current: Path, files: dict[str, tuple[bytes, int]]) -> bool:
    present = {
        os.fspath(path.relative_to(current.resolve()))
        for path in current.resolve().rglob("*")
        if path.is_file()
    }
    if present != set(files):
        return False
    for relative, (content, mode) in files.items():
        path = current / relative
        if path.read_bytes() != content or (path.stat().st_mode & 0o7777) != mode:
            return False
    return True


class Volumes:
    """One pod's volumes under ``root`` (the pod's folder), from what the kubelet looked up."""

    def __init__(
        self, pod: Obj, root: Path, data: DataLookup, token: TokenLookup, allocatable: Obj
    ) -> None:
        self.root = root
        self.data = data
        self.token = token
        self.allocatable = allocatable
        self.group: int | None = (pod["spec"].get("securityContext") or {}).get("fsGroup")

    def _source(self, kind: str, name: str, optional: bool) -> dict[str, bytes]:
        found = self.data(kind, name)
        if found is None:
            if optional:
                return {}
            raise MissingSource(f'{kind} "{name}" not found')
        return found

    def _downward(self, pod: Obj, source: Obj, mode: int) -> dict[str, tuple[bytes, int]]:
        files = {}
        for item in source.get("items") or []:
            if "fieldRef" in item:
                value = field_value(pod, item["fieldRef"]["fieldPath"])
            else:
                value = resource_field(pod, None, item["resourceFieldRef"], self.allocatable)
            files[item["path"]] = (value.encode(), int(item.get("mode", mode)))
        return files

    def files(self, pod: Obj, volume: Obj) -> dict[str, tuple[bytes, int]] | None:
        """What a content volume holds; None for a volume of another kind."""
        if "secret" in volume:
            source = volume["secret"]
            mode = int(source.get("defaultMode", DEFAULT_MODE))
            data = self._source("secret", source["secretName"], bool(source.get("optional")))
            return _keyed(source, data, mode)
        if "configMap" in volume:
            source = volume["configMap"]
            mode = int(source.get("defaultMode", DEFAULT_MODE))
            data = self._source("configmap", source["name"], bool(source.get("optional")))
            return _keyed(source, data, mode)
        if "downwardAPI" in volume:
            source = volume["downwardAPI"]
            return self._downward(pod, source, int(source.get("defaultMode", DEFAULT_MODE)))
        if "projected" not in volume:
            return None
        projected = volume["projected"]
        mode = int(projected.get("defaultMode", DEFAULT_MODE))
        files: dict[str, tuple[bytes, int]] = {}
        for index, projection in enumerate(projected.get("sources") or []):
            if "secret" in projection or "configMap" in projection:
                kind = "secret" if "secret" in projection else "configmap"
                source = projection["secret" if kind == "secret" else "configMap"]
                data = self._source(kind, source["name"], bool(source.get("optional")))
                files.update(_keyed(source, data, mode))
            elif "downwardAPI" in projection:
                files.update(self._downward(pod, projection["downwardAPI"], mode))
            elif "serviceAccountToken" in projection:
                path = projection["serviceAccountToken"]["path"]
                files[path] = (self.token(volume["name"], index).encode(), mode)
        return files

    def set_up(self, pod: Obj, claims: dict[str, str]) -> dict[str, Path]:
        """Host path per volume name, written or refreshed; raises MissingSource.
        ``claims`` maps a PersistentVolumeClaim's name to its volume's host path."""
        found: dict[str, Path] = {}
        for volume in pod["spec"].get("volumes") or []:
            name = volume["name"]
            if "hostPath" in volume:
                found[name] = _host_path(volume["hostPath"])
                continue
            served = {"nfs", "csi", "iscsi", "cephfs", "ephemeral"} & set(volume)
            if served:  # a real kubelet mounts these through drivers this machine lacks
                raise MissingSource(
                    f"{sorted(served)[0]} volumes are not mounted by the test kubelet "
                    "(tests/cluster/kubelet/README.md)"
                )
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                if claim not in claims:
                    raise MissingSource(
                        f'persistentvolumeclaim "{claim}" is not bound to a volume with a path'
                    )
                found[name] = Path(claims[claim])
                continue
            folder = self.root / "volumes" / name
            if not folder.exists():
                folder.mkdir(parents=True)
                folder.chmod(0o777 if "emptyDir" in volume else 0o755)
                if self.group is not None:
                    os.chown(folder, -1, self.group)
            files = self.files(pod, volume)
            if files is not None:
                atomic_write(folder, files, self.group)
            found[name] = folder
        return found


def _host_path(source: Obj) -> Path:
    path = Path(source["path"])
    kind = source.get("type") or ""
    if kind == "DirectoryOrCreate":
        path.mkdir(parents=True, exist_ok=True)
    elif kind == "FileOrCreate" and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    elif kind == "Directory" and not path.is_dir():
        raise MissingSource(f"hostPath type check failed: {path} is not a directory")
    elif kind == "File" and not path.is_file():
        raise MissingSource(f"hostPath type check failed: {path} is not a file")
    return path


def mounts(container: Obj, volumes: dict[str, Path]) -> list[dict[str, Any]]:
    """The launcher's bind mounts for one container, parents before children (``subPath``
    honoured: a folder is created, as upstream, unless the volume holds that file)."""
    found = []
    for mount in container.get("volumeMounts") or []:
        host = volumes.get(mount["name"])
        if host is None:
            continue
        if mount.get("subPath"):
            host = host / mount["subPath"]
            if not host.exists():
                host.mkdir(parents=True)
        found.append(
            {
                "source": os.fspath(host),
                "target": os.path.normpath(mount["mountPath"]),
                "file": host.is_file(),
                "readOnly": bool(mount.get("readOnly")),
            }
        )
    return sorted(found, key=lambda m: m["target"].count("/"))
