"""A kernel's pod and the Secret holding its key, as plain dicts: pure.

The pod runs the environment's image unmodified: an init container (``kernels/init``) copies
the single-file launcher (and ipykernel for images without it) into a shared emptyDir, and the
main container runs that launcher with the image's own Python. The server chose the ports and
the key before creating anything, so the kernel never dials back: the key travels in a Secret
mounted into the pod, the ports are fixed inside the pod's own network namespace, and the
kernel listens on all of that namespace's addresses: its pod IP, where a server in the cluster
connects, and its loopback, where a kubelet's port-forward connects (containerd and CRI-O dial
``localhost`` inside the pod's network namespace). Labels and annotations carry what a later
server needs to adopt the pod again, whichever way it connects.

With transport encryption (``MappingKernelManager.transport_encryption``), the kernel's
CurveZMQ keypair travels the same way, in the same Secret, and the pod is told the server's
policy: the launcher encrypts, or under "required" fails rather than run unencrypted.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ...catalog import Environment, Flavor
from ...launch.contract import thread_env
from ...volumes import Volume
from . import manifests, storage
from .manifests import GROUP, Manifest
from .names import label_value

COMPONENT = "kernel"
CONTAINER = "kernel"
INIT_CONTAINER = "mlinfra-init"
SHARED_DIR = "/var/lib/mlinfra-kernel"
"""Where both containers mount the emptyDir the init container fills."""
KEY_DIR = "/var/run/mlinfra-kernel-key"
PODINFO_DIR = "/etc/mlinfra-podinfo"
TERMINATION_LOG = "/dev/termination-log"
KEY = "key"
CURVE_PUBLIC = "curve_publickey"
CURVE_SECRET = "curve_secretkey"
"""The kernel's CurveZMQ keys in its Secret (and files next to the key), as connection files
name them: ipykernel serves with the pair, and a client that connects uses the same pair."""
CHANNELS = ("shell", "iopub", "stdin", "control", "hb")

LABEL_KERNEL_ID = f"{GROUP}/kernel-id"
ANNOTATION_EXPIRES = f"{GROUP}/expires-at"
"""Epoch seconds after which the launcher ends the kernel unless a server renewed it."""
ANNOTATION_PORT = f"{GROUP}/kernel-port"
ANNOTATION_FLAVOR = f"{GROUP}/flavor"
ANNOTATION_ENVIRONMENT = f"{GROUP}/environment"


@dataclass(frozen=True)
class CurveKeys:
    """A kernel's CurveZMQ keypair (Z85 text)."""

    public: str
    secret: str


@dataclass(frozen=True)
class KernelPodOptions:
    """What the admin decides about every kernel pod (``KubernetesKernels`` settings)."""

    init_image: str
    init_source: str = "/opt/mlinfra"
    """The directory in the init image holding ``launcher.py`` (and ``site/``)."""
    port: int = 50000
    """The kernel's first port; its channels use port .. port+4, the launcher port+5."""
    python: str = manifests.DEFAULT_PYTHON
    """The image's interpreter, when the environment names none."""
    image_pull_policy: str = "IfNotPresent"
    grace_seconds: int = 10
    service_account: str = ""
    run_as: tuple[int, int] = (manifests.NON_ROOT_UID, manifests.NON_ROOT_GID)
    """The uid and gid the pod runs as."""
    placement: Mapping[str, Mapping[str, Any]] = field(
        default_factory=lambda: manifests.DEFAULT_CAPACITY_PLACEMENT
    )


def pod_name(kernel_id: str) -> str:
    return f"kernel-{kernel_id}"


def secret_name(kernel_id: str) -> str:
    return f"kernel-{kernel_id}-key"


def kernel_labels(kernel_id: str, owner: str, flavor: str, environment: str) -> dict[str, str]:
    return manifests.labels(COMPONENT, owner, flavor, environment, kernel_id=kernel_id)


