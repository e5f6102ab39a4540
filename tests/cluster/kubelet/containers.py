"""How one container becomes one local process: its command line (the image's, mapped to this
machine), environment (Kubernetes' ``$(VAR)`` expansion, ``valueFrom``, ``envFrom``, the
variables a kubelet adds), user and working directory. Pure: the kubelet supplies the lookups.

Images: no image can be pulled here, so an image stands for a program on this machine. A first
word ``python``, ``python3`` or ``python3.X`` (any folder) is the test interpreter; an image of
Kueue's or JobSet's release manifests runs the binary built from that release
(``tests/cluster/images.py``), with its entrypoint when the pod gives no ``command``; any other
image needs an explicit ``command``, found on the container's ``PATH`` (the test venv's ``bin``,
then the system's)."""

from __future__ import annotations

import os
import pwd
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from jupyter_mlinfra.quantities import parse_cpu, parse_memory

Obj = dict[str, Any]

_PYTHON = re.compile(r"^python(3(\.\d+)?)?$")
_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)")

#: source(kind, name, optional) -> data or None when absent, kind "secret" or "configmap"
SourceLookup = Callable[[str, str, bool], "dict[str, bytes] | None"]


class Image(Protocol):
    """What ``tests/cluster/images.py`` says about a release image."""

    def argv(self, command: list[str] | None, args: list[str] | None) -> list[str]: ...


class CannotRun(Exception):
    """The container cannot start: the kubelet's waiting reason and message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class User:
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str


@dataclass
class ProcessSpec:
    argv: list[str]
    env: dict[str, str]
    cwd: str
    user: User


def expand(text: str, env: Mapping[str, str]) -> str:
    """``$(NAME)`` becomes the variable's value when defined (else stays), ``$$`` is ``$``."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _VAR.sub(replace, text)


def field_value(pod: Obj, path: str) -> str:
    """A downward-API ``fieldRef`` value, as env var or file content."""
    metadata = pod["metadata"]
    if path in ("metadata.labels", "metadata.annotations"):
        values = metadata.get(path.split(".")[1]) or {}
        return "\n".join(f'{key}="{value}"' for key, value in sorted(values.items()))
    match = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if match:
        return str((metadata.get(match.group(1)) or {}).get(match.group(2), ""))
    status = pod.get("status") or {}
    simple = {
        "metadata.name": metadata.get("name"),
        "metadata.namespace": metadata.get("namespace"),
        "metadata.uid": metadata.get("uid"),
        "spec.nodeName": pod["spec"].get("nodeName"),
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName"),
        "status.podIP": status.get("podIP"),
        "status.podIPs": ",".join(ip["ip"] for ip in status.get("podIPs") or []),
        "status.hostIP": status.get("hostIP"),
        "status.hostIPs": ",".join(ip["ip"] for ip in status.get("hostIPs") or []),
    }
    return str(simple.get(path) or "")


