"""What an admin adds to every kernel and job pod: the user's home volume, and the escape
hatches KubeSpawner users know (extra pod and container fields, extra volumes and mounts, a
hook that may modify the pod before it is created).

The settings are checked when the server starts (a field the product sets itself is refused,
naming the setting to use instead); ``customize`` applies them to a kernel's pod and a job's
pod template alike, and ``guard`` refuses a pod whose flavor resources or security context
the extras or the hook changed: they can add, never silently take over.
"""

from __future__ import annotations

import copy
import inspect
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from traitlets import Callable as CallableTrait
from traitlets import Dict, List, TraitError, validate
from traitlets.config import LoggingConfigurable

from ...errors import MLInfraError
from ...volumes import Volume, parse_volume

Manifest = dict[str, Any]
Hook = Callable[[Manifest, Mapping[str, str]], Any]

RESERVED_POD_FIELDS = {
    "containers": "the product's own",
    "initContainers": "the product's own",
    "volumes": "extra_volumes",
    "securityContext": "KubernetesCluster.run_as_user and run_as_group",
    "restartPolicy": "the product's own",
}
RESERVED_CONTAINER_FIELDS = {
    "name": "the product's own",
    "image": "the environment's image",
    "command": "the product's own",
    "args": "the product's own",
    "resources": "the flavor",
    "securityContext": "the product's own",
    "volumeMounts": "extra_volume_mounts",
    "ports": "the product's own",
    "terminationMessagePath": "the product's own",
    "terminationMessagePolicy": "the product's own",
}


class PodRefused(MLInfraError):
    """The admin's extras or hook would change what the product decides (HTTP 500: the
    server's configuration, not the request, is wrong; the message says which setting)."""

    status = 500


@dataclass(frozen=True)
class PodConfig:
    """The settings of ``KubernetesPods`` as plain values, for the pure builders."""

    home: Volume | None = None
    extra_pod: Mapping[str, Any] = field(default_factory=dict)
    extra_container: Mapping[str, Any] = field(default_factory=dict)
    extra_volumes: Sequence[Mapping[str, Any]] = ()
    extra_mounts: Sequence[Mapping[str, Any]] = ()
    hook: Hook | None = None

    def home_volumes(self) -> tuple[Volume, ...]:
        return (self.home,) if self.home is not None else ()