def kernel_selector(owner: str = "") -> str:
    """The label selector of every kernel pod (of ``owner``, if given)."""
    matches = {
        manifests.LABEL_MANAGED_BY: manifests.MANAGED_BY,
        manifests.LABEL_COMPONENT: COMPONENT,
    }
    if owner:
        matches[manifests.LABEL_OWNER] = label_value(owner)
    return manifests.selector(matches)


def pod_ports(port: int) -> list[int]:
    """The pod's ports from the first: the five kernel channels, then the launcher's."""
    return [port + i for i in range(len(CHANNELS) + 1)]


def connection_info(
    ip: str, ports: Sequence[int], key: str, curve: CurveKeys | None = None
) -> dict[str, Any]:
    """What jupyter_client connects with: an address, the channels' ports, the key, and the
    CurveZMQ keys of a kernel that runs encrypted."""
    channels = zip(CHANNELS, ports[: len(CHANNELS)], strict=True)  # the launcher's port aside
    info: dict[str, Any] = {f"{name}_port": port for name, port in channels}
    info.update(ip=ip, key=key, transport="tcp", signature_scheme="hmac-sha256")
    if curve is not None:
        info.update({CURVE_PUBLIC: curve.public, CURVE_SECRET: curve.secret})
    return info


def key_secret(
    kernel_id: str,
    namespace: str,
    labels: Mapping[str, str],
    key: str,
    curve: CurveKeys | None = None,
) -> Manifest:
    """The Secret with the kernel's key (and CurveZMQ keys); it gets the pod as owner once
    the pod exists."""
    values = {KEY: key}
    if curve is not None:
        values.update({CURVE_PUBLIC: curve.public, CURVE_SECRET: curve.secret})
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": secret_name(kernel_id),
            "namespace": namespace,
            "labels": dict(labels),
        },
        "type": "Opaque",
        "data": {name: base64.b64encode(value.encode()).decode() for name, value in values.items()},
    }


def kernel_network_policy(
    kernel_id: str,
    namespace: str,
    labels: Mapping[str, str],
    port: int,
    server: Manifest | None,
) -> Manifest:
    """The kernel pod's NetworkPolicy: connections to the kernel's ports only from its
    owner's server (``server``, a NetworkPolicyPeer selecting that server's pod), nothing
    else; ``server`` None: from nowhere, for a server outside the cluster, which reaches the
    kernel through port-forwards, which no NetworkPolicy governs."""
    rules: list[Manifest] = []
    if server is not None:
        last = pod_ports(port)[-1]
        rules.append(
            {"from": [server], "ports": [{"protocol": "TCP", "port": port, "endPort": last}]}
        )
    selected = {LABEL_KERNEL_ID: labels[LABEL_KERNEL_ID]}
    return manifests.network_policy(pod_name(kernel_id), namespace, labels, selected, rules)


def keys_of(secret: Mapping[str, Any]) -> tuple[str, CurveKeys | None]:
    """The key, and the CurveZMQ keys if any, of a kernel's Secret (adoption)."""
    data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    curve = None
    if CURVE_PUBLIC in data and CURVE_SECRET in data:
        curve = CurveKeys(data[CURVE_PUBLIC], data[CURVE_SECRET])
    return data[KEY], curve


