"""Pod volumes materialised as host directories: emptyDir, secret, configMap, downwardAPI,
projected, persistentVolumeClaim (one directory per claim, shared by the pods that mount it)
and hostPath (the host path itself). Containers see them through path rewriting: each
volumeMount's ``mountPath`` in a container's command, args, env values and workingDir is
replaced by the volume's host directory (see tests/kube/README.md)."""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path
from typing import Any

from .resources import Registry
from .store import Obj, Store, meta


class MissingSource(Exception):
    """A volume's Secret/ConfigMap does not exist (yet): the kubelet reports FailedMount."""


def field_value(pod: Obj, path: str) -> str:
    """A downward-API ``fieldRef`` value for a pod, as env var or file content."""
    metadata = meta(pod)
    if path in ("metadata.labels", "metadata.annotations"):
        values = metadata.get(path.split(".")[1]) or {}
        return "\n".join(f'{key}="{value}"' for key, value in sorted(values.items()))
    match = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if match:
        return str((metadata.get(match.group(1)) or {}).get(match.group(2), ""))
    simple = {
        "metadata.name": metadata.get("name"),
        "metadata.namespace": metadata.get("namespace"),
        "metadata.uid": metadata.get("uid"),
        "spec.nodeName": pod["spec"].get("nodeName"),
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName"),
        "status.podIP": pod.get("status", {}).get("podIP"),
        "status.hostIP": pod.get("status", {}).get("hostIP"),
    }
    return str(simple.get(path) or "")


class Volumes:
    """Builds a pod's volume directories under the pod's own folder."""

    def __init__(
        self, store: Store, registry: Registry, claims_root: Path, token: str = ""
    ) -> None:
        self.token = token
        """What a projected service account token holds: the fixture's one token."""
        self.store = store
        self.secrets = registry.lookup("", "v1", "secrets")
        self.configmaps = registry.lookup("", "v1", "configmaps")
        self.claims_root = claims_root

    def source_data(self, kind: str, namespace: str, name: str, optional: bool) -> dict[str, bytes]:
        """A Secret's or ConfigMap's data as bytes; MissingSource when absent and required."""
        rtype = self.secrets if kind == "secret" else self.configmaps
        assert rtype is not None
        obj = self.store.find(rtype, namespace, name)
        if obj is None:
            if optional:
                return {}
            raise MissingSource(f'{kind} "{name}" not found')
        data = (
            {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
            if (kind == "secret")
            else {k: v.encode() for k, v in (obj.get("data") or {}).items()}
        )
        if kind == "secret":
            data.update({k: v.encode() for k, v in (obj.get("stringData") or {}).items()})
        else:
            data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
        return data

    def _write(self, folder: Path, files: dict[str, bytes], mode: int | None) -> None:
        for relative, content in files.items():
            target = folder / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
            target.chmod(mode if mode is not None else 0o644)

    def _keyed(self, source: dict[str, Any], data: dict[str, bytes]) -> dict[str, bytes]:
        items = source.get("items")
        if not items:
            return data
        return {
            item.get("path", item["key"]): data[item["key"]]
            for item in items
            if item["key"] in data
        }

    def _downward(self, pod: Obj, source: dict[str, Any]) -> dict[str, bytes]:
        return {
            item["path"]: field_value(pod, item["fieldRef"]["fieldPath"]).encode()
            for item in source.get("items") or []
            if "fieldRef" in item
        }

    def _files(self, pod: Obj, volume: dict[str, Any]) -> dict[str, bytes]:
        namespace = meta(pod)["namespace"]
        if "secret" in volume:
            source = volume["secret"]
            return self._keyed(
                source,
                self.source_data(
                    "secret", namespace, source["secretName"], bool(source.get("optional"))
                ),
            )
        if "configMap" in volume:
            source = volume["configMap"]
            return self._keyed(
                source,
                self.source_data(
                    "configmap", namespace, source["name"], bool(source.get("optional"))
                ),
            )
        if "downwardAPI" in volume:
            return self._downward(pod, volume["downwardAPI"])
        files: dict[str, bytes] = {}
        for projection in (volume.get("projected") or {}).get("sources") or []:
            if "secret" in projection:
                files.update(
                    self._files(
                        pod,
                        {
                            "secret": {
                                **projection["secret"],
                                "secretName": projection["secret"]["name"],
                            }
                        },
                    )
                )
            elif "configMap" in projection:
                files.update(self._files(pod, {"configMap": projection["configMap"]}))
            elif "downwardAPI" in projection:
                files.update(self._downward(pod, projection["downwardAPI"]))
            elif "serviceAccountToken" in projection:
                files[projection["serviceAccountToken"]["path"]] = self.token.encode()
        return files

    def materialise(self, pod: Obj, root: Path) -> dict[str, Path]:
        """Host directory per volume name; raises MissingSource for a missing required one."""
        found: dict[str, Path] = {}
        for volume in pod["spec"].get("volumes") or []:
            name = volume["name"]
            if "hostPath" in volume:
                found[name] = Path(volume["hostPath"]["path"])
                continue
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                folder = self.claims_root / meta(pod)["namespace"] / claim
                folder.mkdir(parents=True, exist_ok=True)
                found[name] = folder
                continue
            folder = root / "volumes" / name
            folder.mkdir(parents=True, exist_ok=True)
            if "emptyDir" not in volume:
                source: Any = next(iter(v for k, v in volume.items() if k != "name"), {})
                mode = source.get("defaultMode") if isinstance(source, dict) else None
                self._write(folder, self._files(pod, volume), mode)
            found[name] = folder
        return found


def mount_table(container: dict[str, Any], volumes: dict[str, Path]) -> dict[str, str]:
    """mountPath -> host path for one container (``subPath`` honoured)."""
    table = {}
    for mount in container.get("volumeMounts") or []:
        host = volumes.get(mount["name"])
        if host is None:
            continue
        if mount.get("subPath"):
            host = host / mount["subPath"]
            host.mkdir(parents=True, exist_ok=True)
        table[mount["mountPath"].rstrip("/") or "/"] = os.fspath(host)
    return table


def rewrite(text: str, table: dict[str, str]) -> str:
    """Replace each mount path where it starts a path (not inside a longer one) and ends one:
    followed by ``/``, the end of the text, or a character that cannot continue a path
    component. One pass, longest mount first, so a host path is never rewritten again."""
    if not table:
        return text
    alternatives = "|".join(re.escape(path) for path in sorted(table, key=len, reverse=True))
    pattern = rf"(?<![\w.\-/])({alternatives})(?=/|$|[^\w.\-])"
    return re.sub(pattern, lambda match: table[match.group(1)], text)
