"""The connection to a Kubernetes cluster: settings, the API clients of a server, discovery.

Every call to the Kubernetes API goes through the ``ApiClient`` held here, so a server opens one
connection pool whatever number of kernels and jobs it follows; port-forwards to kernel pods
(each kernel holds up to six websockets for as long as it lives) get a pool of their own, so
that however many kernels are open, watches and requests always find a connection. Both send
tokens that are renewed as they expire (``credentials``). Settings are traitlets of
``KubernetesCluster`` (``c.KubernetesCluster.namespace = "jupyter-{username}"``), like
kubespawner's: they describe the cluster, not the extension.
"""

from __future__ import annotations

import asyncio
import copy
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config.config_exception import ConfigException
from traitlets import Bool, Dict, Float, Int, TraitError, Unicode, validate
from traitlets.config import LoggingConfigurable

from ...errors import MLInfraError
from .credentials import Credentials, TokenFile, kubeconfig_credentials
from .manifests import DEFAULT_CAPACITY_PLACEMENT, NON_ROOT_GID, NON_ROOT_UID
from .names import dns_label, is_dns_label
from .rest import KubeError

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
SERVICE_ACCOUNT_NAMESPACE = SERVICE_ACCOUNT / "namespace"


class ClusterUnavailable(MLInfraError):
    """The cluster cannot be reached or its configuration is missing (HTTP 503)."""

    status = 503


def _unreachable(host: str | None, error: Exception) -> KubeError:
    if isinstance(error, aiohttp.ClientConnectorError):
        why = error.os_error.strerror or str(error.os_error)
    elif isinstance(error, asyncio.TimeoutError):
        why = "no answer in time"
    else:
        why = str(error) or type(error).__name__
    return KubeError(503, "ServiceUnavailable", f"cannot reach the Kubernetes API at {host}: {why}")