def kernel_pod(
    *,
    kernel_id: str,
    namespace: str,
    owner: str,
    flavor: Flavor,
    environment: Environment,
    options: KernelPodOptions,
    env: Mapping[str, str],
    expires_at: float,
    encryption: str = "disabled",
    volumes: Sequence[Volume] = (),
    working_dir: str = "",
) -> Manifest:
    """The pod of kernel ``kernel_id``. ``env`` are the variables allowed through from the
    server; the environment's own and the kernel's (``MLINFRA_*``, thread counts) win.
    ``encryption`` is the server's transport encryption policy for it ("auto", "required").
    ``volumes`` (``storage.mounted``) are mounted in the kernel's container, ``{username}`` in
    their names being ``owner``; the kernel runs in ``working_dir`` when it is given."""
    labels = kernel_labels(kernel_id, owner, flavor.name, environment.name)
    shm, shm_mount = manifests.shm_volume(flavor)
    shared_mount = {"name": "mlinfra", "mountPath": SHARED_DIR}
    security = manifests.container_security_context()
    variables = {
        **env,
        **storage.home_env(volumes),
        **environment.env,
        **thread_env(max(1, int(flavor.cpu))),
        "MLINFRA_KERNEL_ID": kernel_id,
        "MLINFRA_FLAVOR": flavor.name,
        "MLINFRA_ENVIRONMENT": environment.name,
        "MLINFRA_KERNEL_PORT": str(options.port),
        "MLINFRA_KERNEL_KEY_FILE": f"{KEY_DIR}/{KEY}",
        "MLINFRA_RUNTIME_DIR": f"{SHARED_DIR}/run",
        "MLINFRA_SITE": f"{SHARED_DIR}/site",
        "MLINFRA_EXPIRES_FILE": f"{PODINFO_DIR}/expires-at",
        "MLINFRA_TERMINATION_LOG": TERMINATION_LOG,
    }
    if encryption != "disabled":  # its keys are in the Secret, next to the key
        variables["MLINFRA_KERNEL_ENCRYPTION"] = encryption
    ports = [*CHANNELS, "launcher"]
    spec: Manifest = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": options.grace_seconds,
        "securityContext": manifests.pod_security_context(*options.run_as),
        **manifests.scheduling(flavor, options.placement),
        "volumes": [
            {"name": "mlinfra", "emptyDir": {}},
            {
                "name": "kernel-key",
                "secret": {"secretName": secret_name(kernel_id), "defaultMode": 0o440},
            },
            {
                "name": "podinfo",
                "downwardAPI": {
                    "items": [
                        {
                            "path": "expires-at",
                            "fieldRef": {
                                "fieldPath": f"metadata.annotations['{ANNOTATION_EXPIRES}']"
                            },
                        }
                    ]
                },
            },
            shm,
        ],
        "initContainers": [
            {
                "name": INIT_CONTAINER,
                "image": options.init_image,
                "imagePullPolicy": options.image_pull_policy,
                "command": ["cp", "-R", f"{options.init_source}/.", f"{SHARED_DIR}/"],
                "volumeMounts": [shared_mount],
                "securityContext": security,
                "resources": {
                    "requests": {"cpu": "100m", "memory": "64Mi"},
                    "limits": {"memory": "256Mi"},
                },
            }
        ],
        "containers": [
            {
                "name": CONTAINER,
                "image": environment.image,
                "imagePullPolicy": options.image_pull_policy,
                "command": [environment.python or options.python, f"{SHARED_DIR}/launcher.py"],
                "env": manifests.env_list(variables),
                "ports": [
                    {"name": name, "containerPort": options.port + i, "protocol": "TCP"}
                    for i, name in enumerate(ports)
                ],
                "resources": manifests.resources(flavor),
                "volumeMounts": [
                    shared_mount,
                    {"name": "kernel-key", "mountPath": KEY_DIR, "readOnly": True},
                    {"name": "podinfo", "mountPath": PODINFO_DIR, "readOnly": True},
                    shm_mount,
                ],
                "securityContext": security,
                "terminationMessagePath": TERMINATION_LOG,
                "terminationMessagePolicy": "FallbackToLogsOnError",
            }
        ],
    }
    if options.service_account:
        spec["serviceAccountName"] = options.service_account
    container = spec["containers"][0]
    storage.add_volumes(spec, container, volumes, owner)
    if working_dir:
        container["workingDir"] = working_dir
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(kernel_id),
            "namespace": namespace,
            "labels": labels,
            "annotations": {
                manifests.ANNOTATION_OWNER: owner,
                ANNOTATION_FLAVOR: flavor.name,
                ANNOTATION_ENVIRONMENT: environment.name,
                ANNOTATION_PORT: str(options.port),
                ANNOTATION_EXPIRES: str(int(expires_at)),
            },
        },
        "spec": spec,
    }
