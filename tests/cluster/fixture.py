"""``KubeCluster``: one test's part of a session's real cluster (``kube_cluster`` in
``plugin.py``).

Each test gets a namespace of its own on a control plane shared by the session, with the RBAC
of ``examples/kubernetes/rbac.yaml`` bound in it for the ServiceAccount
``jupyter-mlinfra-server``, whose real token (TokenRequest) is in ``kubeconfig``: the server under
test runs as that ServiceAccount, never as the admin, so a verb the example lacks fails the test.
The test's own set-up and checks (``create``, ``get``, ``list``, ``events``...) are the admin's.

What a test adds to the shared cluster goes at its end: its namespaces (their pods force-deleted
first, so none is left for the next test's nodes), its nodes (``node-0`` included: every test
starts with one fresh 16-CPU node), the cluster-scoped objects it created (ClusterQueues,
ResourceFlavors, PriorityClasses...: deleted, and waited for, so the next test may create them
again under the same names), its copies of the example's ClusterRoles and their bindings, and
what it changed in the kubelet or Kueue's visibility API. Then a 403 that the server under test
met fails the test, unless the test asked for it (``forbid``, ``allow_refusals``): a right that
the product uses and the example lacks never goes unnoticed, even where the product carries on
without it."""

from __future__ import annotations

import builtins
import copy
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from . import kubeconfigs
from .admin import USER_AGENT, Admin, ApiError, Obj
from .audit import ApiCall
from .control_plane import ControlPlane
from .kubelet import Kubelet

EXAMPLE_RBAC = Path(__file__).parents[2] / "examples" / "kubernetes" / "rbac.yaml"
SERVICE_ACCOUNT = "jupyter-mlinfra-server"
DEFAULT_NODE = "node-0"
#: label on the Service of an APIService made unavailable, which no pod has
UNAVAILABLE = "mlinfra.test/unavailable"
TEARDOWN_SECONDS = 120.0