class _ApiClient(client.ApiClient):
    """An API client whose failures to reach the cluster are ``KubeError``s (HTTP 503, naming
    the API's address) like the API's own refusals, rather than aiohttp's exceptions: callers
    handle one kind of failure, and users get a sentence instead of a 500. A request the API
    refuses with 401 is sent once more with a new token when the token can be renewed (it
    expired early, or was revoked)."""

    credentials: Credentials | None = None

    async def call_api(self, *args: Any, **kwargs: Any) -> Any:
        try:
            response = await self._call(*args, **kwargs)
        except ApiException as error:
            if error.status != 401 or self.credentials is None:
                raise
            await self.credentials.refresh(self.configuration, force=True)
            return await self._call(*args, **kwargs)
        if (
            self.credentials is not None
            and isinstance(response, aiohttp.ClientResponse)
            and response.status == 401
        ):
            response.release()
            await self.credentials.refresh(self.configuration, force=True)
            return await self._call(*args, **kwargs)
        return response

    async def _call(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().call_api(*args, **kwargs)
        except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as error:
            raise _unreachable(self.configuration.host, error) from None


class KubernetesCluster(LoggingConfigurable):
    """Which cluster and namespace, and the API client for them."""

    kubeconfig = Unicode(
        "",
        config=True,
        help="""Path of the kubeconfig file to connect with. Empty: in a pod, the pod's service
        account (in-cluster configuration); elsewhere $KUBECONFIG or ~/.kube/config.""",
    )
    context = Unicode(
        "", config=True, help="The kubeconfig context to use; empty: its current-context."
    )
    namespace = Unicode(
        "",
        config=True,
        help="""The namespace of a user's kernels and jobs. '{username}' in it is replaced by the
        user's name, and the result made a DNS label (lower case, other characters as '-', with
        a short hash when it had to change), e.g. 'jupyter-{username}'. Empty: the kubeconfig
        context's namespace, else the server's own namespace when it runs in a pod, else
        'default'.""",
    )
    capacity_placement = Dict(
        default_value=DEFAULT_CAPACITY_PLACEMENT,
        config=True,
        help="""How pods of a flavor's capacity type reach its nodes: for 'spot' and 'reserved'
        (and 'on-demand' if needed) a dict with 'node_selector' (labels) and 'tolerations'
        (Kubernetes tolerations), added before the flavor's own. The default uses Karpenter's
        'karpenter.sh/capacity-type' label and tolerates the taints of GKE and AKS spot nodes.""",
    )
    run_as_user = Int(
        NON_ROOT_UID,
        min=1,
        config=True,
        help="""The uid kernel and job pods run as (never root: runAsNonRoot, as Kubernetes'
        restricted Pod Security Standard wants). The default, 1000, is the Jupyter Docker
        Stacks' user; the image need not know it: a kernel's launcher and a job's pods set a
        writable HOME. Set the image's own user where its files are that user's alone.""",
    )
    run_as_group = Int(
        NON_ROOT_GID,
        min=0,
        config=True,
        help="The gid kernel and job pods run as, which also owns their volumes' files (fsGroup).",
    )
    network_policies = Bool(
        True,
        config=True,
        help="""Give every kernel pod and job a NetworkPolicy: a kernel pod accepts connections
        (on its ports) only from its owner's server, a job's pods only from the job's own pods.
        Takes effect where the cluster's network plugin enforces NetworkPolicies (Calico,
        Cilium, ...); elsewhere they are stored and do nothing. See
        KubernetesKernels.server_pod_labels for how the server's pod is named.""",
    )
    request_timeout = Float(
        30.0,
        config=True,
        help="Seconds an API request (not a watch) may take before it fails.",
    )
    connections = Int(
        100,
        config=True,
        help="""Connections to the API server for requests and watches (each watch holds one:
        about a dozen, plus one per namespace of kernels and one per kernel starting).""",
    )
    port_forward_connections = Int(
        600,
        config=True,
        help="""Connections to the API server for port-forwards to kernel pods (a kernel holds
        up to six while it is open), a pool apart from requests and watches, so that open
        kernels never delay an API call. Used only with
        c.KubernetesKernels.connection = 'port-forward'.""",
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._api: client.ApiClient | None = None
        self._forwards: client.ApiClient | None = None
        self._connecting = asyncio.Lock()
        self._context_namespace = ""
        self._resources: dict[str, frozenset[str]] = {}
        self._versions: dict[str, tuple[str, ...]] = {}

    @validate("namespace")
    def _check_namespace(self, proposal: dict[str, Any]) -> str:
        value: str = proposal["value"]
        if value and not is_dns_label(value.replace("{username}", "user")):
            raise TraitError(
                f"KubernetesCluster.namespace: {value!r} is not a DNS label (lower case letters,"
                " digits and '-', at most 63) even with '{username}' filled in"
            )
        return value

    async def api(self) -> client.ApiClient:
        """The server's API client for requests and watches, connected on first use."""
        async with self._connecting:
            if self._api is None:
                configuration = client.Configuration()
                configuration.connection_pool_maxsize = self.connections
                self._context_namespace, credentials = await self._load(configuration)
                api = _ApiClient(configuration)
                if credentials is not None:
                    configuration.refresh_api_key_hook = credentials.hook
                    api.credentials = credentials
                self._api = api
            return self._api

    async def port_forward_api(self) -> client.ApiClient:
        """The client for port-forwards: the same cluster, address, TLS and tokens as
        ``api()`` (the configuration's token is shared), with a connection pool of its own."""
        api = await self.api()
        async with self._connecting:
            if self._forwards is None:
                configuration = copy.copy(api.configuration)  # shares the token's dict
                configuration.connection_pool_maxsize = self.port_forward_connections
                forwards = _ApiClient(configuration)
                forwards.credentials = getattr(api, "credentials", None)
                self._forwards = forwards
            return self._forwards

    async def _load(self, configuration: client.Configuration) -> tuple[str, Credentials | None]:
        """Fill ``configuration`` from the chosen source; returns the namespace it implies and
        where renewed tokens come from (None for one that never expires)."""
        try:
            if not self.kubeconfig and os.environ.get("KUBERNETES_SERVICE_HOST"):
                config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
                own = SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
                return own, TokenFile(SERVICE_ACCOUNT / "token")  # the kubelet rotates it
            path = self.kubeconfig or None
            loader = await config.load_kube_config(
                config_file=path,
                context=self.context or None,
                client_configuration=configuration,
                persist_config=False,
            )
            credentials = kubeconfig_credentials(path, self.context or None, loader)
            contexts, current = config.list_kube_config_contexts(config_file=path)
        except (ConfigException, OSError) as error:
            source = self.kubeconfig or "the default kubeconfig"
            raise ClusterUnavailable(
                f"cannot connect to Kubernetes with {source}: {error}", "kubeconfig"
            ) from None
        chosen = next((c for c in contexts if c["name"] == self.context), None) or current or {}
        namespace: str = chosen.get("context", {}).get("namespace", "")
        return namespace, credentials

    def own_pod(self) -> tuple[str, str] | None:
        """(namespace, name) of the pod this server runs in; None outside a pod."""
        name = os.environ.get("HOSTNAME", "")
        if not (os.environ.get("KUBERNETES_SERVICE_HOST") and name):
            return None
        try:
            return SERVICE_ACCOUNT_NAMESPACE.read_text().strip(), name
        except OSError:
            return None

    def namespace_for(self, username: str) -> str:
        """The namespace holding ``username``'s kernels and jobs (call after ``api()``)."""
        if self.namespace:
            return dns_label(self.namespace.replace("{username}", username))
        return self._context_namespace or "default"

    async def has_api(self, group: str, version: str, kind: str) -> bool:
        """Whether the cluster serves ``kind`` in ``group/version`` ("" is the core group), e.g.
        ``has_api("jobset.x-k8s.io", "v1alpha2", "JobSet")``. Asked once per group version:
        CRDs installed while the server runs are seen after ``forget_apis()``."""
        key = f"{group}/{version}"
        if key not in self._resources:
            self._resources[key] = await self._kinds(group, version)
        return kind in self._resources[key]

    async def served_version(self, group: str, versions: Sequence[str], kind: str) -> str:
        """The first of ``versions`` (newest first) in which the cluster serves ``kind`` of API
        ``group``, as ``group/version``; "" when it serves none of them. Kueue serves
        ``v1beta2`` since v0.15, stores it since v0.16 and plans to stop serving ``v1beta1``:
        asking which one is served keeps a server working on either side of that change."""
        served = await self._group_versions(group)
        for version in versions:
            if version in served and await self.has_api(group, version, kind):
                return f"{group}/{version}"
        return ""

    async def group_version(self, group: str, versions: Sequence[str]) -> str:
        """The first of ``versions`` that the cluster lists for ``group``, as ``group/version``
        ("" when none is). Only the group's document is read: for an aggregated API (Kueue's
        visibility API) it is answered by the API server itself even while the extension
        server behind it is down."""
        served = await self._group_versions(group)
        return next((f"{group}/{v}" for v in versions if v in served), "")

    async def _group_versions(self, group: str) -> tuple[str, ...]:
        if group not in self._versions:
            api = await self.api()
            try:
                found = await client.ApisApi(api).get_api_versions(
                    _request_timeout=self.request_timeout
                )
            except ApiException as error:
                raise ClusterUnavailable(
                    f"Kubernetes API discovery failed: {error.status} {error.reason}"
                ) from None
            for entry in found.groups or ():
                self._versions[entry.name] = tuple(v.version for v in entry.versions or ())
            self._versions.setdefault(group, ())
        return self._versions[group]

    def forget_apis(self) -> None:
        self._resources.clear()
        self._versions.clear()

    async def _kinds(self, group: str, version: str) -> frozenset[str]:
        api = await self.api()
        try:
            if group:
                found = await client.CustomObjectsApi(api).get_api_resources(
                    group, version, _request_timeout=self.request_timeout
                )
            elif version == "v1":
                found = await client.CoreV1Api(api).get_api_resources(
                    _request_timeout=self.request_timeout
                )
            else:
                return frozenset()
        except ApiException as error:
            if error.status == 404:
                return frozenset()
            raise ClusterUnavailable(
                f"Kubernetes API discovery of {group or 'core'}/{version} failed: "
                f"{error.status} {error.reason}"
            ) from None
        return frozenset(resource.kind for resource in found.resources or ())

    async def close(self) -> None:
        for api in (self._forwards, self._api):
            if api is not None:
                await api.close()
        self._api = self._forwards = None
