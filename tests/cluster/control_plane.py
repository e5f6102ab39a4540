"""A real Kubernetes control plane for the tests: etcd, kube-apiserver, kube-controller-manager
and kube-scheduler built by ``build.sh``, configured as kubeadm configures a cluster (client
certificates, ``Node,RBAC`` authorization, admission, service-account tokens, the aggregation
layer), each component a local process with its log in a file.

Only the node side is missing: nodes and their pods are the test kubelet's
(``tests/cluster/kubelet``). Without it, pods stay Pending, as on a cluster with no nodes."""

from __future__ import annotations

import base64
import functools
import json
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from . import kubeconfigs
from .audit import POLICY, AuditLog
from .binaries import Built, built
from .network import Subnet
from .pki import Authority, KeyPair, signing_key
from .processes import STOP_GRACE_SECONDS, Component, tail

SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"  # the first address of SERVICE_CIDR, the apiserver's Service
CLUSTER_DOMAIN = "cluster.local"
ISSUER = f"https://kubernetes.default.svc.{CLUSTER_DOMAIN}"
# After SIGTERM the API server stops listening and drains its requests within a second, then
# lingers (20 s and more here) with its open connections; a restart need not wait for that.
APISERVER_STOP_GRACE = 3.0
START_TIMEOUT = 180.0  # a cold API server on a loaded two-core machine takes tens of seconds
# The controllers that the tests and Kueue's and JobSet's Deployments rely on. The manager starts
# its controllers one by one after /healthz first passes, and adds each one's check to /healthz
# as it starts; an API server restart before they are all started makes it exit.
CONTROLLERS = frozenset(
    {
        "job-controller",
        "garbage-collector-controller",
        "namespace-controller",
        "serviceaccount-controller",
        "serviceaccount-token-controller",
        "endpoints-controller",
        "endpointslice-controller",
        "node-lifecycle-controller",
        "taint-eviction-controller",
        "pod-garbage-collector-controller",
        "root-ca-certificate-publisher-controller",
        "replicaset-controller",
        "deployment-controller",
        "ttl-after-finished-controller",
        "resourcequota-controller",
    }
)


class KubectlFailed(subprocess.CalledProcessError):
    """kubectl exited non-zero; the message ends with what kubectl said."""

    def __str__(self) -> str:
        return f"{super().__str__()}\n{self.stderr}"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


