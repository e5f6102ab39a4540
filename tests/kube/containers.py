"""How one container becomes one local process: argv, environment and working directory,
with Kubernetes' ``$(VAR)`` expansion, ``valueFrom`` (fieldRef, resourceFieldRef,
secretKeyRef, configMapKeyRef), ``envFrom``, volume path rewriting, and ``python``/``python3``
mapped to the test interpreter. Pure: the kubelet supplies the lookups."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .amounts import amount
from .store import Obj
from .volumes import MissingSource, field_value, rewrite

_PYTHON = re.compile(r"^python(3(\.\d+)?)?$")
_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)")

#: source(kind, name, optional) -> data, kind being "secret" or "configmap"
SourceLookup = Callable[[str, str, bool], dict[str, bytes]]


class CannotRun(Exception):
    """The container cannot start (no command, missing key...): reason and message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class ProcessSpec:
    argv: list[str]
    env: dict[str, str]
    cwd: str
    mounts: dict[str, str]


def expand(text: str, env: dict[str, str]) -> str:
    """``$(NAME)`` becomes the variable's value when defined (else stays), ``$$`` is ``$``."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _VAR.sub(replace, text)


def _resource_field(container: dict[str, Any], ref: dict[str, Any]) -> str:
    kind, _, resource = ref["resource"].partition(".")
    value = ((container.get("resources") or {}).get(kind) or {}).get(resource)
    if value is None:
        return "0"
    divisor = amount(resource, ref.get("divisor", "1"))
    result = amount(resource, value) / divisor
    return str(int(result) if result == int(result) else -(-result // 1))


def _value_from(
    pod: Obj, container: dict[str, Any], source: dict[str, Any], lookup: SourceLookup
) -> str | None:
    if "fieldRef" in source:
        return field_value(pod, source["fieldRef"]["fieldPath"])
    if "resourceFieldRef" in source:
        return _resource_field(container, source["resourceFieldRef"])
    for key, kind in (("secretKeyRef", "secret"), ("configMapKeyRef", "configmap")):
        if key in source:
            ref = source[key]
            data = lookup(kind, ref["name"], bool(ref.get("optional")))
            if ref["key"] not in data:
                if ref.get("optional"):
                    return None
                raise CannotRun(
                    "CreateContainerConfigError",
                    f"couldn't find key {ref['key']} in {kind} "
                    f"{pod['metadata']['namespace']}/{ref['name']}",
                )
            return data[ref["key"]].decode()
    return None


def environment(
    pod: Obj, container: dict[str, Any], base: dict[str, str], lookup: SourceLookup
) -> dict[str, str]:
    """The container's env in Kubernetes' order: envFrom, then env (later wins), each value
    expanded against what is defined before it."""
    env = dict(base)
    try:
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            for key, kind in (("configMapRef", "configmap"), ("secretRef", "secret")):
                if key in source:
                    ref = source[key]
                    data = lookup(kind, ref["name"], bool(ref.get("optional")))
                    env.update({prefix + k: v.decode() for k, v in data.items()})
        for item in container.get("env") or []:
            if "valueFrom" in item:
                value = _value_from(pod, container, item["valueFrom"], lookup)
                if value is not None:
                    env[item["name"]] = value
            else:
                env[item["name"]] = expand(item.get("value", ""), env)
    except MissingSource as missing:
        raise CannotRun("CreateContainerConfigError", str(missing)) from None
    return env


def command_line(words: list[str], env: dict[str, str], mounts: dict[str, str]) -> list[str]:
    """argv for a container command (or an exec probe): ``$(VAR)`` expanded, mount paths
    rewritten, ``python``/``python3``/``python3.X`` run as the test interpreter."""
    argv = [rewrite(expand(word, env), mounts) for word in words]
    if argv and _PYTHON.match(os.path.basename(argv[0])):
        argv[0] = sys.executable
    return argv


def process_spec(
    pod: Obj,
    container: dict[str, Any],
    *,
    base_env: dict[str, str],
    mounts: dict[str, str],
    default_cwd: Path,
    lookup: SourceLookup,
) -> ProcessSpec:
    """Everything needed to start the container's process on this machine."""
    env = environment(pod, container, base_env, lookup)
    words = [*(container.get("command") or []), *(container.get("args") or [])]
    if not container.get("command"):
        raise CannotRun(
            "StartError",
            "the cluster fixture runs containers with an explicit command only "
            f"(it does not know the entrypoint of image {container.get('image')!r})",
        )
    argv = command_line(words, env, mounts)
    env = {key: rewrite(value, mounts) for key, value in env.items()}
    cwd = default_cwd
    if container.get("workingDir"):
        mapped = Path(rewrite(container["workingDir"], mounts))
        cwd = mapped if mapped.is_dir() else default_cwd / "rootfs" / mapped.relative_to("/")
        cwd.mkdir(parents=True, exist_ok=True)
    return ProcessSpec(argv, env, os.fspath(cwd), mounts)