class KubernetesPods(LoggingConfigurable):
    """What every kernel pod and job pod gets besides its flavor and environment
    (``c.KubernetesPods.*``), used when backend is kubernetes."""

    home_volume = Dict(
        default_value={},
        config=True,
        help="""The user's home, mounted in every kernel and job pod: a dict with one source,
        'claim' (a PersistentVolumeClaim; '{username}' in it is the user's name, e.g. Zero to
        JupyterHub's 'claim-{username}'), 'nfs' ({server, path}), 'csi' ({driver,
        volume_attributes}) or 'host_path'; 'sub_path' ('{username}' allowed), 'read_only',
        and 'mount_path' (default: this server's root directory, ServerApp.root_dir, so a
        file has the same path in the server, its kernels and its jobs). Kernels then run in
        the notebook's folder and jobs in the folder they were submitted from, and HOME is the
        mount path. A ReadWriteOnce claim is mounted where it is attached (see the README).
        Empty: no home volume; kernels and jobs run in the image's working directory.""",
    )
    extra_pod_config = Dict(
        default_value={},
        config=True,
        help="""Fields added to the spec of every kernel and job pod, as the API names them
        (camelCase: priorityClassName, affinity, imagePullSecrets, hostAliases, ...). A mapping
        merges with the pod's own key by key, a list extends the pod's, and a value the pod
        already sets otherwise fails the start or submission, naming it. containers, initContainers,
        volumes (use extra_volumes), securityContext and restartPolicy are refused.""",
    )
    extra_container_config = Dict(
        default_value={},
        config=True,
        help="""Fields added to the main container of every kernel and job pod (env,
        envFrom, lifecycle, ...), merged as extra_pod_config is; env entries come first, so
        the product's variables of the same name win. resources (the flavor's),
        securityContext, image, command, args, ports and volumeMounts (use
        extra_volume_mounts) are refused.""",
    )
    extra_volumes = List(
        Dict(),
        default_value=[],
        config=True,
        help="""Volumes (Kubernetes Volume objects, camelCase) added to every kernel and job
        pod; mount them with extra_volume_mounts. Prefer the catalog's volumes (an
        environment's or a flavor's 'volumes'), which users see in the sidebar.""",
    )
    extra_volume_mounts = List(
        Dict(),
        default_value=[],
        config=True,
        help="""VolumeMounts (name, mountPath, readOnly, subPath) added to the main container
        of every kernel and job pod; each names a volume of extra_volumes or the pod's own.""",
    )
    modify_pod_hook = CallableTrait(
        default_value=None,
        allow_none=True,
        config=True,
        help="""A function called with each kernel pod and job pod template (a dict, as the
        API takes it) and a context dict (kind: 'kernel' or 'job', user, namespace, flavor,
        environment) just before it is created; it may change the dict in place or return a
        new one (it may be async). A hook that changes the flavor's resources or a security
        context fails the start or submission, naming what changed.""",
    )

    @validate("home_volume")
    def _valid_home(self, proposal: Any) -> dict[str, Any]:
        value = dict(proposal["value"])
        if value:
            problems: list[str] = []
            parse_volume(value, "home_volume", problems, home=True, mount_path="/home")
            if problems:
                raise TraitError("; ".join(problems))
        return value

    @validate("extra_pod_config")
    def _valid_pod(self, proposal: Any) -> dict[str, Any]:
        return _reserved(dict(proposal["value"]), RESERVED_POD_FIELDS, "extra_pod_config")

    @validate("extra_container_config")
    def _valid_container(self, proposal: Any) -> dict[str, Any]:
        return _reserved(
            dict(proposal["value"]), RESERVED_CONTAINER_FIELDS, "extra_container_config"
        )

    @validate("extra_volumes")
    def _valid_volumes(self, proposal: Any) -> list[dict[str, Any]]:
        names = [v.get("name") for v in proposal["value"]]
        for volume, name in zip(proposal["value"], names, strict=True):
            if not isinstance(name, str) or len(volume) != 2:
                raise TraitError(
                    f"extra_volumes: each volume needs a name and one source, got {volume!r}"
                )
        if len(set(names)) != len(names):
            raise TraitError(f"extra_volumes: duplicate names in {names}")
        return list(proposal["value"])

    @validate("extra_volume_mounts")
    def _valid_mounts(self, proposal: Any) -> list[dict[str, Any]]:
        for mount in proposal["value"]:
            path = mount.get("mountPath")
            if not isinstance(mount.get("name"), str) or not str(path or "").startswith("/"):
                raise TraitError(
                    f"extra_volume_mounts: each needs a name and an absolute mountPath, got "
                    f"{mount!r}"
                )
        return list(proposal["value"])

    def settings(self, root_dir: str) -> PodConfig:
        """The settings as plain values, the home mounted at ``root_dir`` unless it says."""
        home = None
        if self.home_volume:
            home = parse_volume(self.home_volume, "home_volume", [], home=True, mount_path=root_dir)
        return PodConfig(
            home=home,
            extra_pod=self.extra_pod_config,
            extra_container=self.extra_container_config,
            extra_volumes=tuple(self.extra_volumes),
            extra_mounts=tuple(self.extra_volume_mounts),
            hook=self.modify_pod_hook,
        )


def _reserved(value: dict[str, Any], reserved: Mapping[str, str], setting: str) -> dict[str, Any]:
    for key in value:
        if key in reserved:
            raise TraitError(f"{setting} may not set {key!r}: that is {reserved[key]}")
    return value


