"""What a pod's volumes need from the API server: service-account tokens from the TokenRequest
API, bound to the pod (what the Node authorizer lets a kubelet ask for), and the host paths of
the PersistentVolumes its claims are bound to."""

from __future__ import annotations

from .api import Api
from .status import Obj

#: a projected token's lifetime when the pod does not say (the API server's default for the
#: kube-api-access volume is 3607 s)
TOKEN_SECONDS = 3607


async def request_token(api: Api, pod: Obj, projection: Obj) -> tuple[str, int]:
    """A token for a ``serviceAccountToken`` projection of ``pod``, and its lifetime."""
    metadata = pod["metadata"]
    seconds = int(projection.get("expirationSeconds", TOKEN_SECONDS))
    spec: Obj = {
        "expirationSeconds": seconds,
        "boundObjectRef": {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": metadata["name"],
            "uid": metadata["uid"],
        },
    }
    if projection.get("audience"):
        spec["audiences"] = [projection["audience"]]
    account = pod["spec"].get("serviceAccountName") or "default"
    answer = await api.post(
        f"/api/v1/namespaces/{metadata['namespace']}/serviceaccounts/{account}/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
    )
    return str(answer["status"]["token"]), seconds


async def claim_paths(api: Api, pod: Obj) -> dict[str, str]:
    """PersistentVolumeClaim name -> the host path (``hostPath`` or ``local``) of the
    PersistentVolume it is bound to; an unbound claim is left out."""
    namespace = pod["metadata"]["namespace"]
    found = {}
    for volume in pod["spec"].get("volumes") or []:
        if "persistentVolumeClaim" not in volume:
            continue
        name = volume["persistentVolumeClaim"]["claimName"]
        claim = await api.get_or_none(
            f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{name}"
        )
        bound = (claim or {}).get("spec", {}).get("volumeName")
        if not bound:
            continue
        persistent = await api.get_or_none(f"/api/v1/persistentvolumes/{bound}")
        source = (persistent or {}).get("spec", {})
        path = (source.get("hostPath") or source.get("local") or {}).get("path")
        if path:
            found[name] = path
    return found
