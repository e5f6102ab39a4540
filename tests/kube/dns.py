"""Cluster DNS for the processes the fixture runs as pods.

The fixture keeps one hosts file per namespace, rewritten on every pod or Service change:
``<service>.<ns>.svc.cluster.local`` (also ``.svc``, ``<service>.<ns>`` and, inside ``<ns>``,
plain ``<service>``) resolves to the IPs of the Service's selected pods, and
``<hostname>.<subdomain>.<ns>.svc.cluster.local`` (and the same shorter forms) to a pod whose
``subdomain`` names a headless Service that selects it, as CoreDNS does. Like the endpoints
controller, only ready pods are published unless the Service says
``publishNotReadyAddresses``. Pod processes resolve through nss_wrapper (``LD_PRELOAD``, so C
code such as torch's TCPStore resolves too) when libnss-wrapper is installed, else through a
``sitecustomize`` that patches Python's ``socket`` resolver functions.

nss_wrapper alone answers an ``AF_INET6`` + ``AI_V4MAPPED`` query for an IPv4 name or address
with ``EAI_ADDRFAMILY`` where glibc returns ``::ffff:a.b.c.d``; torch's TCPStore client asks
exactly that and never connected. So ``v4mapped.c`` (compiled once per source, with the
machine's C compiler) is preloaded before nss_wrapper to give glibc's answer."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import sysconfig
import tempfile
from pathlib import Path

from .resources import Registry
from .selectors import matches_label_selector
from .store import Change, Obj, Store, meta

SITECUSTOMIZE = '''"""Cluster fixture DNS for Python pod processes (nss_wrapper is absent)."""
import os
import socket

_HOSTS = os.environ.get("CLUSTER_FIXTURE_HOSTS", "")
_getaddrinfo = socket.getaddrinfo


def _lookup(name):
    if not isinstance(name, str) or not _HOSTS:
        return []
    wanted = name.rstrip(".").lower()
    try:
        with open(_HOSTS) as hosts:
            lines = hosts.read().splitlines()
    except OSError:
        return []
    return [line.split()[0] for line in lines if wanted in line.split()[1:]]


def getaddrinfo(host, *args, **kwargs):
    addresses = _lookup(host)
    if not addresses:
        return _getaddrinfo(host, *args, **kwargs)
    return [entry for address in addresses for entry in _getaddrinfo(address, *args, **kwargs)]


def gethostbyname(host):
    addresses = _lookup(host)
    return addresses[0] if addresses else _gethostbyname(host)


_gethostbyname = socket.gethostbyname
socket.getaddrinfo = getaddrinfo
socket.gethostbyname = gethostbyname
'''


def nss_wrapper() -> str | None:
    """Path of libnss_wrapper.so (Debian: apt-get install libnss-wrapper), if installed."""
    multiarch = sysconfig.get_config_var("MULTIARCH") or ""
    for folder in (f"/usr/lib/{multiarch}", "/usr/lib64", "/usr/lib", "/usr/local/lib"):
        candidate = os.path.join(folder, "libnss_wrapper.so")
        if os.path.exists(candidate):
            return candidate
    return None


V4MAPPED_SOURCE = Path(__file__).with_name("v4mapped.c")


def v4mapped_shim() -> str | None:
    """Path of ``v4mapped.c`` built as a preloadable library, compiled on first use into a
    cache keyed by its source (kept across fixtures: a compile per test would cost more than
    the tests it serves), or None without a C compiler."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    source = V4MAPPED_SOURCE.read_bytes()
    digest = hashlib.sha256(source).hexdigest()[:16]
    target = Path(tempfile.gettempdir()) / f"mlinfra-cluster-fixture-v4mapped-{digest}.so"
    if not target.exists():
        with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
            built = Path(scratch) / target.name
            subprocess.run(
                [compiler, "-shared", "-fPIC", "-O2", "-o", built, V4MAPPED_SOURCE, "-ldl"],
                check=True,
                capture_output=True,
            )
            os.replace(built, target)  # the same filesystem: atomic for concurrent fixtures
    return os.fspath(target)


def _ready(pod: Obj) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