def wait(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """``check()``'s first true answer, asked every 0.05 s."""
    deadline = time.monotonic() + timeout
    while not (got := check()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"never happened within {timeout:.0f} s: {what}")
        time.sleep(0.05)
    return got


def example_rbac() -> list[Obj]:
    return [d for d in yaml.safe_load_all(EXAMPLE_RBAC.read_text()) if d]


def without(rules: list[Obj], group: str, plural: str) -> list[Obj]:
    """``rules`` with ``plural`` of API ``group`` (and its subresources) taken out."""
    kept = []
    for rule in rules:
        if group not in rule.get("apiGroups", ()):
            kept.append(rule)
            continue
        resources = [
            r for r in rule.get("resources", ()) if r != plural and not r.startswith(f"{plural}/")
        ]
        if resources:
            kept.append({**rule, "resources": resources})
    return kept


def without_verb(rules: list[Obj], group: str, resource: str, verb: str) -> list[Obj]:
    """``rules`` with ``verb`` taken out of those granting ``resource`` (``pods/portforward``
    for a subresource) of API ``group``; their other verbs and resources stay."""
    kept = []
    for rule in rules:
        granted = group in rule.get("apiGroups", ()) and resource in rule.get("resources", ())
        if not granted or verb not in rule.get("verbs", ()):
            kept.append(rule)
            continue
        others = [r for r in rule["resources"] if r != resource]
        verbs = [v for v in rule["verbs"] if v != verb]
        kept += [{**rule, "resources": others}] if others else []
        kept += [{**rule, "resources": [resource], "verbs": verbs}] if verbs else []
    return kept


class KubeCluster:
    """A test's namespace, ServiceAccount, nodes and admin access on a shared real cluster."""

    def __init__(
        self, plane: ControlPlane, kubelet: Kubelet, folder: Path, *, kueue_and_jobset: bool
    ) -> None:
        self.plane = plane
        self.kubelet = kubelet
        self.folder = folder
        self.kueue_and_jobset = kueue_and_jobset
        """Whether Kueue and JobSet are installed (the test is marked ``kueue_and_jobset``)."""
        self.admin = Admin(plane)
        self.namespace = f"mlinfra-{secrets.token_hex(4)}"
        self.user = f"system:serviceaccount:{self.namespace}:{SERVICE_ACCOUNT}"
        """The server under test's user name, as the API server and its audit log have it."""
        self.kubeconfig = folder / "kubeconfig"
        """The ServiceAccount's kubeconfig (namespace: ``namespace``): the server under test's."""
        self.token = ""
        self.mark = 0
        """Where the audit log stood when the test began (after the fixture's own set-up)."""
        self._prefix = f"mlinfra-test:{self.namespace}:"
        self._rbac: list[Obj] = []  # this test's copies of the example's ClusterRoles and bindings
        self._roles: dict[str, list[Obj]] = {}  # ClusterRole name -> the example's rules
        self._token_secret = ""
        self._tokens = 0
        self._namespaces: list[str] = []  # created by the test besides its own, to wait for
        self._nodes: list[str] = []
        self._cluster_objects: list[tuple[str, str, str]] = []
        self._unavailable: list[tuple[str, str]] = []  # Services whose selector was changed
        self._failing_images: set[str] = set()
        self._pull_seconds = kubelet.image_pull_seconds
        self._refusals_expected = False
        self._stopped = False

    # -- set-up and teardown ----------------------------------------------------------------

    @property
    def server_url(self) -> str:
        """The API server (``https://10.244.N.1:<port>``), reachable from this machine and pods."""
        return self.plane.server

    @property
    def admin_kubeconfig(self) -> Path:
        return self.plane.admin_kubeconfig

    def start(self) -> KubeCluster:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._create_namespace(self.namespace)
        self._bind_example_rbac()
        self.add_node(DEFAULT_NODE)
        self.token = self._new_token()
        kubeconfigs.write(
            self.kubeconfig,
            self.server_url,
            self._ca_pem(),
            token=self.token,
            namespace=self.namespace,
        )
        self.mark = self.plane.audit.mark()
        return self

    def _ca_pem(self) -> bytes:
        assert self.plane.ca is not None
        return self.plane.ca.pem

    def _create_namespace(self, name: str) -> None:
        """A namespace in which pods can be created at once: its ``default`` ServiceAccount
        (which the ServiceAccount admission plugin requires of every pod) and
        ``kube-root-ca.crt`` (pods' token volumes) are made by the controller manager."""
        self.admin.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

        def ready() -> bool:
            return (
                self.admin.get("v1", "ServiceAccount", "default", name) is not None
                and self.admin.get("v1", "ConfigMap", "kube-root-ca.crt", name) is not None
            )

        wait(ready, f"namespace {name} has its default ServiceAccount and kube-root-ca.crt")

    def _bind_example_rbac(self) -> None:
        """The example's ServiceAccount in this namespace, and its ClusterRoles as this test's
        own copies (so ``forbid`` changes only this test's), bound as the example binds them."""
        renamed = {}
        for document in example_rbac():
            kind = document["kind"]
            if kind == "ClusterRole":
                name = self._prefix + document["metadata"]["name"]
                renamed[document["metadata"]["name"]] = name
                self._roles[name] = document["rules"]
        for document in example_rbac():
            kind, metadata = document["kind"], document["metadata"]
            if kind == "Namespace":
                continue
            obj = copy.deepcopy(document)
            if "namespace" in metadata:
                obj["metadata"]["namespace"] = self.namespace
            if kind in ("ClusterRole", "ClusterRoleBinding"):
                obj["metadata"]["name"] = self._prefix + metadata["name"]
            if "roleRef" in obj:
                obj["roleRef"]["name"] = renamed[obj["roleRef"]["name"]]
            for subject in obj.get("subjects", []):
                subject["namespace"] = self.namespace
            created = self.admin.create(obj, obj["metadata"].get("namespace"))
            if kind in ("ClusterRole", "ClusterRoleBinding"):
                self._rbac.append(created)
        self._wait_allowed("list", "", "pods", self.namespace, True)
        self._wait_allowed("list", "", "nodes", "", True)

    def _allowed(self, verb: str, group: str, resource: str, namespace: str) -> bool:
        plural, _, sub = resource.partition("/")
        review = self.admin.call(
            "POST",
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SubjectAccessReview",
                "spec": {
                    "user": self.user,
                    "groups": [
                        "system:serviceaccounts",
                        f"system:serviceaccounts:{self.namespace}",
                        "system:authenticated",
                    ],
                    "resourceAttributes": {
                        "verb": verb,
                        "group": group,
                        "resource": plural,
                        "subresource": sub,
                        "namespace": namespace,
                    },
                },
            },
        )
        return bool(review["status"].get("allowed"))

    def _wait_allowed(
        self, verb: str, group: str, resource: str, namespace: str, allowed: bool
    ) -> None:
        """Until RBAC's caches in the API server answer as the roles now say."""
        wait(
            lambda: self._allowed(verb, group, resource, namespace) == allowed,
            f"{self.user} {'may' if allowed else 'may not'} {verb} {group}/{resource}",
        )

    def _new_token(self) -> str:
        """A real token of the ServiceAccount, from the TokenRequest API, bound to a Secret of
        its own (deleting that Secret revokes it: ``rotate_token``)."""
        self._tokens += 1
        secret = self.admin.create(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": f"{SERVICE_ACCOUNT}-token-bound-{self._tokens}"},
            },
            self.namespace,
        )
        self._token_secret = secret["metadata"]["name"]
        answer = self.admin.call(
            "POST",
            f"/api/v1/namespaces/{self.namespace}/serviceaccounts/{SERVICE_ACCOUNT}/token",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {
                    "expirationSeconds": 24 * 3600,
                    "boundObjectRef": {
                        "apiVersion": "v1",
                        "kind": "Secret",
                        "name": secret["metadata"]["name"],
                        "uid": secret["metadata"]["uid"],
                    },
                },
            },
        )
        token: str = answer["status"]["token"]
        return token

    def stop(self) -> None:
        """Take away everything the test added (see the module's doc); what fails is raised at
        the end, after every step was tried. Then fail the test if the server under test was
        refused a call (403) that the test did not ask for (``forbid``, ``allow_refusals``):
        the example's RBAC lacks a right the product uses."""
        if self._stopped:
            return
        self._stopped = True
        refused = [] if self._refusals_expected else self._refused_calls()
        errors: list[BaseException] = []

        def attempt(step: Callable[[], object]) -> None:
            try:
                step()
            except Exception as error:  # every step is tried; the first failure is raised
                errors.append(error)

        for service in self._unavailable:
            attempt(lambda s=service: self._make_available(*s))  # type: ignore[misc]
        namespaces = [self.namespace, *self._namespaces]
        for name in namespaces:
            attempt(lambda n=name: self.admin.delete("v1", "Namespace", n, None))  # type: ignore[misc]
        for name in namespaces:
            attempt(lambda n=name: self._force_delete_pods(n))  # type: ignore[misc]
        for node in reversed(self._nodes):
            attempt(lambda n=node: self.kubelet.stop_node(n))  # type: ignore[misc]
        attempt(self._delete_cluster_objects)
        # once more: a controller's pod created just as the namespace began terminating (before
        # the API server's admission saw it) must not wait for the next test's nodes
        for name in namespaces:
            attempt(lambda n=name: self._force_delete_pods(n))  # type: ignore[misc]
        for obj in self._rbac:
            attempt(
                lambda o=obj: self.admin.delete(  # type: ignore[misc]
                    o["apiVersion"], o["kind"], o["metadata"]["name"], None
                )
            )
        for image in self._failing_images:
            self.kubelet.pull_image_again(image)
        self.kubelet.image_pull_seconds = self._pull_seconds
        for name in self._namespaces:  # the test chose their names: the next may again
            attempt(
                lambda n=name: wait(  # type: ignore[misc]
                    lambda: self.admin.get("v1", "Namespace", n, None) is None,
                    f"namespace {n} is gone",
                    TEARDOWN_SECONDS,
                )
            )
        if errors:
            raise errors[0]
        if refused:
            raise AssertionError(
                f"{self.user} was refused (403) what examples/kubernetes/rbac.yaml should grant "
                "(or call kube_cluster.allow_refusals() where the test means it):\n"
                + "\n".join(f"  {c.verb} {c.uri}" for c in refused)
            )

    def _refused_calls(self) -> builtins.list[ApiCall]:
        """The server's calls answered 403 until now (its teardown's refusals aside)."""
        end = self.plane.audit.mark()
        calls = self.plane.audit.calls(self.mark, end, answered_within=2)
        return [c for c in calls if c.user == self.user and c.code == 403]

    def _force_delete_pods(self, namespace: str) -> None:
        """Until no pod is left in the (terminating) namespace: none may linger Pending and be
        bound to the next test's nodes. Deleted pods' processes end at once."""

        def none_left() -> bool:
            pods = self.admin.list("v1", "Pod", namespace)
            for pod in pods:
                self.admin.delete(
                    "v1", "Pod", pod["metadata"]["name"], namespace, gracePeriodSeconds=0
                )
            return not pods

        wait(none_left, f"no pod is left in namespace {namespace}", TEARDOWN_SECONDS)

    def _delete_cluster_objects(self) -> None:
        """The cluster-scoped objects the test created, newest first, waited for (Kueue keeps a
        ClusterQueue or ResourceFlavor until no Workload uses it: the test's are deleted first)."""
        if self._cluster_objects and self.kueue_and_jobset:
            for name in [self.namespace, *self._namespaces]:
                path = self.admin.path("kueue.x-k8s.io/v1beta2", "Workload", name)
                self.admin.call("DELETE", path)
        for api_version, kind, name in reversed(self._cluster_objects):
            self.admin.delete(api_version, kind, name, None)
        for api_version, kind, name in self._cluster_objects:
            wait(
                lambda: self.admin.get(api_version, kind, name, None) is None,  # noqa: B023
                f"{kind} {name} is gone",
                TEARDOWN_SECONDS,
            )

    # -- what tests set up ------------------------------------------------------------------

    def add_node(
        self,
        name: str,
        *,
        cpu: str = "16",
        memory: str = "64Gi",
        allocatable: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        taints: Sequence[Mapping[str, str]] = (),
        ready: bool = True,
        cordoned: bool = False,
    ) -> None:
        """A node of the test kubelet, whose pods run as processes; it goes at the test's end.
        ``allocatable`` adds extended resources (``{"nvidia.com/gpu": "8"}``) or overrides
        ``pods`` (110). Returns once the node lifecycle controller has seen it Ready (no
        ``node.kubernetes.io/not-ready`` taint). ``ready=False``: the kubelet reports NotReady,
        and the controller taints it (waited for). ``cordoned``: ``spec.unschedulable``."""
        self.kubelet.add_node(
            name,
            cpu=cpu,
            memory=memory,
            allocatable=allocatable,
            labels=labels,
            taints=taints,
            ready=ready,
            cordoned=cordoned,
        )
        self._nodes.append(name)
        # The node lifecycle controller taints a Node not-ready until it has seen it Ready (the
        # Node is created before its first status): until then the scheduler, and the product
        # as it should, take it for unusable.
        wait(
            lambda: self._tainted_not_ready(name) != ready,
            f"node {name} is {'un' if ready else ''}tainted not-ready",
        )

    def _tainted_not_ready(self, name: str) -> bool:
        node = self.admin.get("v1", "Node", name, None) or {}
        taints = node.get("spec", {}).get("taints") or []
        return any(t["key"] == "node.kubernetes.io/not-ready" for t in taints)

    def set_ready(self, name: str, ready: bool) -> None:
        """The node's kubelet reports Ready (or NotReady); returns once the node lifecycle
        controller has untainted (or tainted) it ``node.kubernetes.io/not-ready``."""
        self.kubelet.set_ready(name, ready)
        wait(
            lambda: self._tainted_not_ready(name) != ready,
            f"node {name} is {'un' if ready else ''}tainted not-ready",
        )

    def remove_node(self, name: str) -> None:
        """The node goes away as a reclaimed spot VM does: its pods fail (``reason:
        Terminated``, condition ``DisruptionTarget``) after their grace periods, then the Node
        is deleted."""
        self.kubelet.remove_node(name)
        self._nodes.remove(name)

    def add_namespace(self, name: str, *, rbac: bool = False) -> str:
        """Another namespace, deleted at the end (and waited for: the next test may make it
        again). ``rbac``: the ServiceAccount gets the example's workload rights there too, as
        the example says to bind them in each user's namespace."""
        self._create_namespace(name)
        self._namespaces.append(name)
        if rbac:
            workloads = next(o for o in self._rbac if o["kind"] == "ClusterRole"
                             and o["metadata"]["name"].endswith("workloads"))  # fmt: skip
            self.admin.create(
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "RoleBinding",
                    "metadata": {"name": SERVICE_ACCOUNT, "namespace": name},
                    "subjects": [
                        {
                            "kind": "ServiceAccount",
                            "name": SERVICE_ACCOUNT,
                            "namespace": self.namespace,
                        }
                    ],
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "ClusterRole",
                        "name": workloads["metadata"]["name"],
                    },
                },
                name,
            )
            self._wait_allowed("list", "", "pods", name, True)
        return name

    def create(self, obj: Obj) -> Obj:
        """Create any served object as the admin (validated strictly, as kubectl sends it);
        a namespaced one goes to ``namespace`` unless its metadata names another. A
        cluster-scoped one is deleted at the test's end."""
        namespaced = self.admin.namespaced(obj["apiVersion"], obj["kind"])
        namespace = obj["metadata"].get("namespace", self.namespace) if namespaced else None
        created = self.admin.create(obj, namespace)
        if not namespaced and self.admin.stored(obj["apiVersion"], obj["kind"]):
            self._cluster_objects.append((obj["apiVersion"], obj["kind"], obj["metadata"]["name"]))
        return created

    def patch(self, api_version: str, kind: str, name: str, patch: Obj,
              namespace: str | None = None) -> Obj:  # fmt: skip
        """A merge patch, as the admin."""
        where = (namespace or self.namespace) if self.admin.namespaced(api_version, kind) else None
        return self.admin.patch(api_version, kind, name, patch, where)

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        where = (namespace or self.namespace) if self.admin.namespaced(api_version, kind) else None
        return self.admin.delete(api_version, kind, name, where)

    # -- what tests look at -------------------------------------------------------------------

    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> Obj | None:
        """The object, or None; ``namespace`` defaults to the test's."""
        where = (namespace or self.namespace) if self.admin.namespaced(api_version, kind) else None
        return self.admin.get(api_version, kind, name, where)

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        *,
        all_namespaces: bool = False,
    ) -> builtins.list[Obj]:
        """Objects of a kind in ``namespace`` (the test's by default), or in every namespace
        (other tests' leftovers included: the cluster is shared)."""
        namespaced = self.admin.namespaced(api_version, kind)
        where = None if all_namespaces or not namespaced else (namespace or self.namespace)
        return self.admin.list(api_version, kind, where, label_selector)

    def events(self, namespace: str | None = None) -> builtins.list[Obj]:
        """core/v1 Events in ``namespace`` (the test's by default), oldest first."""
        return self.list("v1", "Event", namespace)

    def processes(self) -> dict[str, int]:
        """Pod name -> pid of a running container's first process, of the test's namespaces."""
        found: dict[str, int] = {}
        for name in (self.namespace, *self._namespaces):
            found.update(self.kubelet.processes(name))
        return found

    def requests(self, since: int | None = None, *, user: str | None = None,
                 answered_within: float = 0.0) -> builtins.list[ApiCall]:  # fmt: skip
        """The API requests of the server under test (``user``: its ServiceAccount's by
        default) since the test began, or since ``since`` (an earlier ``audit_mark()``), from
        the API server's audit log. Every request that has had its answer is there; with
        ``answered_within``, wait up to so many seconds for the response codes."""
        who = user or self.user
        calls = self.plane.audit.calls(
            self.mark if since is None else since, answered_within=answered_within
        )
        return [c for c in calls if c.user == who and c.user_agent != USER_AGENT]

    def audit_mark(self) -> int:
        """Where the audit log stands now: ``requests(since=...)`` counts from here."""
        return self.plane.audit.mark()

    def unauthorized(self, since: int | None = None) -> builtins.list[ApiCall]:
        """Requests refused with 401 (a token the API server no longer accepts) since the test
        began; the fixture's own probes are not counted."""
        calls = self.plane.audit.calls(self.mark if since is None else since, answered_within=2)
        return [c for c in calls if c.code == 401 and c.user_agent != USER_AGENT]

    # -- what tests change -------------------------------------------------------------------

    def allow_refusals(self) -> None:
        """The test makes the server under test meet 403s on purpose: they do not fail it."""
        self._refusals_expected = True

    def forbid(self, group: str, plural: str) -> None:
        """The ServiceAccount's roles (this test's copies of the example's) without ``plural``
        of API ``group`` and its subresources, from now on: the API server answers 403, as on
        a cluster whose RBAC lacks them (which then does not fail the test). Returns once the
        API server's RBAC says so."""
        self.allow_refusals()
        verbs = self._change_roles(lambda rules: without(rules, group, plural))
        for verb, namespace in verbs:
            self._wait_allowed(verb, group, plural, namespace, False)

    def forbid_verb(self, group: str, resource: str, verb: str) -> None:
        """As ``forbid``, for one verb on one resource alone (``create`` on
        ``pods/portforward``: a Role written before Kubernetes 1.35 authorized websockets as
        create too)."""
        self.allow_refusals()
        self._change_roles(lambda rules: without_verb(rules, group, resource, verb))
        self._wait_allowed(verb, group, resource, self.namespace, False)

    def restore_rbac(self) -> None:
        """The example's rules again (after ``forbid``)."""
        verbs = self._change_roles(lambda rules: rules)
        for verb, namespace in verbs:
            self._wait_allowed(verb, "", "pods", namespace, True)

    def _change_roles(
        self, change: Callable[[builtins.list[Obj]], builtins.list[Obj]]
    ) -> builtins.list[tuple[str, str]]:
        """Replace the rules of this test's ClusterRoles by ``change(the example's rules)``;
        (verb, namespace) pairs to check: a verb each role granted, where it is bound."""
        checks = []
        for name, rules in self._roles.items():
            self.admin.patch(
                "rbac.authorization.k8s.io/v1", "ClusterRole", name, {"rules": change(rules)}, None
            )
            cluster_wide = any(
                o["kind"] == "ClusterRoleBinding" and o["roleRef"]["name"] == name
                for o in self._rbac
            )
            checks.append(("list", "" if cluster_wide else self.namespace))
        return checks

    def rotate_token(self) -> str:
        """A new token of the ServiceAccount; the current one is revoked (the Secret it is bound
        to deleted), as an exec plugin's credential expires or a projected token is rotated.
        Returns once the API server refuses the old one (401)."""
        old_token, old_secret = self.token, self._token_secret
        self.token = self._new_token()
        self.admin.delete("v1", "Secret", old_secret, self.namespace)
        wait(lambda: self._refused(old_token), "the revoked token is refused")
        return self.token

    def _refused(self, token: str) -> bool:
        probe = Admin(self.plane, token)
        try:
            probe.call(
                "GET", f"/api/v1/namespaces/{self.namespace}/configmaps", query={"limit": "1"}
            )
        except ApiError as error:
            return error.status == 401
        return False

    def restart_apiserver(self) -> None:
        """Stop the API server and start it again: every open watch ends, and a watch resumed
        from a resourceVersion held from before gets 410 Gone (the watch cache starts anew);
        returns once Kueue's and JobSet's webhooks answer again, where installed."""
        self.plane.restart_apiserver()

    def compact(self) -> int:
        """An etcd compaction at the current revision, as the API server runs every 5 minutes:
        a list at an older resourceVersion, and a paginated list's continue token, get 410
        Gone (a watch is served from the watch cache: see ``restart_apiserver``)."""
        return self.plane.compact()

    def make_unavailable(self, group: str) -> None:
        """The server of every APIService of ``group`` (Kueue's visibility API) goes down: its
        Service selects no pod, and the API server answers 503 for the group; undone at the
        test's end (the add-on's pod keeps running: its webhooks still answer)."""
        services = []
        for service in self.admin.list("apiregistration.k8s.io/v1", "APIService", None):
            spec = service["spec"]
            if spec.get("group") == group and spec.get("service"):
                services.append((spec["service"]["namespace"], spec["service"]["name"]))
        if not services:
            raise ValueError(f"no APIService serves {group}")
        for namespace, name in dict.fromkeys(services):
            self.admin.patch(
                "v1", "Service", name, {"spec": {"selector": {UNAVAILABLE: "true"}}}, namespace
            )
            self._unavailable.append((namespace, name))
        version = next(
            s["spec"]["version"]
            for s in self.admin.list("apiregistration.k8s.io/v1", "APIService", None)
            if s["spec"].get("group") == group
        )
        wait(lambda: self._status_of(f"/apis/{group}/{version}") == 503, f"{group} answers 503")

    def _status_of(self, path: str) -> int:
        try:
            self.admin.call("GET", path)
        except ApiError as error:
            return error.status
        return 200

    def _make_available(self, namespace: str, name: str) -> None:
        self.admin.patch(
            "v1", "Service", name, {"spec": {"selector": {UNAVAILABLE: None}}}, namespace
        )
        for service in self.admin.list("apiregistration.k8s.io/v1", "APIService", None):
            if service["spec"].get("service", {}).get("name") == name:

                def available(api_service: str = service["metadata"]["name"]) -> bool:
                    found = (
                        self.admin.get("apiregistration.k8s.io/v1", "APIService", api_service, None)
                        or {}
                    )
                    conditions = found.get("status", {}).get("conditions") or []
                    return any(c["type"] == "Available" and c["status"] == "True"
                               for c in conditions)  # fmt: skip

                wait(available, f"APIService {service['metadata']['name']} is Available again",
                     TEARDOWN_SECONDS)  # fmt: skip

    def fail_image_pull(self, image: str) -> None:
        """Pods using ``image`` get ErrImagePull then ImagePullBackOff and stay Pending."""
        self.kubelet.fail_image_pull(image)
        self._failing_images.add(image)

    @property
    def image_pull_seconds(self) -> float:
        """How long a (simulated) pull of an image not yet on the node takes (default 0)."""
        return self.kubelet.image_pull_seconds

    @image_pull_seconds.setter
    def image_pull_seconds(self, seconds: float) -> None:
        self.kubelet.image_pull_seconds = seconds

    def kubectl(self, *args: str, as_server: bool = False, input: str | None = None) -> str:
        """The built kubectl, as the admin (or as the server's ServiceAccount)."""
        return self.plane.kubectl(
            *args, kubeconfig=self.kubeconfig if as_server else None, input=input
        )