class ControlPlane:
    """One cluster's control plane under ``root`` (certificates, etcd's data, configs, logs).

    ``start()`` returns once every component is ready; ``stop()`` ends them all (also after a
    failed start). Use it as a context manager, or through the ``control_plane`` fixture."""

    def __init__(self, root: Path, binaries: Built | None = None, verbosity: int = 1) -> None:
        self.root = root
        self.built = binaries or built()
        self.verbosity = verbosity
        self.logs_dir = root / "logs"
        self.pki_dir = root / "pki"
        self.config_dir = root / "config"
        self.subnet: Subnet | None = None
        self.components: dict[str, Component] = {}
        self.ca: Authority | None = None
        self.front_proxy_ca: Authority | None = None
        self.server = ""
        self.etcd_url = ""
        self.admin_kubeconfig = self.config_dir / "admin.kubeconfig"
        self.audit = AuditLog(self.logs_dir / "audit.log")
        self._health_ports: dict[str, int] = {}  # controller manager, scheduler: /healthz
        # what must hold again before restart_apiserver returns (each raises if it does not)
        self.after_restart: list[Callable[[], None]] = []

    # -- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        for folder in (self.logs_dir, self.pki_dir, self.config_dir):
            folder.mkdir(parents=True, exist_ok=True)
        try:
            self.subnet = Subnet.claim()
            self._make_pki()
            self._start_etcd()
            self._start_apiserver()
            self._start_controller_manager()
            self._start_scheduler()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every component, newest first, then give the subnet's addresses back."""
        try:
            for component in reversed(list(self.components.values())):
                component.stop()
        finally:
            if self.subnet is not None:
                self.subnet.release()
                self.subnet = None

    @property
    def host(self) -> str:
        """The control plane's address (not loopback): the API server's, and pods' way to it."""
        assert self.subnet is not None, "the control plane is not started"
        return self.subnet.host

    @property
    def apiserver_port(self) -> int:
        return int(self.server.rsplit(":", 1)[1])

    # -- certificates -----------------------------------------------------------------------

    def _make_pki(self) -> None:
        pki = self.pki_dir
        self.ca = ca = Authority(pki, "ca")
        self.front_proxy_ca = Authority(pki, "front-proxy-ca")
        self.service_account_key = signing_key(pki, "sa")
        self.apiserver_pair = ca.issue(
            "apiserver",
            "kube-apiserver",
            dns_names=[
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                f"kubernetes.default.svc.{CLUSTER_DOMAIN}",
            ],
            ip_addresses=[self.host, "127.0.0.1", KUBERNETES_SERVICE_IP],
            server=True,
        )
        # The API server's identity towards kubelets (logs, exec, port-forward); system:masters
        # so that a kubelet that asks a SubjectAccessReview about it is always answered yes.
        self.kubelet_client_pair = ca.issue(
            "apiserver-kubelet-client",
            "kube-apiserver-kubelet-client",
            organizations=["system:masters"],
            client=True,
        )
        self.front_proxy_client = self.front_proxy_ca.issue(
            "front-proxy-client", "front-proxy-client", client=True
        )
        self.admin_pair = ca.issue(
            "admin", "kubernetes-admin", organizations=["system:masters"], client=True
        )

    def client_kubeconfig(
        self, name: str, user: str, groups: tuple[str, ...] = (), namespace: str | None = None
    ) -> Path:
        """A kubeconfig that authenticates as ``user`` in ``groups`` by a client certificate
        (how components and kubelets authenticate: a kubelet is ``system:node:<node>`` in
        ``system:nodes``, which the Node authorizer and NodeRestriction admission expect)."""
        assert self.ca is not None
        pair = self.ca.issue(name, user, organizations=groups, client=True)
        path = self.config_dir / f"{name}.kubeconfig"
        return kubeconfigs.write(path, self.server, self.ca.pem, client=pair, namespace=namespace)

    def node_kubeconfig(self, node: str) -> Path:
        """The kubeconfig of the kubelet of ``node``."""
        return self.client_kubeconfig(f"node-{node}", f"system:node:{node}", ("system:nodes",))

    # -- etcd -------------------------------------------------------------------------------

    def _start_etcd(self) -> None:
        client_port, peer_port = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client_port}"
        peer = f"http://127.0.0.1:{peer_port}"
        etcd = self._component(
            "etcd",
            [
                self.built.binary("etcd"),
                "--name=test",
                f"--data-dir={self.root / 'etcd-data'}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=test={peer}",
                # A test's store: its data dies with the test session, so durability buys
                # nothing, and fsync waits on a loaded disk slow every write of the suite.
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        etcd.start()
        etcd.wait_until(
            lambda: self._etcd("/health", None).get("health") == "true", "healthy", START_TIMEOUT
        )

    def _etcd(self, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        """etcd's JSON gateway (``/health`` with GET, ``/v3/...`` with POST); {} if it is down."""
        data = json.dumps(body).encode() if body is not None else None
        try:
            with urllib.request.urlopen(self.etcd_url + path, data=data, timeout=10) as answer:
                loaded: dict[str, Any] = json.load(answer)
                return loaded
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return {}

    def compact(self, paths: tuple[str, ...] = ("/api/v1/pods",)) -> int:
        """Compact etcd's history at its current revision, as the API server's own compactor
        does every 5 minutes (and through the same key, ``compact_rev_key``, which the API server
        watches); returns that revision.

        It returns once a list of each of ``paths`` at an older resourceVersion
        (``resourceVersionMatch=Exact``, as a paginated list's continue token carries) is
        answered 410 Gone. A *watch* from an old resourceVersion is served from the API server's
        watch cache, which keeps its own window of recent events whatever etcd compacted
        (``k8s.io/apiserver/pkg/storage/cacher/watch_cache_history.go``, GetIntervalLocked): it
        answers 410 once the window no longer holds that version, as after an API server
        restart, when the window starts anew (``restart_apiserver``)."""
        header = self._etcd("/v3/kv/range", {"key": _b64("compact_rev_key")})["header"]
        revision = int(header["revision"])
        self._etcd("/v3/kv/put", {"key": _b64("compact_rev_key"), "value": _b64(str(revision))})
        self._etcd("/v3/kv/compaction", {"revision": str(revision), "physical": True})
        old = revision - 1
        for path in paths:
            self.components["kube-apiserver"].wait_until(
                functools.partial(self._list_is_gone, path, old),
                f"answering 410 to a list of {path} at resourceVersion {old}",
                60,
            )
        return revision

    def _list_is_gone(self, path: str, resource_version: int) -> bool:
        query = f"?resourceVersion={resource_version}&resourceVersionMatch=Exact"
        return self.request("GET", path + query)[0] == 410

    # -- kube-apiserver -----------------------------------------------------------------------

    def _start_apiserver(self) -> None:
        port = free_port(self.host)
        self.server = f"https://{self.host}:{port}"
        pki = self.pki_dir
        assert self.front_proxy_ca is not None and self.ca is not None
        apiserver = self._component(
            "kube-apiserver",
            [
                self.built.binary("kube-apiserver"),
                f"--etcd-servers={self.etcd_url}",
                f"--bind-address={self.host}",
                f"--advertise-address={self.host}",
                f"--secure-port={port}",
                f"--tls-cert-file={self.apiserver_pair.cert}",
                f"--tls-private-key-file={self.apiserver_pair.key}",
                f"--client-ca-file={self.ca.pair.cert}",
                "--authorization-mode=Node,RBAC",
                # on top of the default plugins, as kubeadm does
                "--enable-admission-plugins=NodeRestriction",
                "--allow-privileged=true",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                f"--service-account-issuer={ISSUER}",
                f"--service-account-key-file={self.service_account_key.cert}",
                f"--service-account-signing-key-file={self.service_account_key.key}",
                f"--kubelet-client-certificate={self.kubelet_client_pair.cert}",
                f"--kubelet-client-key={self.kubelet_client_pair.key}",
                "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
                # the aggregation layer: the API server proxies to extension API servers (Kueue's
                # visibility API) as front-proxy-client, with the user in these headers
                f"--requestheader-client-ca-file={self.front_proxy_ca.pair.cert}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={self.front_proxy_client.cert}",
                f"--proxy-client-key-file={self.front_proxy_client.key}",
                # Webhooks and APIServices are reached at a ready endpoint of their Service, not
                # at its ClusterIP: nothing here (no kube-proxy) routes ClusterIPs.
                "--enable-aggregator-routing=true",
                f"--cert-dir={pki / 'apiserver-generated'}",
                # every request but the cluster's own, for tests that count or check them
                f"--audit-policy-file={self._audit_policy()}",
                f"--audit-log-path={self.audit.path}",
                "--audit-log-format=json",
                "--audit-log-mode=blocking",
                "--audit-log-maxsize=0",  # one file, never rotated: tests read from an offset
                f"--v={self.verbosity}",
            ],
            stop_grace=APISERVER_STOP_GRACE,
        )
        self._run_apiserver(apiserver)
        self.admin_kubeconfig = kubeconfigs.write(
            self.admin_kubeconfig, self.server, self.ca.pem, client=self.admin_pair
        )

    def _audit_policy(self) -> Path:
        path = self.config_dir / "audit-policy.yaml"
        path.write_text(POLICY)
        return path

    def _run_apiserver(self, apiserver: Component) -> None:
        apiserver.start()
        apiserver.wait_until(
            lambda: self.request("GET", "/readyz")[0] == 200, "ready (/readyz)", START_TIMEOUT
        )

    def restart_apiserver(self) -> None:
        """Stop the API server and start it again (same address, same store): every open watch
        ends, and clients must resume from their last resourceVersion.

        Returns once it is ready and every check in ``after_restart`` passes: installed add-ons
        register theirs (their webhooks served again), since their managers may exit when the
        restart outlasts their leader-election lease, and until the kubelet has restarted them,
        every request their webhooks cover is refused (``failurePolicy: Fail``)."""
        apiserver = self.components["kube-apiserver"]
        apiserver.stop()
        self._run_apiserver(apiserver)
        for check in self.after_restart:
            check()

    def admin_ssl_context(self) -> ssl.SSLContext:
        """TLS to the API server as the admin (its client certificate, the cluster's CA)."""
        return self._ssl_context(self.admin_pair)

    def ssl_context(self) -> ssl.SSLContext:
        """TLS to the API server with no client certificate (for a bearer token)."""
        return self._ssl_context(None)

    def _ssl_context(self, client: KeyPair | None) -> ssl.SSLContext:
        assert self.ca is not None
        context = ssl.create_default_context(cafile=str(self.ca.pair.cert))
        if client is not None:
            context.load_cert_chain(str(client.cert), str(client.key))
        return context

    def request(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, str]:
        """An HTTP request to the API server as the admin: (status, body); (0, why) if it does
        not answer."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.server + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(
                request, context=self._ssl_context(self.admin_pair), timeout=30
            ) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
            return 0, str(error)

    # -- controller manager and scheduler ---------------------------------------------------

    def _serving_flags(self, name: str) -> list[str]:
        """Where a controller serves /healthz: 127.0.0.1 on a free port, with a self-signed
        certificate in its own folder; it checks callers through the API server."""
        kubeconfig = self.client_kubeconfig(name, f"system:{name}")
        port = free_port()
        self._health_ports[name] = port
        return [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={self.pki_dir / name}",
            # One instance: no lease to win first, and no exit when an API server restart
            # outlasts the lease's renew deadline.
            "--leader-elect=false",
            f"--v={self.verbosity}",
        ]

    def _healthy(self, name: str, checks: frozenset[str] = frozenset()) -> bool:
        """``/healthz`` passes and lists ``checks`` among its passing checks."""
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        url = f"https://127.0.0.1:{self._health_ports[name]}/healthz?verbose"
        try:
            with urllib.request.urlopen(url, context=context, timeout=10) as answer:
                text = answer.read().decode()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False
        passing = {line[3:].removesuffix(" ok") for line in text.splitlines() if line[:3] == "[+]"}
        return checks <= passing

    def _start_controller_manager(self) -> None:
        assert self.ca is not None
        manager = self._component(
            "kube-controller-manager",
            [
                self.built.binary("kube-controller-manager"),
                *self._serving_flags("kube-controller-manager"),
                # every controller enabled by default (--controllers=*), as on kubeadm's
                # clusters: Job, garbage collector, namespace, service accounts and their tokens,
                # Endpoints/EndpointSlices, node lifecycle, pod GC, ReplicaSet, Deployment...
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={self.service_account_key.key}",
                f"--root-ca-file={self.ca.pair.cert}",
                f"--cluster-signing-cert-file={self.ca.pair.cert}",
                f"--cluster-signing-key-file={self.ca.pair.key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
            ],
        )
        manager.start()
        manager.wait_until(
            lambda: self._healthy("kube-controller-manager", CONTROLLERS),
            f"running {', '.join(sorted(CONTROLLERS))}",
            START_TIMEOUT,
        )

    def _start_scheduler(self) -> None:
        scheduler = self._component(
            "kube-scheduler",
            [self.built.binary("kube-scheduler"), *self._serving_flags("kube-scheduler")],
        )
        scheduler.start()
        scheduler.wait_until(lambda: self._healthy("kube-scheduler"), "healthy", START_TIMEOUT)

    def _component(
        self, name: str, argv: list[str], stop_grace: float = STOP_GRACE_SECONDS
    ) -> Component:
        component = Component(name, argv, self.logs_dir / f"{name}.log", stop_grace=stop_grace)
        self.components[name] = component
        return component

    # -- what tests and developers use --------------------------------------------------------

    def kubectl(self, *args: str, kubeconfig: Path | None = None, input: str | None = None) -> str:
        """Run the built ``kubectl`` (as the admin unless ``kubeconfig``); its stdout. A failure
        raises with kubectl's own message."""
        done = subprocess.run(
            [
                self.built.binary("kubectl"),
                f"--kubeconfig={kubeconfig or self.admin_kubeconfig}",
                *args,
            ],
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise KubectlFailed(done.returncode, ["kubectl", *args], done.stdout, done.stderr)
        return done.stdout

    def apply(self, objects: list[dict[str, Any]] | str) -> str:
        """``kubectl apply --server-side`` of objects (or YAML text), as the admin."""
        text = objects if isinstance(objects, str) else yaml.safe_dump_all(objects)
        return self.kubectl("apply", "--server-side", "-f", "-", input=text)

    def create_namespace(self, name: str) -> None:
        """A namespace, returned once pods can be created in it: the service-account controller
        has made its ``default`` ServiceAccount, which the ServiceAccount admission plugin
        requires of every pod, and ``kube-root-ca.crt`` is published for pods' token volumes."""
        self.kubectl("create", "namespace", name)
        self.components["kube-controller-manager"].wait_until(
            lambda: (
                self.request("GET", f"/api/v1/namespaces/{name}/serviceaccounts/default")[0] == 200
                and self.request("GET", f"/api/v1/namespaces/{name}/configmaps/kube-root-ca.crt")[0]
                == 200
            ),
            f"done with namespace {name} (default ServiceAccount, kube-root-ca.crt)",
            60,
        )

    def service_account_kubeconfig(self, namespace: str, name: str, duration: str = "24h") -> Path:
        """A kubeconfig that authenticates as ServiceAccount ``namespace/name`` with a real token
        from the TokenRequest API (``kubectl create token``), namespace ``namespace`` by default:
        what a server running as that ServiceAccount in a pod would hold."""
        token = self.kubectl(
            "create", "token", name, f"--namespace={namespace}", f"--duration={duration}"
        ).strip()
        assert self.ca is not None
        path = self.config_dir / f"sa-{namespace}-{name}.kubeconfig"
        return kubeconfigs.write(path, self.server, self.ca.pem, token=token, namespace=namespace)

    def log_tails(self, lines: int = 30) -> str:
        """The end of every component's log, for a failing test's report."""
        return "\n".join(
            f"---- {c.name} ({c.log})\n{tail(c.log, lines)}" for c in self.components.values()
        )


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()