class ClusterDns:
    """Keeps the hosts files current and tells the kubelet what env a pod needs to use them."""

    def __init__(self, store: Store, registry: Registry, folder: Path) -> None:
        self.store = store
        self.pods = registry.lookup("", "v1", "pods")
        self.services = registry.lookup("", "v1", "services")
        self.namespaces = registry.lookup("", "v1", "namespaces")
        self.folder = folder
        (folder / "python").mkdir(parents=True, exist_ok=True)
        (folder / "python" / "sitecustomize.py").write_text(SITECUSTOMIZE)
        self.library = nss_wrapper()
        self.v4mapped = v4mapped_shim() if self.library else None
        self._pending = False
        self._lines: dict[str, str] = {}
        """Each namespace's hosts file text, as last written."""
        self._own: dict[Path, tuple[tuple[str, str], str]] = {}
        """A pod's own hosts file → (its namespace and name, the line naming itself)."""
        store.subscribe(self._on_change)

    def hosts_file(self, namespace: str) -> Path:
        return self.folder / f"hosts.{namespace}"

    def env(self, namespace: str, pod: Obj) -> dict[str, str]:
        """What a process of ``pod`` (in ``namespace``) needs in its environment to resolve
        names. With nss_wrapper it also gets the pod's own hosts file and hostname, as the
        kubelet writes /etc/hosts and sets the UTS hostname: gloo binds the address its
        hostname resolves to, which must be the pod IP as on a cluster."""
        hosts = os.fspath(self.hosts_file(namespace))
        if not self.library:
            return {
                "CLUSTER_FIXTURE_HOSTS": hosts,
                "PYTHONPATH": os.fspath(self.folder / "python"),
            }
        preload = [self.v4mapped, self.library] if self.v4mapped else [self.library]
        env = {"LD_PRELOAD": ":".join(preload), "NSS_WRAPPER_HOSTS": hosts}
        spec, ip = pod["spec"], pod.get("status", {}).get("podIP")
        hostname = spec.get("hostname") or meta(pod)["name"]
        if ip:
            own = [hostname]
            if spec.get("subdomain"):
                own.insert(0, f"{hostname}.{spec['subdomain']}.{namespace}.svc.cluster.local")
            target = self.folder / f"hosts.{namespace}.{meta(pod)['name']}"
            self._own[target] = ((namespace, meta(pod)["name"]), f"{ip} {' '.join(own)}\n")
            self._write(target, self._lines.get(namespace, "") + self._own[target][1])
            env.update({"NSS_WRAPPER_HOSTS": os.fspath(target), "NSS_WRAPPER_HOSTNAME": hostname})
        return env

    def _on_change(self, change: Change) -> None:
        if change.rtype in (self.pods, self.services, self.namespaces) and not self._pending:
            self._pending = True
            asyncio.get_running_loop().call_soon(self.refresh)

    def records(self) -> list[tuple[str, str, str]]:
        """(ip, namespace, relative name) for every name the cluster resolves; a relative name
        is ``<service>`` or ``<hostname>.<subdomain>``, fully ``<name>.<ns>.svc.cluster.local``."""
        assert self.pods is not None and self.services is not None
        found = []
        pods = self.store.list(
            self.pods,
            where=lambda p: (
                bool(p.get("status", {}).get("podIP"))
                and p["status"].get("phase") not in ("Succeeded", "Failed")
            ),
        )
        for service in self.store.list(self.services):
            spec = service.get("spec") or {}
            if not spec.get("selector"):
                continue
            namespace = meta(service)["namespace"]
            name = meta(service)["name"]
            selected = [
                pod
                for pod in pods
                if meta(pod)["namespace"] == namespace
                and matches_label_selector(
                    {"matchLabels": spec["selector"]}, meta(pod).get("labels") or {}
                )
                and (spec.get("publishNotReadyAddresses") or _ready(pod))
            ]
            for pod in selected:
                ip = pod["status"]["podIP"]
                found.append((ip, namespace, name))
                pod_spec = pod["spec"]
                if spec.get("clusterIP") == "None" and pod_spec.get("subdomain") == name:
                    hostname = pod_spec.get("hostname") or meta(pod)["name"]
                    found.append((ip, namespace, f"{hostname}.{name}"))
        return found

    def refresh(self) -> None:
        self._pending = False
        assert self.namespaces is not None and self.pods is not None
        records = self.records()
        for namespace_obj in self.store.list(self.namespaces):
            here = meta(namespace_obj)["name"]
            lines = []
            for ip, namespace, name in records:
                names = [
                    f"{name}.{namespace}.svc.cluster.local",
                    f"{name}.{namespace}.svc",
                    f"{name}.{namespace}",
                ]
                if namespace == here:
                    names.append(name)
                lines.append(f"{ip} {' '.join(names)}\n")
            self._lines[here] = "".join(lines)
            self._write(self.hosts_file(here), self._lines[here])
        for target, ((namespace, name), own) in list(self._own.items()):
            if self.store.find(self.pods, namespace, name) is None:
                del self._own[target]
            else:
                self._write(target, self._lines.get(namespace, "") + own)

    @staticmethod
    def _write(target: Path, text: str) -> None:
        """Replace ``target`` at once: a process resolving meanwhile reads old or new."""
        temporary = target.parent / f".{target.name}.tmp"
        temporary.write_text(text)
        os.replace(temporary, target)