def resource_field(pod: Obj, container: Obj | None, ref: Obj, node_allocatable: Obj) -> str:
    """A ``resourceFieldRef`` value: the container's limit (the node's allocatable when it has
    none, as upstream) or request, divided by ``divisor`` and rounded up."""
    if container is None:
        name = ref.get("containerName")
        container = next(
            (c for c in pod["spec"]["containers"] if c["name"] == name), {"resources": {}}
        )
    kind, _, resource = ref["resource"].partition(".")
    value = ((container.get("resources") or {}).get(kind) or {}).get(resource)
    if value is None:
        value = node_allocatable.get(resource, "0") if kind == "limits" else "0"

    def amount(quantity: object) -> float:
        return parse_cpu(quantity) if resource == "cpu" else float(parse_memory(quantity))

    result = amount(value) / amount(ref.get("divisor", "1"))
    return str(int(result) if result == int(result) else int(-(-result // 1)))


def _value_from(
    pod: Obj, container: Obj, source: Obj, lookup: SourceLookup, allocatable: Obj
) -> str | None:
    if "fieldRef" in source:
        return field_value(pod, source["fieldRef"]["fieldPath"])
    if "resourceFieldRef" in source:
        return resource_field(pod, container, source["resourceFieldRef"], allocatable)
    for key, kind in (("secretKeyRef", "secret"), ("configMapKeyRef", "configmap")):
        if key in source:
            ref = source[key]
            optional = bool(ref.get("optional"))
            data = lookup(kind, ref["name"], optional)
            namespace = pod["metadata"]["namespace"]
            if data is None:
                if optional:
                    return None
                raise CannotRun("CreateContainerConfigError", f'{kind} "{ref["name"]}" not found')
            if ref["key"] not in data:
                if optional:
                    return None
                label = "Secret" if kind == "secret" else "ConfigMap"
                raise CannotRun(
                    "CreateContainerConfigError",
                    f"couldn't find key {ref['key']} in {label} {namespace}/{ref['name']}",
                )
            return data[ref["key"]].decode()
    return None


def environment(
    pod: Obj, container: Obj, base: Mapping[str, str], lookup: SourceLookup, allocatable: Obj
) -> dict[str, str]:
    """The container's env in Kubernetes' order: the kubelet's own, then envFrom, then env
    (later wins), each value expanded against what is defined before it."""
    env = dict(base)
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        for key, kind in (("configMapRef", "configmap"), ("secretRef", "secret")):
            if key in source:
                ref = source[key]
                data = lookup(kind, ref["name"], bool(ref.get("optional")))
                if data is None:
                    if ref.get("optional"):
                        continue
                    raise CannotRun(
                        "CreateContainerConfigError", f'{kind} "{ref["name"]}" not found'
                    )
                env.update({prefix + k: v.decode() for k, v in data.items()})
    for item in container.get("env") or []:
        if "valueFrom" in item:
            value = _value_from(pod, container, item["valueFrom"], lookup, allocatable)
            if value is not None:
                env[item["name"]] = value
        else:
            env[item["name"]] = expand(item.get("value", ""), env)
    return env


def command_line(words: list[str], env: Mapping[str, str]) -> list[str]:
    """argv for a container command (or an exec): ``$(VAR)`` expanded, ``python``/``python3``/
    ``python3.X`` run as the test interpreter."""
    argv = [expand(word, env) for word in words]
    if argv and _PYTHON.match(os.path.basename(argv[0])):
        argv[0] = sys.executable
    return argv


def _argv(container: Obj, env: Mapping[str, str], images: Mapping[str, Image]) -> list[str]:
    command = [expand(word, env) for word in container.get("command") or []]
    args = [expand(word, env) for word in container.get("args") or []]
    image = images.get(container.get("image", ""))
    if image is not None:
        return image.argv(command or None, args)
    if not command:
        raise CannotRun(
            "StartError",
            "the test kubelet runs containers with an explicit command only "
            f"(it does not know the entrypoint of image {container.get('image')!r})",
        )
    return command_line([*command, *args], env)


def user(pod: Obj, container: Obj, image_user: tuple[int, int] | None) -> User:
    """Who the process runs as: ``runAsUser``/``runAsGroup`` (the container's over the pod's),
    else the image's user (uid, gid); ``fsGroup`` and ``supplementalGroups`` added; home from
    the "image's" passwd (this machine's), ``/`` for a user it does not know, as runtimes do."""
    pod_context = pod["spec"].get("securityContext") or {}
    own = container.get("securityContext") or {}

    def setting(name: str) -> Any:
        return own.get(name, pod_context.get(name))

    uid = setting("runAsUser")
    image_uid, image_gid = image_user if image_user is not None else (0, None)
    uid = int(uid if uid is not None else image_uid)
    try:
        entry: pwd.struct_passwd | None = pwd.getpwuid(uid)
    except KeyError:
        entry = None
    gid = setting("runAsGroup")
    if gid is None:
        gid = image_gid if setting("runAsUser") is None and image_gid is not None else None
    if gid is None:
        gid = entry.pw_gid if entry else 0
    gid = int(gid)
    if setting("runAsNonRoot") and uid == 0:
        raise CannotRun(
            "CreateContainerConfigError",
            "container has runAsNonRoot and image will run as root "
            f'(pod: "{pod["metadata"]["name"]}_{pod["metadata"]["namespace"]}'
            f'({pod["metadata"]["uid"]})", container: {container["name"]})',
        )
    groups = [gid]
    if pod_context.get("fsGroup") is not None:
        groups.append(int(pod_context["fsGroup"]))
    groups += [int(g) for g in pod_context.get("supplementalGroups") or []]
    return User(uid, gid, tuple(dict.fromkeys(groups)), entry.pw_dir if entry else "/")


def process_spec(
    pod: Obj,
    container: Obj,
    *,
    base_env: Mapping[str, str],
    lookup: SourceLookup,
    images: Mapping[str, Image],
    image_user: tuple[int, int] | None,
    allocatable: Obj,
) -> ProcessSpec:
    """Everything needed to start the container's process; raises CannotRun."""
    who = user(pod, container, image_user)
    env = environment(pod, container, {**base_env, "HOME": who.home}, lookup, allocatable)
    argv = _argv(container, env, images)
    return ProcessSpec(argv, env, container.get("workingDir") or "/", who)