def _merge(target: Manifest, extra: Mapping[str, Any], where: str) -> None:
    """Merge ``extra`` into ``target``: mappings merge key by key, lists extend (``env``'s
    extra entries first, so the target's of the same name win), a scalar is added where absent,
    and one that differs from the target's is a PodRefused naming ``where``: an extra never
    silently replaces what the product set."""
    for key, value in extra.items():
        current = target.get(key)
        if current is None:
            target[key] = copy.deepcopy(value)
        elif isinstance(current, dict) and isinstance(value, Mapping):
            _merge(current, value, f"{where}.{key}")
        elif isinstance(current, list) and isinstance(value, list):
            added = copy.deepcopy(value)
            target[key] = [*added, *current] if key == "env" else [*current, *added]
        elif current != value:
            raise PodRefused(
                f"{where}.{key} = {json.dumps(value)} conflicts with the pod's own "
                f"{json.dumps(current)}",
                key,
            )


def customize(pod: Manifest, container_name: str, config: PodConfig) -> Manifest:
    """``pod`` (a Pod or a pod template: metadata and spec) with the extras added, a copy."""
    result = copy.deepcopy(pod)
    spec = result["spec"]
    container = next(c for c in spec["containers"] if c["name"] == container_name)
    ours = {v["name"] for v in spec.get("volumes", [])}
    for volume in config.extra_volumes:
        if volume["name"] in ours:
            raise PodRefused(
                f"KubernetesPods.extra_volumes: volume {volume['name']!r} is the pod's own "
                "name; choose another",
                "extra_volumes",
            )
    spec["volumes"] = [*spec.get("volumes", []), *copy.deepcopy(list(config.extra_volumes))]
    names = {v["name"] for v in spec["volumes"]}
    paths = {m["mountPath"] for m in container.get("volumeMounts", [])}
    for mount in config.extra_mounts:
        if mount["name"] not in names:
            raise PodRefused(
                f"KubernetesPods.extra_volume_mounts: no volume {mount['name']!r} in the pod "
                "(add it to extra_volumes)",
                "extra_volume_mounts",
            )
        if mount["mountPath"] in paths:
            raise PodRefused(
                f"KubernetesPods.extra_volume_mounts: {mount['mountPath']} is already mounted",
                "extra_volume_mounts",
            )
    container["volumeMounts"] = [
        *container.get("volumeMounts", []),
        *copy.deepcopy(list(config.extra_mounts)),
    ]
    _merge(spec, config.extra_pod, "KubernetesPods.extra_pod_config")
    _merge(container, config.extra_container, "KubernetesPods.extra_container_config")
    return result


async def run_hook(hook: Hook | None, pod: Manifest, context: Mapping[str, str]) -> Manifest:
    """``pod`` as the admin's hook leaves it (a copy goes in: the original is the reference
    ``guard`` compares with)."""
    if hook is None:
        return pod
    given = copy.deepcopy(pod)
    returned = hook(given, dict(context))
    if inspect.isawaitable(returned):
        returned = await returned
    result = given if returned is None else returned
    if not isinstance(result, dict) or not isinstance(result.get("spec"), dict):
        raise PodRefused(
            "KubernetesPods.modify_pod_hook must leave a pod (a dict with a spec), got "
            f"{type(result).__name__}",
            "modify_pod_hook",
        )
    return result


def guard(before: Manifest, after: Manifest, what: str) -> None:
    """Refuse ``after`` (the pod as the hook left it) when it changed what the product decides
    in ``before``: each container's resources and security context, the pod's security
    context, and which containers there are."""

    def parts(pod: Manifest) -> dict[str, Any]:
        spec = pod.get("spec") or {}
        found: dict[str, Any] = {"pod securityContext": spec.get("securityContext")}
        for kind in ("initContainers", "containers"):
            for container in spec.get(kind) or []:
                name = container.get("name")
                found[f"container {name!r} resources"] = container.get("resources")
                found[f"container {name!r} securityContext"] = container.get("securityContext")
        return found

    was, now = parts(before), parts(after)
    for key in sorted(set(was) | set(now)):
        if was.get(key) != now.get(key):
            raise PodRefused(
                f"KubernetesPods.modify_pod_hook changed the {what}'s {key} from "
                f"{json.dumps(was.get(key))} to {json.dumps(now.get(key))}: the flavor and the "
                "server decide these; the pod was not created",
                "modify_pod_hook",
            )
